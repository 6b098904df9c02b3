"""Greedy against balanced chunks, and joining overlapping neighbours: dense retrieval R@5.

Each set's documents are chunked two ways at ragchat's defaults (1,000 characters, 200 of
overlap): "greedy" packs sentences up to 1,000 characters and leaves the rest to the next chunk
(ragchat before balancing); "balanced" is `rag.chunking.chunk_spans` (same number of chunks,
each as short as that number allows). The chunks are embedded with ragchat's default embedder
and searched exactly (numpy, cosine); a question's gold passage is found at rank r when the
r-th chunk belongs to it. "joined" applies `rag.retrieval.merge_neighbours` (two chunks'
length at most, as the pipeline does) to the top 30 chunks before ranking. Dense only: on
these sets' English questions over Spanish and German passages hybrid search is the dense
ranking (keyword votes across languages count for nothing).

    .venv/bin/python bench/tune_chunking.py                 # the *_mini questions (tuning)
    .venv/bin/python bench/tune_chunking.py --held-out      # the other questions of each set
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from rag.chunking import chunk_spans
from rag.config import Settings
from rag.factory import build_embedder
from rag.retrieval import merge_neighbours
from rag.types import Chunk, Hit

SETTINGS = Settings()
SIZE, OVERLAP = SETTINGS.chunk_size, SETTINGS.chunk_overlap


def questions(data: Path, name: str, held_out: bool) -> list[dict]:
    mini = [json.loads(line) for line in (data / f"{name}_mini" / "questions.jsonl").open()]
    if not held_out:
        return mini
    seen = {q["id"] for q in mini}
    every = [json.loads(line) for line in (data / name / "questions.jsonl").open()]
    return [q for q in every if q["id"] not in seen and not q.get("unanswerable")]


def measure(chunks: list[Chunk], vectors: np.ndarray, qs: list[dict], qv: np.ndarray) -> dict:
    scores = qv @ vectors.T
    r5 = joined5 = mrr = 0.0
    for i, q in enumerate(qs):
        order = np.argsort(-scores[i])[:30]
        hits = [Hit(chunks[j], float(scores[i, j]), r) for r, j in enumerate(order, 1)]
        docs = [h.chunk.record_id for h in hits[:10]]
        rank = docs.index(q["context_id"]) + 1 if q["context_id"] in docs else None
        r5 += bool(rank and rank <= 5)
        mrr += 1 / rank if rank else 0
        joined = merge_neighbours(hits, SETTINGS.merge_chars)[:5]
        joined5 += any(h.chunk.record_id == q["context_id"] for h in joined)
    n = len(qs)
    return {
        "R@5": round(r5 / n, 4),
        "MRR@10": round(mrr / n, 4),
        "R@5 joined": round(joined5 / n, 4),
        "missed@5": int(n - r5),
        "missed@5 joined": int(n - joined5),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="xquad_en_q_de,xquad_en_q_es,xquad_en")
    parser.add_argument("--data", type=Path, default=Path("../shared/eval"))
    parser.add_argument("--held-out", action="store_true", help="questions not in *_mini")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    embedder = build_embedder(Settings())
    report: dict = {"command": "python bench/tune_chunking.py" + " --held-out" * args.held_out,
                    "size": SIZE, "overlap": OVERLAP, "sets": {}}  # fmt: skip
    for name in args.sets.split(","):
        docs = [json.loads(line) for line in (args.data / name / "documents.jsonl").open()]
        qs = questions(args.data, name, args.held_out)
        qv = np.stack([embedder.embed_query(q["question"]) for q in qs])
        report["sets"][name] = {"questions": len(qs)}
        for label, balanced in (("greedy", False), ("balanced", True)):
            chunks = [
                Chunk(f"{d['id']}:{a}", d["id"], d["text"][a:b], a, b, {})
                for d in docs
                for a, b in chunk_spans(d["text"], SIZE, OVERLAP, balanced=balanced)
            ]
            vectors = embedder.embed_documents([c.text for c in chunks])
            row = {"chunks": len(chunks), **measure(chunks, vectors, qs, qv)}
            report["sets"][name][label] = row
            print(name, label, json.dumps(row), flush=True)
    out = args.out or Path("bench/results") / (
        "tune_chunking_held_out.json" if args.held_out else "tune_chunking.json"
    )
    out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
