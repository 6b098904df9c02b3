"""Query -> ranked Hits: dense (embedder + vector store), keyword (BM25), their fusion, the
joining of overlapping neighbours (`merge_neighbours`), reranking.

Hybrid search fuses the two rankings by weighted reciprocal rank (RRF): a chunk scores
`1 / (rrf_k + dense rank) + w / (rrf_k + keyword rank)`, where the keyword weight `w` depends on
whether the chunk is in the question's language. Keyword search helps within one language and
is blind across languages (an English question shares few words with a Spanish passage), so
its votes count when the languages match and not when they differ; the multilingual embedder
carries cross-language questions. The weights were tuned on the `*_mini` questions of the
evaluation sets only (`bench/tune_fusion.py`; figures in docs/results.md).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from rag.config import RETRIEVAL_MODES as MODES
from rag.errors import ConfigError
from rag.language import detect_language
from rag.protocols import ChunkLookup, Embedder, KeywordSearch, Reranker, VectorStore
from rag.types import Chunk, Hit

_BARE = "_bare"  # metadata flag of a candidate whose text is not fetched yet


@dataclass(frozen=True, slots=True)
class Fusion:
    """How the dense and keyword rankings are combined (see the module docstring).

    "rrf": score = 1 / (rrf_k + dense rank) + w / (rrf_k + keyword rank);
    "convex": score = dense score + w * keyword score, each min-max normalised over its list.
    w is `same_language` for a chunk in the question's language, else `other_language`."""

    # defaults: chosen on the *_mini questions by bench/tune_fusion.py (docs/results.md,
    # "Retrieval"): never below the best single retriever on any set
    method: str = "rrf"
    rrf_k: float = 60.0
    same_language: float = 0.3  # keyword weight for a chunk in the question's language
    other_language: float = 0.0  # keyword weight for a chunk in another language
    depth: int = 50  # how deep each ranking is read
    # with translations of the question into the documents' languages (Chatbot.translate):
    # (bench/tune_translation.py: the setting that never lost to dense search on the mini
    # questions, with the best MRR@10 among those)
    translated: float = 0.15  # keyword weight of the translation, in its language's index
    translated_dense: float = 0.0  # weight of the translation's dense ranking (0: not run)
    translated_rrf_k: float = 100.0  # rrf_k of the translation's rankings


class _Store(VectorStore, ChunkLookup, Protocol):
    pass


