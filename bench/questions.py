"""The answerable questions a bench script reads: a questions.jsonl file, optionally sampled."""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Any


def add_arguments(parser: argparse.ArgumentParser, sample: int = 0, seed: int = 0) -> None:
    """QUESTIONS and STORE, then --sample, --seed and --out."""
    parser.add_argument("questions")
    parser.add_argument("store")
    parser.add_argument("--sample", type=int, default=sample)
    parser.add_argument("--seed", type=int, default=seed)
    parser.add_argument("--out")


def answerable(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The questions of `args.questions` that have gold answers, `args.sample` of them drawn
    with `args.seed` when given."""
    text = Path(args.questions).read_text()
    rows = [json.loads(line) for line in text.splitlines() if line]
    rows = [r for r in rows if r.get("answers")]
    if args.sample:
        rows = random.Random(args.seed).sample(rows, min(args.sample, len(rows)))
    return rows
