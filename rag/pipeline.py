"""The pipeline: Chatbot ingests documents, searches them, and answers questions with citations.

Components (embedder, store, generator) are injected or built from Settings on first use by
rag/factory.py. This module never prints; progress is reported through a callback.
"""

from __future__ import annotations

import collections
import collections.abc
import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rag import evidence, factory, prompts
from rag.answering import Answerer
from rag.chunking import chunk_document, content_hash
from rag.config import Settings
from rag.errors import ConfigError, EmptyIndex, UnsupportedDocument
from rag.language import detect_language
from rag.loaders import TEXT_SUFFIXES, display_names, find_files, is_section, iter_file
from rag.protocols import DocumentStore, Embedder, Generator, PreparingGenerator, Reranker
from rag.retrieval import Retriever, merge_neighbours
from rag.support import SupportChecker, rules_for
from rag.types import Answer, Chunk, Document, Hit, IngestReport, Skipped, final_answer

if TYPE_CHECKING:
    from vectorstore.keyword import KeywordIndex
    from vectorstore.lock import StoreLock

log = logging.getLogger(__name__)

SAMPLE_CORPUS = Path(__file__).parent / "data" / "hammouchi_washington_visit_2022-06.fr.txt"

# progress(done_files, total_files, current_path)
Progress = Callable[[int, int, str], None]
# embedding(chunks_embedded, chunks_to_embed): to_embed grows while files are read, and equals
# chunks_embedded only once the last chunk is embedded
EmbedProgress = Callable[[int, int], None]

_TRANSLATE_TOKENS = 60  # a translated question
_TRANSLATE_SHARE = 0.05  # a language is translated into when it holds this share of the chunks
_TRANSLATE_MAX = 2  # languages translated into, the largest first
_REWRITE_TOKENS = 80  # a standalone question is short; a longer reply is an answer, not a question
_EMBED_BATCH = 256  # chunks embedded (and written) together across documents
_EMBED_STEP = 32  # chunks embedded per call, so that progress follows the embedding
_HASH_BATCH = 256  # documents whose stored versions are looked up together
_COLLECTION_CHUNKS = 16  # a collection read whole has at most this many chunks


@dataclass
class _Pending:
    doc: Document
    chunks: list[Chunk]


