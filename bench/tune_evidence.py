"""How often the evidence the model reads holds the gold answer, by selection and budget.

    .venv/bin/python bench/tune_evidence.py QUESTIONS.jsonl STORE [--sample 50] [--seed 0]
        [--budgets 200,300,400,600] [--out FILE.json]

No answer model runs: each question is retrieved once (the default hybrid search, `top_k`),
then its evidence is built as `Answerer.evidence` builds it (rag/evidence.py `select`) at each
budget, and whole passages for comparison. Per setting it prints the share of questions whose
evidence holds a gold answer (`rag.metrics.contains_gold` on the evidence text), the share whose
retrieved passages do (the ceiling), and the median evidence tokens. The answer model's
tokenizer counts tokens (vocabulary only, no weights read). Tune on the *_mini sets only.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rag import evidence as ev  # noqa: E402
from rag import metrics  # noqa: E402
from rag.config import Settings  # noqa: E402
from rag.pipeline import Chatbot  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("questions")
    parser.add_argument("store")
    parser.add_argument("--sample", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budgets", default="200,300,400,600")
    parser.add_argument("--out")
    args = parser.parse_args()
    rows = [json.loads(line) for line in Path(args.questions).read_text().splitlines() if line]
    rows = [r for r in rows if r.get("answers")]
    if args.sample:
        rows = random.Random(args.seed).sample(rows, min(args.sample, len(rows)))
    bot = Chatbot(Settings(store=args.store))
    answerer = bot.answerer
    budgets = [int(b) for b in args.budgets.split(",")]
    settings: dict[str, dict[str, list[float]]] = {}
    ceiling = []
    for row in rows:
        question, golds = row["question"], row["answers"]
        golds = golds + row.get("answers_question_lang", [])
        hits = bot.search(question)
        ceiling.append(metrics.contains_gold("\n".join(h.chunk.text for h in hits), golds))
        forms = {"passages": ev.whole(hits)}
        for budget in budgets:
            answerer.settings = dataclasses.replace(bot.settings, evidence_tokens=budget)
            forms[f"sentences {budget}"] = answerer.evidence(question, hits)
        for name, evidence in forms.items():
            got = settings.setdefault(name, {"holds": [], "tokens": []})
            text = evidence.text()
            got["holds"].append(metrics.contains_gold(text, golds))
            got["tokens"].append(bot.generator.count_tokens(text))
    report = {
        "questions": args.questions,
        "n": len(rows),
        "retrieved_holds_gold": round(statistics.mean(ceiling), 3),
        "settings": {
            name: {
                "evidence_holds_gold": round(statistics.mean(got["holds"]), 3),
                "tokens_p50": statistics.median(got["tokens"]),
            }
            for name, got in settings.items()
        },
    }
    print(json.dumps(report, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
