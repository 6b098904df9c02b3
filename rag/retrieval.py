"""Query -> ranked Hits: dense (embedder + vector store), keyword (BM25), their fusion, reranking.

Hybrid search fuses the two rankings by weighted reciprocal rank (RRF): a chunk scores
`1 / (RRF_K + dense rank) + w / (RRF_K + keyword rank)`, where the keyword weight `w` depends on
whether the chunk is in the question's language. Keyword search is strong within one language
and blind across languages (an English question shares few words with a Spanish passage), so
its votes count fully when the languages match and little when they do not; the multilingual
embedder carries cross-language questions. The weights were tuned on the `*_mini` questions of
the evaluation sets only (`bench/tune_fusion.py`, figures in docs/results.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from rag.errors import ConfigError
from rag.language import detect_language
from rag.protocols import ChunkLookup, Embedder, KeywordSearch, Reranker, VectorStore
from rag.types import Chunk, Hit

MODES = ("hybrid", "dense", "keyword")


@dataclass(frozen=True, slots=True)
class Fusion:
    """Weighted reciprocal-rank fusion parameters (see the module docstring)."""

    rrf_k: float = 60.0
    same_language: float = 1.0  # keyword weight for a chunk in the question's language
    other_language: float = 0.0  # keyword weight for a chunk in another language
    depth: int = 50  # how deep each ranking is read


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

    def search(self, query: str, k: int) -> list[Hit]:
        if not query.strip():
            return []
        depth = max(k, self.rerank_depth) if self.reranker else k
        if self.mode == "dense":
            hits = self.dense(query, depth)
        elif self.mode == "keyword":
            hits = self.keyword_hits(query, depth)
        else:
            n = max(depth, self.fusion.depth)
            hits = fuse(
                self.dense(query, n),
                self.keyword_hits(query, n),
                detect_language(query),
                depth,
                self.fusion,
            )
        if self.reranker:
            hits = self.reranker.rerank(query, hits, k)
        return hits[:k]

    def dense(self, query: str, k: int) -> list[Hit]:
        return self.store.search(self.embedder.embed_query(query), k)

    def keyword_hits(self, query: str, k: int) -> list[Hit]:
        assert self.keyword is not None
        found = self.keyword.search(query, k)
        chunks = {c.id: c for c in self.store.fetch([h.chunk_id for h in found])}
        return [
            Hit(chunk=chunks[h.chunk_id], score=h.score, rank=rank)
            for rank, h in enumerate((h for h in found if h.chunk_id in chunks), 1)
        ]


def fuse(
    dense: Sequence[Hit], keyword: Sequence[Hit], query_lang: str, k: int, fusion: Fusion
) -> list[Hit]:
    """Weighted reciprocal-rank fusion of two rankings (each best first); score = fused score."""
    scores: dict[str, float] = {}
    chunks: dict[str, Chunk] = {}
    for rank, hit in enumerate(dense[: fusion.depth], 1):
        chunks[hit.chunk.id] = hit.chunk
        scores[hit.chunk.id] = 1.0 / (fusion.rrf_k + rank)
    for rank, hit in enumerate(keyword[: fusion.depth], 1):
        same = hit.chunk.metadata.get("lang", query_lang) == query_lang
        weight = fusion.same_language if same else fusion.other_language
        if weight <= 0:
            continue
        chunks.setdefault(hit.chunk.id, hit.chunk)
        scores[hit.chunk.id] = scores.get(hit.chunk.id, 0.0) + weight / (fusion.rrf_k + rank)
    best = sorted(scores, key=lambda cid: -scores[cid])[:k]
    return [Hit(chunk=chunks[cid], score=scores[cid], rank=r) for r, cid in enumerate(best, 1)]
