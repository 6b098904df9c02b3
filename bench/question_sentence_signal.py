"""Would the question's similarity to its best passage sentence tell unanswerable questions?

A refusal signal tried offline on recorded answers: for every answered question of the default
answer runs (docs/eval-runs/answers-*), the highest e5 cosine between the question (embedded as
a query) and any sentence of the passages the answer cites ("cited_best") or of all retrieved
passages ("any_best"), beside the best chunk's similarity. Prints, for thresholds, how many
answered unanswerable questions each would refuse against answerable (and correct) ones, and
writes every row to bench/results/question_sentence_signal.json.

    .venv/bin/python bench/question_sentence_signal.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from rag.chunking import split_sentences
from rag.config import Settings
from rag.factory import build_embedder

RUNS = [
    "answers-hammouchi",
    "answers-hammouchi-unanswerable",
    "answers-piaf_fr-50",
    "answers-piaf_fr-unanswerable",
    "answers-xquad_en_q_es-50",
    "answers-xquad_en_q_es-unanswerable",
    "answers-piaf_fr_q_en",
]


def main() -> None:
    embedder = build_embedder(Settings())

    def best(question: np.ndarray, passages: list[str]) -> float | None:
        sentences = [p[a:b] for p in passages for a, b in split_sentences(p)]
        if not sentences:
            return None
        return float((embedder.embed_documents(sentences) @ question).max())

    rows = []
    for run in RUNS:
        for line in (Path("docs/eval-runs") / run / "results.jsonl").open(encoding="utf-8"):
            r = json.loads(line)
            if r["refused"]:
                continue
            texts = {h["chunk_id"]: h["text"] for h in r["retrieved"]}
            cited = [texts[c["chunk_id"]] for c in r["citations"] if c["chunk_id"] in texts]
            q = embedder.embed_query(r["question"])
            rows.append({
                "run": run, "id": r["id"], "unanswerable": r["unanswerable"],
                "contains": r.get("contains"), "cited_best": best(q, cited),
                "any_best": best(q, list(texts.values())),
                "top_chunk": r["retrieved"][0]["similarity"],
            })  # fmt: skip
    out = Path("bench/results/question_sentence_signal.json")
    out.write_text(json.dumps(rows, indent=1) + "\n")
    unanswerable = [r for r in rows if r["unanswerable"]]
    answerable = [r for r in rows if not r["unanswerable"]]
    correct = [r for r in answerable if r["contains"] == 1.0]
    print("| signal < t | unanswerable refused | answerable refused | correct lost |")
    print("|---|---|---|---|")
    for key in ("cited_best", "any_best", "top_chunk"):
        for t in (0.80, 0.82, 0.84, 0.86):
            n = [sum(1 for r in g if r[key] is not None and r[key] < t)
                 for g in (unanswerable, answerable, correct)]  # fmt: skip
            print(f"| {key} < {t} | {n[0]} / {len(unanswerable)} | {n[1]} / {len(answerable)} | "
                  f"{n[2]} / {len(correct)} |")  # fmt: skip


if __name__ == "__main__":
    main()
