"""Recorded evaluation runs read back: a results.jsonl row's passages as Hits again, for the
bench scripts that replay checks on recorded answers (calibrate_support.py, replay_verify.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rag.types import Chunk, Hit  # noqa: E402


def hit_from_row(row: dict[str, Any], rank: int, title: str | None = None) -> Hit:
    """A retrieved passage of a results.jsonl row as a Hit again (its chunk's text only, offsets
    within that text), for replaying checks on recorded runs. `title` replaces the row's (runs
    from before titles were recorded)."""
    text = row["text"]
    metadata = {"title": row.get("title", "") if title is None else title}
    chunk = Chunk(row["chunk_id"], row["doc_id"], text, 0, len(text), metadata)
    return Hit(chunk, row.get("score", 0.0), rank, row.get("similarity"))
