"""scripts/audit_deps.py, which scripts/install.sh --dev runs on the installed dependencies:
how it combines pip-audit's report with PyPI's per-project data, and when it fails.

Offline: the advisory data is given as pip-audit and PyPI return it. The audit itself runs (online)
in install.sh --dev, so in CI; `pytest -m slow` runs it here too."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from scripts.audit_deps import audit, verdict

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "audit_deps.py"

PACKAGES = {"gradio": "6.31.0", "jinja2": "3.1.2", "numpy": "2.4.6", "torch": "2.13.0+cpu"}
PIP_AUDIT: dict[
    str, dict[str, Any]
] = {  # as pip-audit's JSON has them: per-release data found, or a skip reason
    "jinja2": {"name": "jinja2", "vulns": [{"id": "GHSA-h5c8", "fix_versions": ["3.1.3"]}]},
    "gradio": {"name": "gradio", "skip_reason": "Dependency not found on PyPI"},
    "numpy": {"name": "numpy", "skip_reason": "Dependency not found on PyPI"},
    "torch": {"name": "torch", "skip_reason": "Dependency not found on PyPI"},
}
LATEST: dict[
    str, tuple[str, list[dict[str, Any]]]
] = {  # PyPI's per-project JSON: the latest release and its advisories
    "gradio": ("6.31.0", [{"id": "GHSA-aaaa", "fixed_in": [], "withdrawn": None}]),
    "numpy": ("2.5.5", [{"id": "GHSA-bbbb", "fixed_in": ["2.5.5"]}]),
    "torch": ("2.13.0", [{"id": "PYSEC-1", "fixed_in": ["2.13.1"]}]),
}


def test_fixable_advisories_fail_unfixed_are_listed_and_unknown_versions_are_not_guessed() -> None:
    report = audit(PACKAGES, PIP_AUDIT, lambda name: LATEST.get(name))
    assert sorted(report.audited) == ["gradio", "jinja2", "torch"]
    assert {(a.package, a.id) for a in report.fixable} == {
        ("jinja2", "GHSA-h5c8"),  # pip-audit's per-release data
        ("torch", "PYSEC-1"),  # the latest release is the installed one (+cpu is a local build)
    }
    assert [(a.package, a.id) for a in report.unfixed] == [("gradio", "GHSA-aaaa")]
    # numpy is not at its latest release: the latest's advisories say nothing about 2.4.6
    assert list(report.unaudited) == ["numpy==2.4.6"]
    assert "not the latest release (2.5.5)" in report.unaudited["numpy==2.4.6"]
    assert verdict(report)[0] == 1


def test_passes_without_fixable_advisories_and_strict_wants_everything_audited() -> None:
    clean = {"jinja2": {"name": "jinja2", "vulns": []}}
    report = audit({"jinja2": "3.1.6", "numpy": "2.4.6"}, clean, lambda n: LATEST.get(n))
    assert verdict(report) == (0, "no known vulnerability with a fix")
    assert verdict(report, strict=True)[0] == 1


def test_unreachable_data_is_reported_not_passed() -> None:
    report = audit({"gradio": "6.31.0"}, {}, lambda name: None)
    assert report.audited == [] and report.unaudited == {
        "gradio==6.31.0": "no advisory data reachable"
    }
    assert verdict(report)[0] == 2  # never a pass when nothing was audited


@pytest.mark.slow
def test_the_installed_environment_has_no_fixable_known_vulnerability() -> None:
    """The real audit, as install.sh --dev runs it (needs PyPI)."""
    done = subprocess.run(
        [sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "audit_deps: audited" in done.stdout
