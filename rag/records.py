"""The JSON form of a Hit and an Answer: what `ragchat ask --json` prints, what the chat keeps
of each answer in its conversations (ui/conversations.py), and back again.

One form for every reader, so an answer kept by the chat reads like one printed by the CLI.
`answer_from_record` rebuilds an Answer that shows and exports as the original did: its text,
sentences, citations with their passages and quotes, the passages retrieved, its timings, usage
and signals (a passage's score and cosine are rounded)."""

from __future__ import annotations

from typing import Any

from rag.refusal import explain
from rag.types import Answer, Chunk, Citation, Hit, Sentence


def hit_record(hit: Hit) -> dict[str, Any]:
    c = hit.chunk
    return {
        "rank": hit.rank,
        "score": round(hit.score, 4),
        "similarity": None if hit.similarity is None else round(hit.similarity, 4),
        "chunk_id": c.id,
        "doc_id": c.doc_id,
        "title": c.title,
        "source": c.source,
        "page": c.page,
        "start": c.start,
        "end": c.end,
        "text": c.text,
    }


def sentence_records(answer: Answer) -> list[dict[str, Any]]:
    return [
        {
            "text": s.text,
            "citations": list(s.citations),
            "supported": s.supported,
            "support": s.support,
        }
        for s in answer.sentences
    ]


def answer_record(answer: Answer) -> dict[str, Any]:
    return {
        "question": answer.question,
        "answer": answer.text,
        "refused": answer.refused,
        "language": answer.language,
        "rewritten": answer.rewritten,
        "citations": [
            {
                "n": c.n,
                "chunk_id": c.chunk.id,
                "doc_id": c.chunk.doc_id,
                "title": c.chunk.title,
                "source": c.chunk.source,
                "page": c.chunk.page,
                "start": c.chunk.start,
                "end": c.chunk.end,
                "text": c.chunk.text,
                "quote": c.quote,
                "quote_start": c.start,
                "quote_end": c.end,
            }
            for c in answer.citations
        ],
        "sentences": sentence_records(answer),
        "hits": [hit_record(h) for h in answer.hits],
        "timings": {k: round(v, 3) for k, v in answer.timings.items()},
        "usage": answer.usage,
        "signals": list(answer.signals),
        "reasons": explain(answer.signals),
        "raw": answer.raw,
    }


def _chunk(record: dict[str, Any]) -> Chunk:
    metadata: dict[str, Any] = {"title": record.get("title") or "", "source": record.get("source")}
    if record.get("page") is not None:
        metadata["page"] = record["page"]
    text = str(record.get("text", ""))
    start = int(record.get("start") or 0)
    return Chunk(
        str(record.get("chunk_id") or ""),
        str(record.get("doc_id") or ""),
        text,
        start,
        int(record.get("end") or start + len(text)),
        metadata,
    )


def answer_from_record(record: dict[str, Any]) -> Answer:
    """The Answer an `answer_record` was made from (see the module's docstring)."""
    citations = tuple(
        Citation(
            int(c["n"]),
            _chunk(c),
            str(c.get("quote", "")),
            int(c.get("quote_start") or 0),
            int(c.get("quote_end") or 0),
        )
        for c in record.get("citations", [])
    )
    hits = tuple(
        Hit(_chunk(h), float(h.get("score") or 0.0), int(h.get("rank") or n), h.get("similarity"))
        for n, h in enumerate(record.get("hits", []), 1)
    )
    sentences = tuple(
        Sentence(
            str(s["text"]),
            tuple(int(n) for n in s.get("citations", [])),
            bool(s.get("supported", True)),
            float(s.get("support") or 0.0),
        )
        for s in record.get("sentences", [])
    )
    return Answer(
        question=str(record.get("question", "")),
        text=str(record.get("answer", "")),
        citations=citations,
        hits=hits,
        refused=bool(record.get("refused")),
        timings=dict(record.get("timings") or {}),
        usage=dict(record.get("usage") or {}),
        sentences=sentences,
        raw=str(record.get("raw", "")),
        rewritten=record.get("rewritten"),
        language=str(record.get("language", "")),
        signals=tuple(record.get("signals") or ()),
    )
