"""The one place that turns Settings into concrete components (embedder, store, generator).

Chatbot calls these only for the parts it was not given, and only when first needed, so building
a Chatbot loads nothing.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import TYPE_CHECKING

from rag.config import Settings

if TYPE_CHECKING:
    from models.embedders import SentenceTransformerEmbedder
    from models.generators import LlamaCppGenerator, OpenAIGenerator
    from models.rerankers import CrossEncoderReranker
    from rag.protocols import DocumentStore, Embedder
    from vectorstore.chroma import ChromaStore
    from vectorstore.keyword import KeywordIndex
    from vectorstore.lock import StoreLock


def build_embedder(settings: Settings) -> SentenceTransformerEmbedder:
    from models.embedders import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(settings.embedder, models_dir=settings.models_dir)


def build_store(settings: Settings, embedder: Embedder) -> ChromaStore:
    from vectorstore.chroma import ChromaStore

    return ChromaStore(settings.store_path, embedder.name, embedder.dim, settings.collection)


def keyword_index_path(settings: Settings, store: DocumentStore | None = None) -> Path:
    """Where the keyword index of a store lives: beside Chroma's files, in the store directory;
    for a Chroma server, on this machine, in <data_dir>/keywords/<host>_<port>/."""
    root = str(getattr(store, "path", None) or settings.store_path)
    collection = getattr(store, "collection", None) or settings.collection
    if root.startswith(("http://", "https://")):
        server = re.sub(r"[^\w.-]+", "_", root.split("://", 1)[1]).strip("_")
        return Path(settings.data_dir) / "keywords" / server / f"{collection}.sqlite"
    return Path(root) / "keywords" / f"{collection}.sqlite"


def build_lock(settings: Settings, store: DocumentStore | None = None) -> StoreLock:
    """The store's writer lock, a file beside its keyword index (see vectorstore/lock.py)."""
    from vectorstore.lock import StoreLock

    path = keyword_index_path(settings, store)
    return StoreLock(path.with_suffix(".lock"), str(getattr(store, "path", settings.store_path)))


def build_keyword_index(
    settings: Settings, store: DocumentStore, lock: StoreLock | None = None
) -> KeywordIndex:
    """The store's keyword index, brought in step with the store (`sync_keyword_index`) unless
    another process is writing to the store: its journal is then work in progress, not the
    leftovers of a crash, and is left to that writer (or to the next one, after a crash)."""
    from vectorstore.keyword import KeywordIndex

    index = KeywordIndex(keyword_index_path(settings, store))
    with lock.try_hold() if lock else contextlib.nullcontext(True) as held:
        if held:
            sync_keyword_index(index, store)
    return index


def sync_keyword_index(index: KeywordIndex, store: DocumentStore) -> int:
    """Repair what an interrupted write left and re-derive the keyword rows from the store.
    Call it holding the store's writer lock."""
    return index.sync(
        store.count,
        lambda: [str(d["doc_id"]) for d in store.documents()],
        store.get_chunks,
        getattr(store, "repair", None),
    )


def build_reranker(settings: Settings) -> CrossEncoderReranker | None:
    if not settings.reranker:
        return None
    from models.rerankers import CrossEncoderReranker

    return CrossEncoderReranker(settings.reranker)


def build_generator(settings: Settings) -> LlamaCppGenerator | OpenAIGenerator:
    """`openai:URL[#MODEL]` names an OpenAI-compatible server; anything else a GGUF model."""
    if settings.llm.startswith("openai:"):
        from models.generators import OpenAIGenerator

        url, _, model = settings.llm[len("openai:") :].partition("#")
        return OpenAIGenerator(
            url,
            model=model,
            api_key=settings.llm_api_key,
            seed=settings.seed,
            grammar=settings.llm_grammar,
        )

    from models.generators import LlamaCppGenerator
    from models.weights import resolve_gguf

    path = resolve_gguf(settings.llm, settings.models_dir)
    return LlamaCppGenerator(
        path,
        name=settings.llm,
        context_window=settings.context_window,
        threads=settings.threads,
        seed=settings.seed,
        kv_cache_mb=settings.kv_cache_mb,
        kv_dir=settings.kv_dir,
        kv_disk_mb=settings.kv_disk_mb,
    )
