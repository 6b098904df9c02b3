"""CI's smoke run of bench/perf.py: the benchmark runs end to end on the small models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_perf_bench_smoke(tmp_path: Path, models_dir: Path) -> None:
    out = tmp_path / "perf.json"
    env_cmd = [sys.executable, "bench/perf.py", "--smoke", "--out", str(out)]
    done = subprocess.run(
        env_cmd,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={
            **os.environ,
            "RAGCHAT_DATA_DIR": str(tmp_path / "data"),
            "RAGCHAT_MODELS": str(models_dir),
        },
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    (ingest,) = report["ingest"]
    assert ingest["chunks"] > 0 and 0 < ingest["ratio"] <= 1.5
    assert ingest["reingest_s"] < ingest["ingest_s"]
    (answer,) = report["answer"]
    assert answer["raw"]["first_token_s"] > 0 and answer["ragchat"]["first_token_s"] > 0
    assert "| set | chunks |" in out.with_suffix(".md").read_text()
