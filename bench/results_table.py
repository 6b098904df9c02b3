"""Print Markdown tables of evaluation runs (summary.json files) for docs/results.md.

.venv/bin/python bench/results_table.py docs/eval-runs/*
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rag.evaluate import COSTS, METRICS

RETRIEVAL = tuple(m for m in METRICS if m.startswith(("hit@", "mrr@")))
ANSWERS = tuple(m for m in METRICS if m not in RETRIEVAL)


def cell(metrics: dict, name: str) -> str:
    m = metrics.get(name)
    if not m:
        return "–"
    return f"{m['mean']:.3f} [{m['low']:.3f}, {m['high']:.3f}] (n={m['n']})"


def main(paths: list[str]) -> None:
    runs = [(Path(p).name, json.loads((Path(p) / "summary.json").read_text())) for p in paths]
    for title, names in (("Retrieval", RETRIEVAL), ("Answers", ANSWERS)):
        shown = [(n, s) for n, s in runs if any(k in s["metrics"] for k in names)]
        if not shown:
            continue
        print(f"\n#### {title}\n\n| run | " + " | ".join(names) + " |")
        print("|---" * (len(names) + 1) + "|")
        for name, s in shown:
            print(f"| {name} | " + " | ".join(cell(s["metrics"], k) for k in names) + " |")
    print("\n#### Costs (p50 / p95)\n\n| run | " + " | ".join(COSTS) + " |")
    print("|---" * (len(COSTS) + 1) + "|")
    for name, s in runs:
        costs = s["costs"]
        print(
            f"| {name} | "
            + " | ".join(
                f"{costs[k]['p50']:.2f} / {costs[k]['p95']:.2f}" if k in costs else "–"
                for k in COSTS
            )
            + " |"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
