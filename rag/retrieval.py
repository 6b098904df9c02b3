"""Query -> ranked Hits: embed the query and search the vector store.

Dense retrieval only for now; hybrid search and reranking slot in here.
"""

from __future__ import annotations

from rag.protocols import Embedder, VectorStore
from rag.types import Hit


class Retriever:
    def __init__(self, embedder: Embedder, store: VectorStore) -> None:
        self.embedder = embedder
        self.store = store

    def search(self, query: str, k: int) -> list[Hit]:
        """The k best chunks for `query`, best first (rank 1)."""
        if not query.strip():
            return []
        return self.store.search(self.embedder.embed_query(query), k)
