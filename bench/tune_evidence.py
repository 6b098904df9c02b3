"""How often the evidence the model reads holds the gold answer, by selection and budget.

    .venv/bin/python bench/tune_evidence.py QUESTIONS.jsonl STORE [--sample 50] [--seed 0]
        [--budgets 200,300,400,600] [--lexical 0.1] [--rank 0.05] [--titled] [--out FILE.json]

No answer model runs: each question is retrieved once (the default hybrid search, `top_k`),
then its evidence is built as `Answerer.evidence` builds it (rag/evidence.py `select`) for
every budget x lexical weight x rank penalty given (comma-separated lists), and whole passages
for comparison. Per setting it reports the share of questions whose evidence holds a gold
answer (`rag.metrics.contains_gold` on the evidence text, either language's gold), beside the
share whose retrieved passages do (the ceiling), the share whose quoted sentence holds one
(the evidence sentence `rag.evidence.closest` ranks first, which `quote_choice` auto quotes),
and the median evidence tokens (the answer model's tokenizer; its weights are not used).
`--titled` measures every setting again with each sentence embedded after its passage's title
("Title. Sentence") for choosing the evidence and the quote (the engine embeds the sentence
alone; the 240 piaf_fr_mini questions took 10 min on 2 cores with it). Tune on the *_mini sets
only.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import questions  # noqa: E402  (bench/questions.py)

from rag import evidence as ev  # noqa: E402
from rag import metrics  # noqa: E402
from rag.chunking import split_sentences  # noqa: E402
from rag.config import Settings  # noqa: E402
from rag.pipeline import Chatbot  # noqa: E402
from rag.types import Hit  # noqa: E402


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",")]


def titled(embedder: Any) -> Callable[[Hit], tuple[list[tuple[int, int]], np.ndarray]]:
    """`SupportChecker.sentence_vectors` with each sentence embedded after its passage's
    title, cached by chunk."""
    cache: dict[str, tuple[list[tuple[int, int]], np.ndarray]] = {}

    def vectors(hit: Hit) -> tuple[list[tuple[int, int]], np.ndarray]:
        if hit.chunk.id not in cache:
            text, title = hit.chunk.text, " ".join((hit.chunk.title or "").split())
            spans = split_sentences(text) or [(0, len(text))]
            texts = [f"{title}. {text[a:b]}" if title else text[a:b] for a, b in spans]
            cache[hit.chunk.id] = (spans, np.asarray(embedder.embed_documents(texts)))
        return cache[hit.chunk.id]

    return vectors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    questions.add_arguments(parser)
    parser.add_argument("--budgets", default="200,300,400,600")
    parser.add_argument("--lexical", default=str(ev.LEXICAL_WEIGHT))
    parser.add_argument("--rank", default=str(ev.RANK_PENALTY))
    parser.add_argument("--titled", action="store_true")
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

    def measure(name: str, evidences: list[ev.Evidence], vectors: Callable | None = None) -> None:
        texts = [e.text() for e in evidences]
        results[name] = {
            "evidence_holds_gold": round(
                statistics.mean(metrics.contains_gold(t, a[0]) for t, a in zip(texts, asked)), 3
            ),
            "tokens_p50": statistics.median(count(t) for t in texts),
        }
        if vectors is not None:
            quoted = []
            for e, (golds, _, vector, words) in zip(evidences, asked):
                first = ev.closest(e, vector, words, vectors, k=1)
                found = e.line(first[0]) if first else None
                text = found[0].hit.chunk.text[found[1].start : found[1].end] if found else ""
                quoted.append(bool(text) and bool(metrics.contains_gold(text, golds)))
            results[name]["quoted_holds_gold"] = round(statistics.mean(quoted), 3)
        print(name, results[name], flush=True)

    measure("passages", [ev.whole(a[1]) for a in asked])
    grid = itertools.product(
        [int(b) for b in args.budgets.split(",")], floats(args.lexical), floats(args.rank)
    )
    choices: list[tuple[str, Callable[[Hit], Any]]] = [("", answerer.checker.sentence_vectors)]
    if args.titled:
        choices.append((" titled", titled(bot.embedder)))
    for (budget, lexical, rank), (label, vectors) in itertools.product(grid, choices):
        measure(
            f"sentences budget={budget} lexical={lexical} rank={rank}{label}",
            [
                ev.select(
                    vector,
                    words,
                    hits,
                    vectors,
                    count,
                    budget,
                    lexical_weight=lexical,
                    rank_penalty=rank,
                )  # fmt: skip
                for _, hits, vector, words in asked
            ],
            vectors,
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
