"""What refusing quoted answers on the model's doubt would do, from recorded eval runs.

    .venv/bin/python bench/calibrate_doubt.py RUN_DIR [RUN_DIR ...] [--calibrate RUN_DIR ...]

A quoted answer's `not_found_probability` (in each run's results.jsonl) is the model's
probability of having begun its reply with " none" (no sentence states the answer), read from
its first token; refusing when it reaches a threshold (`ModelCalibration.doubt`, used when
Settings.max_doubt is -1) changes nothing else of the answer, so its effect can be read from
the recorded runs exactly, without the model. Since the engine stops a reply refused on
doubt once its ids are named, the answer of a question refused on doubt is known only from
runs made without the refusal (`RAGCHAT_MAX_DOUBT=0 ragchat eval ...`, or runs recorded
before, such as those of `fbdb48c`); elsewhere such a question counts as not holding the gold
and is reported as unknown.
For each threshold: unanswerable questions refused, answerable ones refused, and the answers
kept that hold the gold answer, over the runs given. The threshold chosen is the lowest
hundredth above the doubt of every answer that held the gold answer in the `--calibrate` runs
(the *_mini ones: tune on those only): it refuses none of them.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rag.metrics import contains_gold  # noqa: E402
from rag.refusal import REFUSING  # noqa: E402

THRESHOLDS = (0.05, 0.06, 0.07, 0.08, 0.09, 0.1, 0.12, 0.15)


def rows(run: str) -> list[dict]:  # type: ignore[type-arg]
    """The run's questions, each with `other` (refused by a signal other than doubt) and
    `gold` (its answer, refused on doubt or not, holds the gold: for one refused on doubt,
    the answer line of the model's reply)."""
    found = []
    with Path(run, "results.jsonl").open(encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            r["other"] = any(s in REFUSING and s != "doubt" for s in r["signals"])
            golds = r["answers"] + r.get("answers_question_lang", [])
            r["unknown"] = False
            if "doubt" in r["signals"] and not r["other"]:
                lines = r["raw"].rstrip("\n").split("\n")
                said = lines[-1] if len(lines) > 1 else ""  # the ids alone: not written
                r["unknown"] = not said
                r["gold"] = bool(golds) and bool(contains_gold(said, golds))
            else:
                r["gold"] = bool(r.get("contains"))
            found.append(r)
    return found


def chosen(runs: list[str]) -> float:
    """The lowest hundredth above the doubt of every kept answer that holds the gold."""
    doubts = [
        r.get("not_found_probability") or 0.0
        for run in runs
        for r in rows(run)
        if not r["unanswerable"] and not r["other"] and r["gold"]
    ]
    return math.floor(max(doubts, default=0.0) * 100) / 100 + 0.01


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--calibrate", nargs="*", default=[])
    args = parser.parse_args()
    for run in args.runs:
        found = rows(run)
        answerable = [r for r in found if not r["unanswerable"]]
        unanswerable = [r for r in found if r["unanswerable"]]
        unknown = sum(r["unknown"] for r in answerable)
        print(
            f"{Path(run).name}: {len(answerable)} answerable, {len(unanswerable)} unanswerable"
            + (f" ({unknown} answerable refused on doubt before their answer)" if unknown else "")
        )
        for t in (0.0, *THRESHOLDS):

            def refused(r: dict, t: float = t) -> bool:  # type: ignore[type-arg]
                doubt = r.get("not_found_probability") or 0.0
                return bool(r["other"]) or (t > 0 and doubt >= t)

            kept_gold = sum(r["gold"] and not refused(r) for r in answerable)
            print(
                f"  {'off' if t == 0 else t:>5}: unanswerable refused "
                f"{sum(map(refused, unanswerable))}/{len(unanswerable)}, answerable refused "
                f"{sum(map(refused, answerable))}/{len(answerable)}, gold kept {kept_gold}"
            )
    if args.calibrate:
        print(f"threshold (refusing no answer that holds the gold): {chosen(args.calibrate):.2f}")


if __name__ == "__main__":
    main()
