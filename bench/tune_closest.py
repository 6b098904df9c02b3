"""How often the evidence sentence the engine ranks first holds the gold answer, by scoring.

    .venv/bin/python bench/tune_closest.py QUESTIONS.jsonl STORE [--sample 0] [--seed 0]
        [--out FILE.json]

With `quote_choice` "closest" the engine quotes the evidence sentence that scores best for
the question, and the model answers from it (bench/id_choice.py: the embedder's first
sentence holds the gold more often than the one the model names). No answer model runs:
each question's evidence is built as `Answerer.evidence` builds it, then every sentence is
scored as cosine + lexical x (share of the question's words it holds) + title x (share
held by its passage's title and it together) + kind x (it holds what the question asks
for: a number, a time, rag/support.py `answers_the_question`) - rank x (its block's place),
over a grid of the four weights. Reports, over the questions whose evidence holds a gold
answer, the share whose first sentence holds one. Tune on the *_mini sets only.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import questions  # noqa: E402  (bench/questions.py)

from rag import evidence as ev  # noqa: E402
from rag import metrics  # noqa: E402
from rag.config import Settings  # noqa: E402
from rag.pipeline import Chatbot  # noqa: E402
from rag.support import answers_the_question  # noqa: E402


def features(bot: Chatbot, question: str, golds: list[str]) -> list[dict] | None:
    """Per evidence sentence: its features and whether it holds a gold answer; None when
    no sentence does."""
    answerer = bot.answerer
    evidence = answerer.evidence(question, bot.search(question))
    vector = np.asarray(answerer._query_vector(question))
    asked = ev.question_words(question)
    rows = []
    for block in evidence.blocks:
        spans, vectors = answerer.checker.sentence_vectors(block.hit)
        where = {span: m for m, span in enumerate(spans)}
        title = ev.words(block.hit.chunk.title or "")
        for line in block.lines:
            m = where.get((line.start, line.end))
            if m is None:
                continue
            text = block.hit.chunk.text[line.start : line.end]
            held = ev.words(text)
            rows.append(
                {
                    "id": line.id,
                    "cosine": float(np.asarray(vectors[m]) @ vector),
                    "lexical": len(asked & held) / len(asked) if asked else 0.0,
                    "title": len(asked & (held | title)) / len(asked) if asked else 0.0,
                    "kind": float(answers_the_question(question, text)),
                    "rank": block.n - 1,
                    "gold": bool(metrics.contains_gold(text, golds)),
                }
            )
    return rows if any(r["gold"] for r in rows) else None


def first_holds(scored: list[list[dict]], weights: tuple[float, ...]) -> float:
    lexical, title, kind, rank = weights

    def score(r: dict) -> float:
        return (
            r["cosine"]
            + lexical * r["lexical"]
            + title * r["title"]
            + kind * r["kind"]
            - rank * r["rank"]
        )

    return statistics.mean(max(rows, key=score)["gold"] for rows in scored)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    questions.add_arguments(parser)
    args = parser.parse_args()
    rows = questions.answerable(args)
    bot = Chatbot(Settings(store=args.store))
    scored = []
    for n, row in enumerate(rows, 1):
        found = features(
            bot, row["question"], row["answers"] + row.get("answers_question_lang", [])
        )
        if found:
            scored.append(found)
        if n % 20 == 0:
            print(f"{n} questions, {len(scored)} with the gold in their evidence", flush=True)
    grid = {}
    for weights in itertools.product(
        (0.0, 0.1, 0.2, 0.3, 0.5), (0.0, 0.1, 0.2), (0.0, 0.02, 0.05), (0.0, 0.02, 0.05)
    ):
        grid[weights] = round(first_holds(scored, weights), 3)
    best = sorted(grid.items(), key=lambda x: -x[1])
    today = grid[(ev.LEXICAL_WEIGHT, 0.0, 0.0, 0.0)]
    print(f"questions {len(rows)}, with the gold in their evidence {len(scored)}")
    print(f"today (lexical {ev.LEXICAL_WEIGHT}): {today}")
    for weights, value in best[:15]:
        print("lexical, title, kind, rank =", weights, value)
    if args.out:
        report = {
            "questions": args.questions,
            "n": len(rows),
            "with_gold": len(scored),
            "first_holds": {",".join(map(str, w)): v for w, v in grid.items()},
        }
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
