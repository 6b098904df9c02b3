"""The small interfaces the pipeline is built from. Fakes need no inheritance, only the methods.

Implementations: models/embedders.py (Embedder), vectorstore/chroma.py (VectorStore,
DocumentIndex, ChunkLookup), vectorstore/keyword.py (KeywordSearch), models/rerankers.py
(Reranker), models/generators.py (Generator).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from rag.types import Chunk, Hit


@runtime_checkable
class Embedder(Protocol):
    """Texts to unit-length vectors. `name` identifies the model in the store."""

    name: str

    @property
    def dim(self) -> int: ...

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_query(self, text: str) -> np.ndarray: ...


@runtime_checkable
class VectorStore(Protocol):
    def upsert(self, chunks: Sequence[Chunk], vectors: np.ndarray) -> None: ...

    def search(self, vector: np.ndarray, k: int) -> list[Hit]: ...

    def nearest_ids(self, vector: np.ndarray, k: int) -> list[tuple[str, float]]:
        """(chunk id, score) of the k nearest chunks, best first, without their text."""
        ...

    def delete(self, doc_id: str) -> int: ...


@runtime_checkable
class DocumentIndex(Protocol):
    """What the pipeline needs to manage whole documents in a store."""

    def documents(self) -> list[dict[str, object]]: ...

    def source_doc_ids(self, source: str | Sequence[str]) -> list[str]: ...

    def doc_hashes(self, doc_ids: Sequence[str]) -> dict[str, str | None]: ...

    def replace_documents(
        self, documents: Sequence[tuple[str, Sequence[Chunk], np.ndarray]]
    ) -> None: ...


@runtime_checkable
class ChunkLookup(Protocol):
    """Chunks by id or by document: keyword hits and the keyword index's repair read them."""

    def fetch(self, ids: Sequence[str]) -> list[Chunk]: ...

    def get_chunks(self, doc_id: str) -> list[Chunk]: ...

    def count(self) -> int: ...


class DocumentStore(VectorStore, DocumentIndex, ChunkLookup, Protocol):
    """A store that serves searches, whole-document management and lookups (ChromaStore)."""


class KeywordMatch(Protocol):
    @property
    def chunk_id(self) -> str: ...

    @property
    def score(self) -> float: ...

    @property
    def lang(self) -> str: ...


@runtime_checkable
class KeywordSearch(Protocol):
    """Ranked chunk ids for a query by words (BM25), best first."""

    def search(
        self, query: str, k: int, languages: Collection[str] | None = None
    ) -> Sequence[KeywordMatch]:
        """Over the chunks of every language, or only of `languages`."""
        ...


@runtime_checkable
class Reranker(Protocol):
    """Re-orders retrieved hits by a finer relevance model; returns the k best, ranks renumbered."""

    name: str

    def rerank(self, query: str, hits: Sequence[Hit], k: int) -> list[Hit]: ...


@runtime_checkable
class Generator(Protocol):
    """Chat messages to a stream of text pieces. The non-streaming call is "".join(stream())."""

    name: str

    def stream(
        self,
        messages: Sequence[dict[str, str]],
        *,
        max_tokens: int,
        stop: Sequence[str] = (),
        temperature: float = 0.0,
    ) -> Iterator[str]: ...

    def count_tokens(self, text: str) -> int: ...


@runtime_checkable
class BlockGenerator(Protocol):
    """A generator that reads a prompt as blocks and keeps their KV states across calls, and
    can hold its reply to a GBNF grammar (LlamaCppGenerator, models/kvcache.py)."""

    def stream_blocks(
        self,
        system: str,
        blocks: Sequence[str],
        tail: str,
        *,
        max_tokens: int,
        grammar: str | None = None,
        stop: Sequence[str] = (),
        temperature: float = 0.0,
        prefill: str = "",
        resume: bool = False,
    ) -> Iterator[str]: ...


# What some generators offer beside the Generator protocol; the engine asks with isinstance.


@runtime_checkable
class PreparingGenerator(Protocol):
    """A generator that can compute a prompt's blocks before the question comes, and keeps
    their KV states, on disk too (LlamaCppGenerator): `forget_states` drops them all."""

    def prepare_blocks(self, system: str, blocks: Sequence[str]) -> int: ...

    def forget_states(self) -> None: ...


@runtime_checkable
class GrammarGenerator(Protocol):
    """A generator that can hold one whole reply to a GBNF grammar (OpenAIGenerator, where
    the server takes one). `holds_grammar` is False once it knows the server does not."""

    holds_grammar: bool

    def stream_grammar(
        self,
        messages: Sequence[dict[str, str]],
        *,
        grammar: str,
        max_tokens: int,
        stop: Sequence[str] = (),
        temperature: float = 0.0,
    ) -> Iterator[str]: ...


@runtime_checkable
class ReportsUsage(Protocol):
    """A generator that records its last call's token counts ("prompt_tokens",
    "completion_tokens", "cached_prompt_tokens")."""

    last_usage: dict[str, int]


@runtime_checkable
class ScoresFirstToken(Protocol):
    """A generator that keeps its last reply's first-token distribution (LlamaCppGenerator)."""

    def first_token_probability(self, text: str) -> float | None: ...


@runtime_checkable
class Chooser(Protocol):
    """A generator that scores given replies by their first token (LlamaCppGenerator)."""

    def choose(
        self, messages: Sequence[dict[str, str]], options: Sequence[str]
    ) -> dict[str, float]: ...
