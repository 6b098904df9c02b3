"""Would the answers refused as unsupported be right if another close sentence held them?

    .venv/bin/python bench/replay_unsupported.py RUN_DIR STORE [--next 3] [--out FILE.json]

RUN_DIR is a `ragchat eval --out` directory made with quote_choice "closest" (the default
over selected sentences); STORE the store it was run on. For each answer refused with the
single signal "unsupported" (the sentence the engine chose does not hold its names or
numbers), the evidence is rebuilt as the run built it and the next `--next` sentences
closest to the question are checked, one by one, for holding the answer (rag/support.py
`quotes_support`, as the engine checks a quote). Reports how many would then be kept, and
how many of those hold a gold answer: what citing the next close sentence (or asking again
from it) could gain. With `--anywhere`, the answer is looked for in every shown sentence as
the extract form looks for it (rag/answering.py `Answerer._located`) instead: what citing the
sentence the answer was read from, wherever it is, would gain. No answer is generated.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rag import metrics, prompts  # noqa: E402
from rag.config import Settings  # noqa: E402
from rag.pipeline import Chatbot  # noqa: E402
from rag.support import quotes_support  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run")
    parser.add_argument("store")
    parser.add_argument("--next", type=int, default=3)
    parser.add_argument("--anywhere", action="store_true")
    parser.add_argument("--out")
    args = parser.parse_args()
    bot = Chatbot(Settings.from_env(store=args.store))
    answerer = bot.answerer
    rows = [json.loads(line) for line in Path(args.run, "results.jsonl").open()]
    replayed = []
    for row in rows:
        if row["signals"] != ["unsupported"]:
            continue
        question = row["question"]
        answer = row["raw"].rstrip("\n").split("\n")[-1].strip()  # the reply's answer line
        evidence = answerer.evidence(question, bot.search(question))
        answer = prompts.drop_ids(answer, evidence.ids)  # as the engine reads it
        ranked = answerer._closest(question, evidence, k=len(evidence.ids))
        shown = [(b, ln) for b in evidence.blocks for ln in b.lines]
        index = {ln.id: i for i, (_, ln) in enumerate(shown)}
        found = answerer.checker.quote_support(question, answer, [(b.hit, ln) for b, ln in shown])
        numbers, names = answerer.checker.claim_parts(question, answer)
        if args.anywhere:
            lines, _ = answerer._located(question, answer, evidence)
            held_at = ranked.index(lines[0][1].id) if lines else None
        else:
            held_at = next(
                (
                    rank
                    for rank, i in enumerate(ranked[1 : 1 + args.next], 1)
                    if quotes_support([found[index[i]]], numbers, names, answerer.embedding.quote)
                ),
                None,
            )
        golds = row["answers"] + row.get("answers_question_lang", [])
        replayed.append(
            {
                "question": question,
                "answer": answer,
                "unanswerable": row["unanswerable"],
                "held_at_rank": held_at,
                "contains": metrics.contains_gold(answer, golds) if golds else None,
            }
        )
    kept = [r for r in replayed if r["held_at_rank"] is not None]
    summary = {
        "run": args.run,
        "mode": "anywhere" if args.anywhere else f"next {args.next}",
        "unsupported": len(replayed),
        "held_by_a_next_sentence": len(kept),
        "of_those_contain_gold": sum(bool(r["contains"]) for r in kept),
        "of_those_unanswerable": sum(r["unanswerable"] for r in kept),
        "contain_gold_at_all": sum(bool(r["contains"]) for r in replayed),
    }
    print(json.dumps(summary, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps({"summary": summary, "rows": replayed}, indent=1))


if __name__ == "__main__":
    main()
