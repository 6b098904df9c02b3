"""Calibrate citation checking (rag/support.py) and the refusal threshold on evaluation runs.

    # thresholds of the checker, replayed on the answers of `ragchat eval` runs (*_mini sets)
    python bench/calibrate_support.py checker RUN_DIR [RUN_DIR ...]
    # the question's subject (Rules.subject) at several shares on top of the calibrated
    # thresholds, per run
    python bench/calibrate_support.py strict RUN_DIR [RUN_DIR ...] [--out FILE.json]
    # the relevance threshold: best question-passage similarity of answerable and
    # unanswerable questions (retrieval only), QUESTIONS.jsonl:STORE pairs
    python bench/calibrate_support.py relevance QUESTIONS.jsonl:STORE [...]

`checker` embeds each answer's sentences against its retrieved passages once, then replays the
checking decisions for a grid of Rules and prints, per setting: citation precision (as
`ragchat eval` measures it), answers left with a citation, correct answers lost (refused because
no sentence was found supported) and unanswerable questions refused. Results go to
bench/results/calibrate_support.json.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recorded import hit_from_row  # noqa: E402

from rag import metrics  # noqa: E402
from rag.citations import clean_markers  # noqa: E402
from rag.config import Settings  # noqa: E402
from rag.prompts import NOT_FOUND  # noqa: E402
from rag.refusal import free_text_refusal  # noqa: E402
from rag.support import Rules, SupportChecker, decide, rules_for, split_claims  # noqa: E402

OUT = ROOT / "bench" / "results" / "calibrate_support.json"


def _embedder():  # type: ignore[no-untyped-def]
    from models.embedders import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(
        "multilingual-e5-small", models_dir=Settings.from_env().models_dir
    )


def _titles() -> dict[str, str]:
    """Document titles by id (eval rows keep chunk texts, not titles; the model saw both)."""
    titles = {}
    shared = Path(os.environ.get("RAGCHAT_EVAL_DATA", ROOT.parent / "shared" / "eval"))
    for path in [
        ROOT / "eval" / "hammouchi" / "documents.jsonl",
        *shared.glob("*/documents.jsonl"),
    ]:
        for line in open(path, encoding="utf-8"):
            doc = json.loads(line)
            titles[doc["id"]] = doc.get("title", "")
    return titles


def _cases(chk: SupportChecker, run: str, titles: dict[str, str]) -> list:  # type: ignore[type-arg]
    """A run's questions as (row, claims, hits, scores); claims None: refused before the checks
    (by the relevance threshold or by the model itself)."""
    cases: list = []  # type: ignore[type-arg]
    for line in open(Path(run) / "results.jsonl", encoding="utf-8"):
        row = json.loads(line)
        # runs since issue 5 keep the model's raw text (their answers are already checked);
        # the model's own refusals stay refusals
        text = row.get("raw") or ("" if row["refused"] else row["answer"])
        claims = (
            None if free_text_refusal(text, 5, NOT_FOUND) else split_claims(clean_markers(text, 5))
        )
        if not claims:
            cases.append((row, None, None, None))
            continue
        hits = [
            hit_from_row(h, i, titles.get(h["doc_id"], ""))
            for i, h in enumerate(row["retrieved"][:5], 1)
        ]
        scores = chk.scores([c.text for c in claims], hits, row["question"])
        cases.append((row, claims, hits, scores))
    return cases


def checker(runs: list[str]) -> None:
    chk = SupportChecker(_embedder())
    titles = _titles()
    cases = [case for run in runs for case in _cases(chk, run, titles)]
    answerable = sum(not row["unanswerable"] for row, *_ in cases)
    unanswerable = len(cases) - answerable
    print(f"{len(cases)} questions ({unanswerable} unanswerable) from {len(runs)} runs")
    grid = itertools.product(
        (0.80, 0.81, 0.82, 0.83, 0.84, 0.85, 0.86),  # similar
        (0.76, 0.77, 0.78, 0.79, 0.80, 0.81, 0.82),  # related
        (0.5, 0.67, 1.0),  # names
        (0.0, 0.02, 0.04),  # margin
    )
    table = [
        # the subject rule off: these thresholds were chosen before it (it has its own mode)
        replay(cases, Rules(similar=a, related=b, names=c, margin=d, subject=0.0), answerable)
        for a, b, c, d in grid
        if b <= a
    ]
    table.append({**replay(cases, None, answerable), "rules": "before (no checking)"})
    table.sort(key=lambda r: (-(r["citation_precision"] or 0), r["wrongly_refused"]))
    print("before:", table[-1] if table[-1]["rules"] == "before (no checking)" else "")
    for r in [r for r in table if r["wrongly_refused"] <= 0.1][:20]:
        print(r)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"runs": runs, "table": table}, indent=1), encoding="utf-8")


def replay(cases: list, rules: Rules | None, answerable: int) -> dict:  # type: ignore[type-arg]
    """The eval metrics the runs would have with checking by `rules` (None: none)."""
    from rag.support import answers_the_question

    precision, cited_any, answered, contains, refused_right, refused_wrong = [], 0, 0, 0.0, 0, 0
    for row, claims, hits, scores in cases:
        refused = claims is None
        if not refused and rules is not None:
            decided = decide(scores, [c.cited for c in claims], rules)
            supported = " ".join(c.text for c, d in zip(claims, decided) if d)
            refused = not supported or not answers_the_question(row["question"], supported)
            marks = dict.fromkeys(n for d in decided for n in d)
        elif not refused:
            marks = dict.fromkeys(n for c in claims for n in c.cited if 1 <= n <= len(hits))
        if row["unanswerable"]:
            refused_right += refused
            continue
        if refused:
            refused_wrong += 1
            continue
        answered += 1
        contains += row.get("contains") or 0.0
        cited = [(hits[n - 1].chunk.doc_id, hits[n - 1].chunk.text) for n in marks]
        cited_any += bool(cited)
        p = metrics.citation_precision(cited, row["context_id"], row["answers"])
        if p is not None:
            precision.append(p)
    unanswerable = len(cases) - answerable
    return {
        "rules": None
        if rules is None
        else [rules.similar, rules.related, rules.names, rules.margin],
        "citation_precision": round(float(np.mean(precision)), 3) if precision else None,
        "has_citation": round(cited_any / max(1, answered), 3),
        "contains": round(contains / max(1, answerable), 3),
        "wrongly_refused": round(refused_wrong / max(1, answerable), 3),
        "unanswerable_refused": round(refused_right / max(1, unanswerable), 3),
        "n_answerable": answerable,
        "n_unanswerable": unanswerable,
        "n_unanswerable_refused": refused_right,
    }


def strict(runs: list[str]) -> None:
    """Replay the subject rule (Rules.subject) at several shares on the runs' recorded raw
    answers, with the default e5 thresholds otherwise; print each run's figures per setting
    and write them to bench/results/calibrate_strict.json. (Commit dbe96a3 also swept two
    stricter rules, names needed by similar claims and a sentence window; docs/results.md.)"""
    out = OUT.with_name("calibrate_strict.json")
    if "--out" in runs:
        at = runs.index("--out")
        out, runs = Path(runs[at + 1]), runs[:at] + runs[at + 2 :]
    base = rules_for("multilingual-e5-small")
    chk = SupportChecker(_embedder(), base)
    titles = _titles()
    per_run = {run: _cases(chk, run, titles) for run in runs}
    answerable = {run: sum(not row["unanswerable"] for row, *_ in c) for run, c in per_run.items()}
    table = []
    for subject in (0.0, 0.01, 0.5, 1.0):
        rules = replace(base, subject=subject)
        entry: dict = {"subject": subject, "runs": {}}
        for run, cases in per_run.items():
            entry["runs"][Path(run).name] = replay(cases, rules, answerable[run])
        table.append(entry)
        un = [r for r in entry["runs"].values() if r["n_unanswerable"]]
        refused = sum(r["n_unanswerable_refused"] for r in un)
        total = sum(r["n_unanswerable"] for r in un)
        line = " ".join(
            f"{name.removeprefix('answers-')}:p={r['citation_precision']},c={r['contains']},"
            f"wr={r['wrongly_refused']}"
            for name, r in entry["runs"].items()
            if r["n_answerable"]
        )
        print(f"subject={subject}: unanswerable {refused}/{total} | {line}", flush=True)
    out.write_text(json.dumps({"runs": runs, "table": table}, indent=1), encoding="utf-8")


def relevance(pairs: list[str]) -> None:
    from rag.evaluate import load_questions
    from rag.pipeline import Chatbot

    embedder = _embedder()
    for pair in pairs:
        questions, store = pair.rsplit(":", 1)
        bot = Chatbot(Settings.from_env(store=store), embedder=embedder)
        best = []
        for q in load_questions(questions):
            sims = [h.similarity for h in bot.search(q.question, 5) if h.similarity is not None]
            best.append((max(sims) if sims else 0.0, q.unanswerable))
        answerable = np.array([b for b, u in best if not u])
        unanswerable = np.array([b for b, u in best if u])
        for name, values in (("answerable", answerable), ("unanswerable", unanswerable)):
            if values.size:
                pct = np.percentile(values, [0, 1, 2, 5, 50]).round(4).tolist()
                print(
                    f"{Path(questions).parent.name}/{Path(questions).name} {name} "
                    f"n={values.size} min/p1/p2/p5/p50 = {pct}"
                )


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    {"checker": checker, "strict": strict, "relevance": relevance}[mode](args)
