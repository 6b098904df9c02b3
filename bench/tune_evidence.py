"""How often the evidence the model reads holds the gold answer, by selection and budget.

    .venv/bin/python bench/tune_evidence.py QUESTIONS.jsonl STORE [--sample 50] [--seed 0]
        [--budgets 200,300,400,600] [--lexical 0.1] [--rank 0.05] [--out FILE.json]

No answer model runs: each question is retrieved once (the default hybrid search, `top_k`),
then its evidence is built as `Answerer.evidence` builds it (rag/evidence.py `select`) for
every budget x lexical weight x rank penalty given (comma-separated lists), and whole passages
for comparison. Per setting it reports the share of questions whose evidence holds a gold
answer (`rag.metrics.contains_gold` on the evidence text, either language's gold), beside the
share whose retrieved passages do (the ceiling), and the median evidence tokens (the answer
model's tokenizer; its weights are not used). Tune on the *_mini sets only.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import questions  # noqa: E402  (bench/questions.py)

from rag import evidence as ev  # noqa: E402
from rag import metrics  # noqa: E402
from rag.config import Settings  # noqa: E402
from rag.pipeline import Chatbot  # noqa: E402


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    questions.add_arguments(parser)
    parser.add_argument("--budgets", default="200,300,400,600")
    parser.add_argument("--lexical", default=str(ev.LEXICAL_WEIGHT))
    parser.add_argument("--rank", default=str(ev.RANK_PENALTY))
    args = parser.parse_args()
    rows = questions.answerable(args)
    bot = Chatbot(Settings(store=args.store))
    answerer, count = bot.answerer, bot.generator.count_tokens
    asked = []  # (golds, hits, question vector, question words)
    for row in rows:
        hits = bot.search(row["question"])
        golds = row["answers"] + row.get("answers_question_lang", [])
        asked.append(
            (
                golds,
                hits,
                bot.embedder.embed_query(row["question"]),
                ev.question_words(row["question"]),
            )
        )
    ceiling = [metrics.contains_gold("\n".join(h.chunk.text for h in a[1]), a[0]) for a in asked]
    results = {}

    def measure(name: str, evidences: list[ev.Evidence]) -> None:
        texts = [e.text() for e in evidences]
        results[name] = {
            "evidence_holds_gold": round(
                statistics.mean(metrics.contains_gold(t, a[0]) for t, a in zip(texts, asked)), 3
            ),
            "tokens_p50": statistics.median(count(t) for t in texts),
        }
        print(name, results[name], flush=True)

    measure("passages", [ev.whole(a[1]) for a in asked])
    grid = itertools.product(
        [int(b) for b in args.budgets.split(",")], floats(args.lexical), floats(args.rank)
    )
    for budget, lexical, rank in grid:
        measure(
            f"sentences budget={budget} lexical={lexical} rank={rank}",
            [
                ev.select(
                    vector,
                    words,
                    hits,
                    answerer.checker.sentence_vectors,
                    count,
                    budget,
                    lexical_weight=lexical,
                    rank_penalty=rank,
                )  # fmt: skip
                for _, hits, vector, words in asked
            ],
        )
    report = {
        "questions": args.questions,
        "n": len(rows),
        "retrieved_holds_gold": round(statistics.mean(ceiling), 3),
        "settings": results,
    }
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
