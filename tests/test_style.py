"""The code passes its own linters: ruff (lint and format, settings in pyproject.toml) and mypy
over the product's packages. Run here so that `pytest` alone says whether a change is ready."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    exe = BIN / tool if (BIN / tool).exists() else shutil.which(tool)
    if exe is None:
        pytest.skip(f"{tool} is not installed: bash scripts/install.sh --dev installs it")
    return subprocess.run([str(exe), *args], cwd=ROOT, capture_output=True, text=True)


def test_ruff_finds_nothing() -> None:
    lint = run("ruff", "check", ".", "--output-format", "concise")
    assert lint.returncode == 0, lint.stdout + lint.stderr
    form = run("ruff", "format", "--check", ".")
    assert form.returncode == 0, form.stdout + form.stderr


def test_mypy_finds_nothing() -> None:
    found = run("mypy", "rag", "models", "vectorstore", "ui")
    assert found.returncode == 0, found.stdout + found.stderr
