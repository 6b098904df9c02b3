"""The core value types of ragchat: frozen dataclasses, no I/O, no behaviour beyond small helpers.

Everything that crosses a module boundary (a loaded document, a chunk, a search hit, a citation,
an answer, an ingest report) is one of these.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Document:
    """One logical document: a file, or one record of a JSONL collection."""

    id: str
    source: str  # where it came from: a file path, or "path.jsonl#id"
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)  # title, pages, language, ...

    @property
    def title(self) -> str:
        return str(self.metadata.get("title") or self.id)


@dataclass(frozen=True, slots=True)
class Chunk:
    """A passage of a document; `text == document.text[start:end]`."""

    id: str  # content-derived, stable across ingests; "id1+id2" for neighbours joined by search
    doc_id: str
    text: str
    start: int
    end: int
    metadata: dict[str, Any] = field(default_factory=dict)  # source, title, page, doc_hash, ...

    @property
    def source(self) -> str:
        return str(self.metadata.get("source", ""))

    @property
    def title(self) -> str:
        return str(self.metadata.get("title") or self.doc_id)

    @property
    def record_id(self) -> str:
        """The id the document has in its collection (a .jsonl record's own `id`, which
        evaluation sets name as `context_id`); the doc_id for any other document."""
        return str(self.metadata.get("record_id") or self.doc_id)

    @property
    def page(self) -> int | None:
        page = self.metadata.get("page")
        return int(page) if page is not None and page != -1 else None


@dataclass(frozen=True, slots=True)
class Hit:
    """A retrieved chunk. Higher score is better; rank starts at 1."""

    chunk: Chunk
    score: float
    rank: int
    # the embedder's cosine similarity between the question and the chunk, when dense search
    # ranked it (hybrid and dense modes); the fused `score` is rank-based and says nothing of
    # how relevant the best hit is, this does (the refusal threshold reads it)
    similarity: float | None = None


@dataclass(frozen=True, slots=True)
class Citation:
    """A `[n]` marker of an answer resolved to the retrieved chunk it names.

    `quote` is the part of the chunk that best supports the cited sentence, and
    `chunk.text[start:end] == quote`.
    """

    n: int
    chunk: Chunk
    quote: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Sentence:
    """One sentence of an answer after its citations were checked (rag/support.py).

    `citations` are the passage numbers that support it (the model's markers, corrected);
    `supported` is False when no retrieved passage supports it: it is shown as such and cites
    nothing. `support` is the best support score found (0..1)."""

    text: str  # without its markers
    citations: tuple[int, ...]
    supported: bool
    support: float


@dataclass(frozen=True, slots=True)
class Answer:
    """The result of a question: the text with its `[n]` markers and what they point at.

    `text` is the checked answer: each sentence followed by the markers of the passages that
    support it. `sentences` holds the same sentences with their support; `raw` is the model's
    text as generated; `text` holds none of its markup (rag/markup.py). `rewritten` is the
    standalone question searched for when the question was a follow-up rewritten from the
    conversation (Chatbot.chat)."""

    question: str
    text: str
    citations: tuple[Citation, ...]
    hits: tuple[Hit, ...]
    refused: bool
    timings: dict[str, float]  # seconds: retrieval, first_token, total, ...
    usage: dict[str, int] = field(default_factory=dict)  # prompt_tokens, completion_tokens, ...
    sentences: tuple[Sentence, ...] = ()
    raw: str = ""
    rewritten: str | None = None
    language: str = ""  # the question's language, which the answer is written in
    # what the engine found wrong with the model's reply and acted on ("markup_removed": an
    # image, link, tag or web address taken out, rag/markup.py)
    signals: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Skipped:
    """A file that could not be ingested, and why."""

    path: str
    reason: str


@dataclass(frozen=True, slots=True)
class IngestReport:
    """What an ingest did: files read, documents added or replaced, chunks written."""

    files: int
    documents: int  # documents whose chunks were written (new or changed)
    unchanged: int  # documents already in the store with the same content
    chunks: int  # chunks written
    skipped: tuple[Skipped, ...]
    seconds: float


def final_answer(
    pieces: Iterable[str | Answer], on_text: Callable[[str], None] | None = None
) -> Answer:
    """The Answer that ends a stream (Chatbot.stream, stream_chat), each text piece before it
    given to `on_text` as it comes."""
    answer = None
    for piece in pieces:
        if isinstance(piece, Answer):
            answer = piece
        elif on_text is not None:
            on_text(piece)
    if answer is None:  # stream() always ends with the Answer
        raise RuntimeError("the answer stream ended without its Answer")
    return answer
