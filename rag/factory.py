"""The one place that turns Settings into concrete components (embedder, store, generator).

Chatbot calls these only for the parts it was not given, and only when first needed, so building
a Chatbot loads nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rag.config import Settings

if TYPE_CHECKING:
    from models.embedders import SentenceTransformerEmbedder
    from models.generators import LlamaCppGenerator
    from rag.protocols import Embedder
    from vectorstore.chroma import ChromaStore


def build_embedder(settings: Settings) -> SentenceTransformerEmbedder:
    from models.embedders import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(settings.embedder, models_dir=settings.models_dir)


def build_store(settings: Settings, embedder: Embedder) -> ChromaStore:
    from vectorstore.chroma import ChromaStore

    return ChromaStore(settings.store_path, embedder.name, embedder.dim, settings.collection)


def build_generator(settings: Settings) -> LlamaCppGenerator:
    from models.generators import LlamaCppGenerator
    from models.weights import resolve_gguf

    path = resolve_gguf(settings.llm, settings.models_dir)
    return LlamaCppGenerator(
        path,
        name=settings.llm,
        context_window=settings.context_window,
        threads=settings.threads,
        seed=settings.seed,
    )