class Retriever:
    """Search with the configured mode; `k` best chunks, best first (rank 1)."""

    def __init__(
        self,
        embedder: Embedder,
        store: _Store,
        keyword: KeywordSearch | None = None,
        *,
        mode: str = "hybrid",
        fusion: Fusion | None = None,
        reranker: Reranker | None = None,
        rerank_depth: int = 30,
        merge_chars: int = 0,
    ) -> None:
        if mode not in MODES:
            raise ConfigError(f"retrieval mode must be one of {', '.join(MODES)}, got {mode!r}.")
        if mode != "dense" and keyword is None:
            raise ConfigError(f"retrieval mode {mode!r} needs a keyword index.")
        self.embedder = embedder
        self.store = store
        self.keyword = keyword
        self.mode = mode
        self.fusion = fusion or Fusion()
        self.reranker = reranker
        self.rerank_depth = rerank_depth
        self.merge_chars = merge_chars  # > 0: join overlapping neighbours up to this length

    def search(
        self, query: str, k: int, translations: Mapping[str, str] | None = None
    ) -> list[Hit]:
        """`translations`: the query in other languages ({"de": "..."}), searched for in
        those languages' keyword indexes and fused (hybrid mode; ignored by the others)."""
        if not query.strip():
            return []
        depth = max(k, self.rerank_depth) if self.reranker else k
        hits = self._candidates(query, depth, translations or {})
        if self.reranker:
            hits = self.reranker.rerank(query, hits, k)
        return hits[:k]

    def _candidates(self, query: str, depth: int, translations: Mapping[str, str]) -> list[Hit]:
        """The `depth` best hits, one version of each document, overlapping neighbours joined.
        Joining shortens the list: twice as many chunks are read, and more (up to 16 times
        `depth`) while the joined list is still short and the store has more."""
        wanted = 2 * depth if self.merge_chars else depth
        while True:
            hits, lost = self._search(query, wanted, translations)
            if lost and len(hits) < wanted:  # candidates deleted meanwhile (a document replaced)
                hits, _ = self._search(query, wanted, translations)
            found = len(hits)
            hits = newest_versions(hits)
            if self.merge_chars:
                hits = merge_neighbours(hits, self.merge_chars)
            if len(hits) >= depth or found < wanted or wanted >= 16 * depth:
                return hits[:depth]
            wanted *= 2

    def _search(
        self, query: str, depth: int, translations: Mapping[str, str]
    ) -> tuple[list[Hit], int]:
        """The `depth` best hits for the mode, and how many candidates vanished before their
        texts were read."""
        if self.mode == "dense":
            return self.dense(query, depth), 0
        if self.mode == "keyword":
            return self._fetch(self._keyword_candidates(query, depth), depth)
        n = max(depth, self.fusion.depth)
        lang = detect_language(query)
        # keyword votes of other languages count for nothing by default: do not look for them
        languages = None if self.fusion.other_language > 0 else {lang}
        extra: list[tuple[list[Hit], float]] = []
        for other, text in translations.items():
            if other == lang or not text.strip():
                continue
            if self.fusion.translated > 0:
                extra.append((self._keyword_candidates(text, n, {other}), self.fusion.translated))
            if self.fusion.translated_dense > 0:
                extra.append((self._dense_candidates(text, n), self.fusion.translated_dense))
        fused = fuse(
            self._dense_candidates(query, n),
            self._keyword_candidates(query, n, languages),
            lang,
            n,
            self.fusion,
            extra,
        )
        return self._fetch(fused, depth)

    def dense(self, query: str, k: int) -> list[Hit]:
        hits = self.store.search(self.embedder.embed_query(query), k)
        return [replace(h, similarity=h.score) for h in hits]

    def _dense_candidates(self, query: str, k: int) -> list[Hit]:
        """Dense hits holding only the chunk id: texts are fetched after fusion (`_fetch`)."""
        return [
            Hit(Chunk(cid, "", "", 0, 0, {_BARE: True}), score=score, rank=r, similarity=score)
            for r, (cid, score) in enumerate(
                self.store.nearest_ids(self.embedder.embed_query(query), k), 1
            )
        ]

    def _keyword_candidates(
        self, query: str, k: int, languages: Collection[str] | None = None
    ) -> list[Hit]:
        """Keyword hits whose chunks hold only id and language: the text is fetched from the
        store only for the few that survive fusion (`_fetch`)."""
        assert self.keyword is not None
        return [
            Hit(
                chunk=Chunk(h.chunk_id, "", "", 0, 0, {"lang": h.lang, _BARE: True}),
                score=h.score,
                rank=r,
            )
            for r, h in enumerate(self.keyword.search(query, k, languages), 1)
        ]

    def _fetch(self, hits: list[Hit], k: int) -> tuple[list[Hit], int]:
        """The first k of `hits` whose chunks still exist, read from the store where they are
        bare (k at a time, further down the list only when some were deleted meanwhile);
        ranks renumbered. Also returns how many had been deleted."""
        found: list[Hit] = []
        lost = 0
        for lo in range(0, len(hits), k):
            part = hits[lo : lo + k]
            bare = [h.chunk.id for h in part if h.chunk.metadata.get(_BARE)]
            chunks = {c.id: c for c in self.store.fetch(bare)} if bare else {}
            for h in part:
                if not h.chunk.metadata.get(_BARE):
                    found.append(h)
                elif h.chunk.id in chunks:
                    found.append(replace(h, chunk=chunks[h.chunk.id]))
                else:
                    lost += 1
            if len(found) >= k or not lost:
                break
        return [replace(h, rank=r) for r, h in enumerate(found[:k], 1)], lost


def newest_versions(hits: Sequence[Hit]) -> list[Hit]:
    """Drop the hits of a document's older version when its newer one is present: while a
    document is being replaced, both are in the store for a moment (see vectorstore/chroma.py),
    and an answer must come from one consistent state. Ranks are renumbered."""
    newest: dict[str, int] = {}
    for h in hits:
        g = int(h.chunk.metadata.get("generation", 0) or 0)
        newest[h.chunk.doc_id] = max(g, newest.get(h.chunk.doc_id, g))
    kept = [
        h for h in hits if int(h.chunk.metadata.get("generation", 0) or 0) == newest[h.chunk.doc_id]
    ]
    if len(kept) == len(hits):
        return list(hits)
    return [replace(h, rank=r) for r, h in enumerate(kept, 1)]


def merge_neighbours(hits: Sequence[Hit], max_chars: int) -> list[Hit]:
    """Join the hits of overlapping chunks of one document (neighbours, which share their
    overlap) into one hit at the better one's rank, with the text they cover together, as long
    as that spans at most `max_chars` characters.

    Two neighbours in the top k are one passage read twice: as two hits they take two places in
    the list and two in the prompt, one of them repeating the other's overlap. Joined, the place
    freed goes to another passage (measured in docs/results.md, "Retrieval"). Chunks that do not
    overlap stay apart, and so does a chunk that would make a joined hit longer than
    `max_chars` (the prompt takes the most relevant passages first; a whole document in one hit
    would crowd them out). Ranks are renumbered."""
    groups: list[list[Hit]] = []
    for hit in hits:
        for group in groups:
            touches = any(_overlap(hit.chunk, h.chunk) for h in group)
            if touches and _span([*group, hit]) <= max_chars:
                group.append(hit)
                break
        else:
            groups.append([hit])
    if len(groups) == len(hits):
        return list(hits)
    return [replace(_joined(g), rank=r) for r, g in enumerate(groups, 1)]


