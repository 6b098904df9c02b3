"""Replay ragchat's two model-based refusal signals on recorded eval answers.

    .venv/bin/python bench/replay_verify.py verify docs/eval-runs/answers-*
    .venv/bin/python bench/replay_verify.py doubt docs/eval-runs/answers-*

verify: for every answer a run did not refuse, the default model is asked whether the passages
the answer cites state it as the answer to the question (rag/verify.py, the code path of
`verify_answers`), and its probability of "yes" recorded (~5 s per answer on 2 cores).

doubt: for every question, the answer prompt is rebuilt as the pipeline builds it (the top_k
recorded passages packed by tokens, the question's language) and the model's probability that
its reply begins with NOT_FOUND is read from its first token (LlamaCppGenerator.
first_token_probability, the code path of `max_doubt`; ~20 s per question: the prompt is
evaluated again).

Both append to bench/results/replay_<mode>.jsonl and resume from it, then print what refusing
at each threshold would do: unanswerable questions refused, answerable ones refused (all, and
those whose answer contained the gold answer), citation precision of the answers kept. For
doubt, also the threshold chosen by a rule that looks at answerable questions only: the value
that at most 5 % of them, among those not refused already, reach (a budget of wrongly refused
answers), over the runs named with --calibrate.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from recorded import hit_from_row  # noqa: E402

from rag import factory, prompts, verify  # noqa: E402
from rag.config import Settings  # noqa: E402
from rag.language import detect_language  # noqa: E402
from rag.types import Hit  # noqa: E402

BUDGET = 0.05  # share of answerable questions the doubt threshold may refuse


def cited_hits(row: dict) -> list[Hit]:
    ids = {c["chunk_id"] for c in row["citations"]}
    cited = (r for r in row["retrieved"] if r["chunk_id"] in ids)
    return [hit_from_row(r, n) for n, r in enumerate(cited, 1)]


def answer_text(row: dict) -> str:
    return " ".join(s["text"] for s in row["sentences"] if s["supported"]) or row["answer"]


def p_verified(gen, settings: Settings, row: dict) -> float | None:  # type: ignore[no-untyped-def]
    if row["refused"]:
        return None
    return verify.support_probability(gen, row["question"], answer_text(row), cited_hits(row))


def p_doubt(gen, settings: Settings, row: dict) -> float | None:  # type: ignore[no-untyped-def]
    hits = [hit_from_row(r, n) for n, r in enumerate(row["retrieved"][: settings.top_k], 1)]
    language = detect_language(row["question"])
    budget = settings.context_window - settings.max_tokens
    packed, _ = prompts.pack(row["question"], hits, language, gen.count_tokens, budget)
    for _ in gen.stream(prompts.build_messages(row["question"], packed, language), max_tokens=1):
        pass
    return gen.first_token_probability(prompts.NOT_FOUND)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=("verify", "doubt"))
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--calibrate", nargs="*", default=["answers-hammouchi", "answers-piaf_fr-50"])
    args = ap.parse_args()
    out_path = args.out or Path(f"bench/results/replay_{args.mode}.jsonl")
    measure = p_verified if args.mode == "verify" else p_doubt
    settings = Settings()
    gen = factory.build_generator(settings)
    done = {}
    if out_path.exists():
        for line in out_path.read_text().splitlines():
            r = json.loads(line)
            done[(r["run"], r["id"])] = r
    with out_path.open("a") as out:
        for run in args.runs:
            for line in (run / "results.jsonl").read_text().splitlines():
                row = json.loads(line)
                if (run.name, row["id"]) in done or (args.mode == "verify" and row["refused"]):
                    continue
                t0 = time.perf_counter()
                p = measure(gen, settings, row)
                rec = {
                    "run": run.name,
                    "id": row["id"],
                    "unanswerable": row["unanswerable"],
                    "refused": row["refused"],
                    "contains": row.get("contains"),
                    "citation_precision": row.get("citation_precision"),
                    "p": None if p is None else round(p, 6),
                    "s": round(time.perf_counter() - t0, 2),
                    "question": row["question"],
                    "answer": row["answer"],
                }
                done[(run.name, row["id"])] = rec
                out.write(json.dumps(rec, ensure_ascii=False) + "\n")
                out.flush()
                print(run.name, rec["p"], rec["s"], row["question"][:60], flush=True)
    runs = {r.name for r in args.runs}
    rows = [r for r in done.values() if r["run"] in runs]
    if args.mode == "verify":
        summarize(rows, [0.1 * i for i in range(9)], lambda r, t: r["p"] < t)  # 0: none
    else:
        answerable = [r for r in rows if r["run"] in args.calibrate and not r["unanswerable"]]
        # the answers not refused already, likeliest to be refused first
        doubts = sorted((r["p"] for r in answerable if not r["refused"]), reverse=True)
        allowed = int(BUDGET * len(answerable))  # this many more may reach the threshold
        chosen = (doubts[allowed] + doubts[allowed - 1]) / 2 if allowed else 1.0
        print(f"calibrated on {len(answerable)} answerable questions: threshold {chosen:.4f}")
        summarize(rows, [1.01, 0.005, 0.01, 0.02, chosen, 0.05, 0.1], lambda r, t: r["p"] >= t)


def summarize(rows: list[dict], thresholds: list[float], refuses) -> None:  # type: ignore[no-untyped-def]
    """What refusing by `refuses(row, t)` would add to each run's own refusals."""
    for t in thresholds:
        un = [r for r in rows if r["unanswerable"]]
        an = [r for r in rows if not r["unanswerable"]]
        good = [r for r in an if r["contains"] and not r["refused"]]
        kept = [
            r
            for r in an
            if not r["refused"] and not refuses(r, t) and r["citation_precision"] is not None
        ]
        prec = sum(r["citation_precision"] for r in kept) / max(1, len(kept))
        un_refused = sum(r["refused"] or refuses(r, t) for r in un)
        an_refused = sum(r["refused"] or refuses(r, t) for r in an)
        print(
            f"t={t:.4f} unanswerable refused {un_refused}/{len(un)}  "
            f"answerable refused {an_refused}/{len(an)}  "
            f"correct answers lost {sum(refuses(r, t) for r in good)}/{len(good)}  "
            f"citation precision of kept {prec:.3f} ({len(kept)})"
        )


if __name__ == "__main__":
    main()