class Chatbot:
    """Cited question answering over your documents.

    >>> bot = Chatbot(Settings(store="/tmp/store"))
    >>> bot.ingest(["docs/"]); bot.ask("Who did Hammouchi meet?").text
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        embedder: Embedder | None = None,
        store: DocumentStore | None = None,
        generator: Generator | None = None,
        keyword: KeywordIndex | None = None,
        reranker: Reranker | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self._embedder = embedder
        self._store = store
        self._generator = generator
        self._keyword = keyword
        self._reranker = reranker
        self._writer: StoreLock | None = None
        self._checker: SupportChecker | None = None
        self._embedding: EmbedProgress | None = None  # the running ingest's (one writer)
        self._collection: tuple[Any, list[Hit] | None] | None = None  # (documents, passages)
        self._lock = threading.Lock()

    # -- components, built on first use ---------------------------------------------------------

    @property
    def embedder(self) -> Embedder:
        with self._lock:
            if self._embedder is None:
                self._embedder = factory.build_embedder(self.settings)
            return self._embedder

    @property
    def store(self) -> DocumentStore:
        embedder = self.embedder
        with self._lock:
            if self._store is None:
                self._store = factory.build_store(self.settings, embedder)
            return self._store

    @property
    def writer(self) -> StoreLock:
        """The store's writer lock, shared with other processes (vectorstore/lock.py). It is
        found from the settings alone, so it can be taken before the store is opened."""
        with self._lock:
            if self._writer is None:
                self._writer = factory.build_lock(self.settings)
            return self._writer

    @property
    def keyword(self) -> KeywordIndex:
        """The store's BM25 index; kept in step with the store whatever the retrieval mode."""
        store, writer = self.store, self.writer
        with self._lock:
            if self._keyword is None:
                self._keyword = factory.build_keyword_index(self.settings, store, writer)
            return self._keyword

    @property
    def reranker(self) -> Reranker | None:
        with self._lock:
            if self._reranker is None:
                self._reranker = factory.build_reranker(self.settings)
            return self._reranker

    @property
    def generator(self) -> Generator:
        with self._lock:
            if self._generator is None:
                self._generator = factory.build_generator(self.settings)
            return self._generator

    @property
    def retriever(self) -> Retriever:
        mode = self.settings.retrieval
        return Retriever(
            self.embedder,
            self.store,
            self.keyword if mode != "dense" else None,
            mode=mode,
            reranker=self.reranker,
            merge_chars=self.settings.merge_chars,
        )

    # -- documents -----------------------------------------------------------------------------

    def ingest(
        self,
        paths: Iterable[str | Path],
        progress: Progress | None = None,
        embedding: EmbedProgress | None = None,
    ) -> IngestReport:
        """Add files and folders to the store. Unchanged documents are skipped, changed ones
        replaced; a file that cannot be read is reported in `skipped`, the rest still ingested.
        `progress` follows the files read, `embedding` the chunks embedded (most of the time of
        an ingest). One writer per store: another process's ingest is waited for up to
        `settings.lock_timeout` seconds, then StoreBusy is raised."""
        t0 = time.perf_counter()
        paths = list(paths)
        files, skipped = find_files(paths)
        names = display_names(paths, files)
        counts = {"documents": 0, "unchanged": 0, "chunks": 0, "embedded": 0}
        self._embedding = embedding
        pending: list[_Pending] = []
        seen: set[str] = set()  # document ids read so far
        with self._writing():
            for i, path in enumerate(files):
                problems: list[Skipped] = []
                yielded: list[tuple[str, str]] = []  # (doc id, source) of what the file held
                group: list[Document] = []  # checked against the store together
                before = counts["unchanged"]
                try:
                    for doc in iter_file(path, problems):
                        doc = _named(doc, names[path])
                        group.append(doc)
                        yielded.append((doc.id, doc.source))
                        if len(group) >= _HASH_BATCH or is_section(doc.id):
                            pending = self._add(group, pending, counts, seen)
                            group = []
                        if progress and is_section(doc.id):
                            progress(i, len(files), f"{path} (part {len(yielded)})")
                    pending = self._add(group, pending, counts, seen)
                except UnsupportedDocument as e:
                    log.info("skipped %s", e)
                    skipped.append(Skipped(e.path, e.reason))
                else:
                    sections = any(is_section(doc_id) for doc_id, _ in yielded)
                    changed = counts["unchanged"] - before < len(yielded)
                    suffix = path.suffix.lower()
                    if sections or (changed and suffix in TEXT_SUFFIXES):
                        self._drop_stale(yielded[0][1], {doc_id for doc_id, _ in yielded})
                    elif changed and suffix == ".jsonl":  # records stored before ids were
                        # scoped to their file (bare `id`s) give way to the scoped ones
                        self._drop_stale([s for _, s in yielded], {d for d, _ in yielded})
                skipped.extend(problems)
                if progress:
                    progress(i + 1, len(files), str(path))
            self._write(pending, counts)
            self._embedding = None
        return IngestReport(
            files=len(files),
            documents=counts["documents"],
            unchanged=counts["unchanged"],
            chunks=counts["chunks"],
            skipped=tuple(skipped),
            seconds=time.perf_counter() - t0,
        )

    def _add(
        self,
        docs: Sequence[Document],
        pending: list[_Pending],
        counts: dict[str, int],
        seen: set[str],
    ) -> list[_Pending]:
        """Queue the changed documents' chunks; embed and write the queue when it is a batch."""
        if not docs:
            return pending
        stored = self.store.doc_hashes([d.id for d in docs])
        for doc in docs:
            again = doc.id in seen  # the same id in another file of this ingest (.jsonl records)
            if again:
                log.warning(
                    "%s: the document id %r was read before; keeping this one", doc.source, doc.id
                )
            seen.add(doc.id)
            if not again and stored.get(doc.id) == content_hash(doc.text):
                counts["unchanged"] += 1
                continue
            if stored.get(doc.id) is not None:
                self._forget_states()  # the old text's KV states
            if not doc.metadata.get("lang"):
                lang = detect_language(doc.text)
                doc = dataclasses.replace(doc, metadata={**doc.metadata, "lang": lang})
            # when this version was added (the library lists it)
            doc = dataclasses.replace(doc, metadata={**doc.metadata, "added": int(time.time())})
            chunks = chunk_document(doc, self.settings.chunk_size, self.settings.chunk_overlap)
            pending = [p for p in pending if p.doc.id != doc.id]  # the last one read wins
            pending.append(_Pending(doc, chunks))
            self._report_embedding(counts, pending)
            if sum(len(p.chunks) for p in pending) >= _EMBED_BATCH:
                self._write(pending, counts)
                pending = []
        return pending

    def _drop_stale(self, source: str | Sequence[str], keep: set[str]) -> None:
        """Remove the documents of a file that it no longer yields: sections past its new end,
        or the whole-file document of a file now read in sections, or the reverse."""
        stale = [d for d in self.store.source_doc_ids(source) if d not in keep]
        if stale:
            self._forget_states()
            self.keyword.begin(stale)
            for doc_id in stale:
                self.store.delete(doc_id)
                self.keyword.delete(doc_id)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """Hold the store's writer lock, then open the store (two processes creating one store
        at once would race in Chroma) and repair what a writer that died meanwhile left."""
        with self.writer.hold(self.settings.lock_timeout):
            factory.sync_keyword_index(self.keyword, self.store)
            yield

    def _write(self, pending: Sequence[_Pending], counts: dict[str, int]) -> None:
        """Embed the pending documents' chunks together, then write each document whole."""
        texts = [c.text for p in pending for c in p.chunks]
        if not texts:
            return
        parts = []
        for lo in range(0, len(texts), _EMBED_STEP):
            parts.append(self.embedder.embed_documents(texts[lo : lo + _EMBED_STEP]))
            counts["embedded"] += len(parts[-1])
            self._report_embedding(counts, pending, len(texts) - lo - len(parts[-1]))
        vectors = np.concatenate(parts)
        keyword = self.keyword
        keyword.begin([p.doc.id for p in pending])  # journaled: a crash here is repaired
        bounds = np.cumsum([0] + [len(p.chunks) for p in pending])
        self.store.replace_documents(
            [(p.doc.id, p.chunks, vectors[a:b]) for p, a, b in zip(pending, bounds, bounds[1:])]
        )
        keyword.replace_documents(
            [(p.doc.id, p.chunks, str(p.doc.metadata["lang"])) for p in pending]
        )
        counts["documents"] += len(pending)
        counts["chunks"] += len(texts)

    def _report_embedding(
        self, counts: dict[str, int], pending: Sequence[_Pending], left: int | None = None
    ) -> None:
        """Tell the ingest's `embedding` callback where it stands: `left` chunks of `pending`
        are still to embed (all of them when None)."""
        if self._embedding is not None:
            if left is None:
                left = sum(len(p.chunks) for p in pending)
            self._embedding(counts["embedded"], counts["embedded"] + left)

    def documents(self) -> list[dict[str, Any]]:
        """The documents in the store: doc_id, name, title, source, chunks. `name` is how a
        document is shown: its path relative to the folder it was ingested from (documents
        stored before names were kept: the file's name); two documents that would show the same
        name are told apart by their source."""
        docs = self.store.documents()
        for d in docs:
            file, mark, part = str(d.get("source") or d["doc_id"]).partition("#")
            d["name"] = d.get("name") or Path(file).name + mark + part
        shown = collections.Counter(d["name"] for d in docs)
        for d in docs:
            if shown[d["name"]] > 1:
                d["name"] = f"{d['name']} ({d['source']})"
        return docs

    def delete(self, doc: str) -> int:
        """Delete a document by id, source path, .jsonl record id or title; returns the chunks
        removed."""
        docs = self.documents()
        matches = [d for d in docs if doc in (d["doc_id"], d["source"], d["name"])]
        if not matches:  # a name two documents share (each shown with its source)
            matches = [d for d in docs if d["name"].startswith(f"{doc} (")]
        if not matches:  # a .jsonl record by its own id (its doc_id is `<file>#<id>`)
            matches = [d for d in docs if str(d["doc_id"]).endswith(f"#{doc}")]
        if not matches:
            matches = [d for d in docs if doc == d["title"]]
        if not matches and Path(doc).exists():
            resolved = str(Path(doc).resolve())
            matches = [d for d in docs if resolved in (d["doc_id"], d["source"])]
        if len(matches) != 1:
            what = "No document" if not matches else f"{len(matches)} documents"
            raise UnsupportedDocument(
                doc,
                f"{what} matches; give the name as `ragchat list` shows it, or the doc_id "
                "from `ragchat list --json`.",
            )
        doc_id = str(matches[0]["doc_id"])
        with self._writing():
            self.keyword.begin([doc_id])
            removed = self.store.delete(doc_id)
            self.keyword.delete(doc_id)
        self._forget_states()
        return removed

    def _forget_states(self) -> None:
        """The answer model's kept KV states hold what documents said: when one is deleted or
        replaced, they are all dropped, in memory and in <data_dir>/kv."""
        from models.kvcache import clear_states

        if isinstance(self._generator, PreparingGenerator):
            self._generator.forget_states()
        clear_states(self.settings.kv_dir)

    def warm(self) -> int:
        """Load the models and compute the fixed start of the prompts (the system prompt; a
        small collection, read whole) before the first question; see Answerer.warm. Returns
        the tokens that were already computed (restored from <data_dir>/kv)."""
        return self.answerer.warm()

    # -- questions -----------------------------------------------------------------------------

    def search(self, query: str, k: int | None = None) -> list[Hit]:
        """The k chunks most relevant to `query`, best first. In hybrid mode, with
        `settings.translate`, a query in another language than (some of) the documents is
        also searched for in theirs, translated by the model (`translate`)."""
        translations = self.translate(query)
        hits = self.retriever.search(query, k or self.settings.top_k, translations)
        if not hits and query.strip() and self.store.count() == 0:
            raise EmptyIndex(self.settings.store_path)
        return hits

    def translate(self, query: str) -> dict[str, str]:
        """`query` translated by the model into each language that holds at least 5 % of the
        store's chunks (the two largest) when it is not the query's own: what hybrid search
        looks up in those languages' keyword indexes. Empty when `settings.translate` is off,
        retrieval is not hybrid, or every document is in the query's language."""
        if not self.settings.translate or self.settings.retrieval != "hybrid" or not query.strip():
            return {}
        counts = self.keyword.languages()
        total = sum(counts.values())
        own = detect_language(query)
        targets = [
            lang
            for lang, n in sorted(counts.items(), key=lambda item: -item[1])
            if lang != own and lang in prompts.LANGUAGE_NAMES and n >= _TRANSLATE_SHARE * total
        ][:_TRANSLATE_MAX]
        if not targets:
            return {}
        generator = self.generator
        translations = {}
        for lang in targets:
            text = "".join(
                generator.stream(
                    prompts.translate_messages(query, lang),
                    max_tokens=_TRANSLATE_TOKENS,
                    stop=["\n"],
                    temperature=0.0,
                )
            )
            translations[lang] = prompts.clean_translation(text, query)
        return translations

    def ask(self, question: str) -> Answer:
        """Answer a question from the documents, with checked citations."""
        return final_answer(self.stream(question))

    def chat(self, messages: Sequence[dict[str, str]]) -> Answer:
        """Answer the last user message of a conversation (`{"role", "content"}` dicts, oldest
        first). A follow-up ("And when was that?") is first rewritten into a standalone
        question from the earlier turns; `Answer.rewritten` holds what was searched for."""
        return final_answer(self.stream_chat(messages))

    def stream_chat(
        self, messages: Sequence[dict[str, str]]
    ) -> collections.abc.Generator[str | Answer, None, None]:
        """`chat`, streamed like `stream`; closing the generator stops the model."""
        turns = [m for m in messages if m.get("role") in ("user", "assistant")]
        if not turns or turns[-1].get("role") != "user":
            raise ConfigError("chat() needs a conversation that ends with a user message.")
        question = str(turns[-1]["content"])
        history = [m for m in turns[:-1] if str(m.get("content", "")).strip()]
        if not history:
            yield from self.stream(question)
            return
        t0 = time.perf_counter()
        standalone = self.rewrite(history, question)
        yield from self.stream(
            question,
            rewritten=standalone,
            extra_timings={"rewrite": time.perf_counter() - t0},
        )

    def rewrite(self, history: Sequence[dict[str, str]], question: str) -> str:
        """`question` made standalone from the conversation `history` by the model."""
        generator = self.generator
        text = "".join(
            generator.stream(
                prompts.rewrite_messages(history, question),
                max_tokens=_REWRITE_TOKENS,
                stop=["\n"],
                temperature=0.0,
            )
        )
        return prompts.clean_rewrite(text, question)

    @property
    def checker(self) -> SupportChecker:
        embedder = self.embedder
        with self._lock:
            if self._checker is None:
                self._checker = SupportChecker(embedder, rules_for(embedder.name))
            return self._checker

    def stream(
        self,
        question: str,
        hits: Sequence[Hit] | None = None,
        *,
        rewritten: str | None = None,
        extra_timings: dict[str, float] | None = None,
    ) -> Iterator[str | Answer]:
        """Yield the answer's text as it is generated, then the final Answer.

        The final Answer's text is authoritative: it is checked against the passages, and a
        refusal is replaced by a sentence in the question's language; `Answer.signals` says
        why (rag/answering.py, rag/refusal.py). `hits` skips retrieval and answers from the
        given passages (evaluation retrieves once for both); `rewritten` is searched for
        instead of `question` (a follow-up made standalone)."""
        t0 = time.perf_counter()
        query = rewritten or question
        hits = list(hits) if hits is not None else self.search(query)
        timings = dict(extra_timings or {})
        timings["retrieval"] = time.perf_counter() - t0
        yield from self.answerer.stream(
            question,
            query,
            hits,
            language=self.answer_language(question),
            timings=timings,
            t0=t0,
            rewritten=rewritten,
        )

    def answer_language(self, question: str) -> str:
        """The language an answer to `question` is written in (Settings.answer_language)."""
        chosen = self.settings.answer_language
        return detect_language(question) if chosen == "auto" else chosen

    def configured(self, **changes: Any) -> Chatbot:
        """A Chatbot with some settings changed (`top_k=3`, `retrieval="dense"`) that shares
        this one's store, embedder and, unless `llm` changes, answer model (another `llm` is
        loaded on its first use: keep the returned Chatbot to keep it loaded). The store and
        the embedder cannot be changed this way. Raises ConfigError for invalid values."""
        fixed = {"data_dir", "store", "models", "collection", "embedder"}
        wrong = sorted(set(changes) & fixed)
        if wrong:
            raise ConfigError(
                f"{', '.join(wrong)} cannot be changed on a running Chatbot: build a new one "
                "with Chatbot(Settings(...))."
            )
        other = Chatbot(
            dataclasses.replace(self.settings, **changes),
            embedder=self.embedder,
            store=self.store,
            generator=None if {"llm", "llm_api_key"} & set(changes) else self.generator,
            keyword=self.keyword,
            reranker=self.reranker,
        )
        other._writer, other._checker = self.writer, self._checker
        if other._generator is not None:  # the same model: the same token counts
            other._collection = self._collection
        return other

    @property
    def answerer(self) -> Answerer:
        return Answerer(
            self.settings, self.generator, self.embedder, self.checker, self.collection_hits
        )

    def collection_hits(self) -> list[Hit] | None:
        """The whole collection as passages in document order, neighbours joined, when it is
        small enough to be read whole (`settings.collection_tokens`); else None. Read again
        only when the store's documents change."""
        limit = self.settings.collection_tokens
        store = self.store
        if limit <= 0 or not 0 < store.count() <= _COLLECTION_CHUNKS:
            return None
        docs = store.documents()
        key = tuple(sorted(store.doc_hashes([str(d["doc_id"]) for d in docs]).items()))
        if self._collection is not None and self._collection[0] == key:
            return self._collection[1]
        chunks = [c for d in docs for c in store.get_chunks(str(d["doc_id"]))]
        hits = [
            Hit(c, 0.0, n)
            for n, c in enumerate(sorted(chunks, key=lambda c: (c.doc_id, c.start, c.id)), 1)
        ]
        if self.settings.merge_chars:
            hits = merge_neighbours(hits, self.settings.merge_chars)
        count = self.generator.count_tokens
        whole = sum(count(b.text()) for b in evidence.whole(hits).blocks) <= limit
        self._collection = (key, hits if whole else None)
        return self._collection[1]


def _named(doc: Document, name: str) -> Document:
    """`doc` with its display name: the file's path relative to the folder ingested, and the
    record's id or the section's number after a `#`."""
    if doc.metadata.get("record_id"):
        name = f"{name}#{doc.metadata['record_id']}"
    elif is_section(doc.id):
        name = f"{name}#{doc.id.rsplit('#', 1)[1]}"
    return dataclasses.replace(doc, metadata={**doc.metadata, "name": name})