def _span(group: Sequence[Hit]) -> int:
    return max(h.chunk.end for h in group) - min(h.chunk.start for h in group)


def _overlap(a: Chunk, b: Chunk) -> bool:
    """Same document (same version), same page, and the spans share text or touch."""
    return (
        a.doc_id == b.doc_id
        and a.metadata.get("generation", 0) == b.metadata.get("generation", 0)
        and a.metadata.get("page") == b.metadata.get("page")
        and a.start <= b.end
        and b.start <= a.end
    )


def _joined(group: list[Hit]) -> Hit:
    """One hit for overlapping hits of one document: their chunks' texts joined over the
    overlap (each chunk's text is its document's text between its offsets), the best one's
    score and metadata, the highest similarity."""
    best = group[0]
    if len(group) == 1:
        return best
    parts = sorted((h.chunk for h in group), key=lambda c: (c.start, -c.end))
    text, start, end = parts[0].text, parts[0].start, parts[0].end
    for c in parts[1:]:
        if c.end > end:
            text += c.text[end - c.start :]
            end = c.end
    similarities = [h.similarity for h in group if h.similarity is not None]
    chunk = Chunk(
        "+".join(c.id for c in parts),
        best.chunk.doc_id,
        text,
        start,
        end,
        {**best.chunk.metadata, "chunk_index": parts[0].metadata.get("chunk_index", 0)},
    )
    return replace(best, chunk=chunk, similarity=max(similarities) if similarities else None)


def fuse(
    dense: Sequence[Hit],
    keyword: Sequence[Hit],
    query_lang: str,
    k: int,
    fusion: Fusion,
    extra: Sequence[tuple[Sequence[Hit], float]] = (),
) -> list[Hit]:
    """Fuse two rankings (each best first) into the k best chunks; score = fused score.
    `extra`: more rankings, each with its weight (the translated question's; RRF with
    `fusion.translated_rrf_k`)."""
    dense, keyword = dense[: fusion.depth], keyword[: fusion.depth]
    if fusion.method == "convex":
        dense_part, keyword_part = _normalised(dense), _normalised(keyword)
    else:
        dense_part = [1.0 / (fusion.rrf_k + r) for r in range(1, len(dense) + 1)]
        keyword_part = [1.0 / (fusion.rrf_k + r) for r in range(1, len(keyword) + 1)]
    scores: dict[str, float] = {}
    chunks: dict[str, Chunk] = {}
    similarity: dict[str, float | None] = {}
    for hit, part in zip(dense, dense_part, strict=True):
        chunks[hit.chunk.id] = hit.chunk
        scores[hit.chunk.id] = part
        similarity[hit.chunk.id] = hit.similarity
    for hit, part in zip(keyword, keyword_part, strict=True):
        same = hit.chunk.metadata.get("lang", query_lang) == query_lang
        weight = fusion.same_language if same else fusion.other_language
        if weight <= 0:
            continue
        chunks.setdefault(hit.chunk.id, hit.chunk)
        scores[hit.chunk.id] = scores.get(hit.chunk.id, 0.0) + weight * part
    for hits, weight in extra:
        hits = hits[: fusion.depth]
        parts = (
            _normalised(hits)
            if fusion.method == "convex"
            else [1.0 / (fusion.translated_rrf_k + r) for r in range(1, len(hits) + 1)]
        )
        for hit, part in zip(hits, parts, strict=True):
            chunks.setdefault(hit.chunk.id, hit.chunk)
            scores[hit.chunk.id] = scores.get(hit.chunk.id, 0.0) + weight * part
            if hit.similarity is not None and similarity.get(hit.chunk.id) is None:
                similarity[hit.chunk.id] = hit.similarity
    best = sorted(scores, key=lambda cid: -scores[cid])[:k]
    return [
        Hit(chunks[cid], score=scores[cid], rank=r, similarity=similarity.get(cid))
        for r, cid in enumerate(best, 1)
    ]


def _normalised(hits: Sequence[Hit]) -> list[float]:
    """Scores mapped to [0, 1] over the list (min-max); all 1.0 when they are equal."""
    if not hits:
        return []
    low, high = min(h.score for h in hits), max(h.score for h in hits)
    if high - low < 1e-12:
        return [1.0] * len(hits)
    return [(h.score - low) / (high - low) for h in hits]
