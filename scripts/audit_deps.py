"""Audit the installed dependencies for known vulnerabilities that have a fix.

    .venv/bin/python scripts/audit_deps.py [--strict]

Run by `scripts/install.sh --dev` (so by CI) on the environment it has just installed: every
distribution in it at its exact version, which is what the project's pins resolved to.

1. pip-audit checks each `name==version` against PyPI's advisory data for that release (OSV).
2. Where pip-audit gets no data for a package (on a machine that reaches PyPI's downloads but
   not its per-release JSON, https://pypi.org/pypi/NAME/VERSION/json, nor api.osv.dev), PyPI's
   per-project JSON is asked instead: its `vulnerabilities` are those of the latest release, so
   they are used only for a package installed at its latest release.
3. Exit 1 when any known vulnerability has a fixed version (upgrade, or pin past it). Advisories
   without a fix are listed but do not fail. Packages that neither source could audit are listed;
   with --strict they fail too. Exit 2 when no audit could run at all.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

PYPI_PROJECT = "https://pypi.org/pypi/{name}/json"
SKIP = {"ragchat"}  # this project, installed from the working tree


@dataclass(frozen=True)
class Advisory:
    package: str
    version: str
    id: str
    fix_versions: tuple[str, ...]


@dataclass
class Report:
    audited: list[str] = field(default_factory=list)
    fixable: list[Advisory] = field(default_factory=list)
    unfixed: list[Advisory] = field(default_factory=list)
    unaudited: dict[str, str] = field(default_factory=dict)  # name==version -> why


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed() -> dict[str, str]:
    """Every distribution of this environment: normalised name -> version."""
    found = {normalise(d.metadata["Name"]): d.version for d in metadata.distributions()}
    return {n: v for n, v in sorted(found.items()) if n not in SKIP}


def run_pip_audit(packages: dict[str, str]) -> dict[str, dict[str, Any]]:
    """pip-audit's JSON entry for each package (`vulns`, or `skip_reason` when it had no data)."""
    with tempfile.TemporaryDirectory() as tmp:
        requirements = Path(tmp) / "requirements.txt"
        requirements.write_text("".join(f"{n}=={v}\n" for n, v in packages.items()))
        out = Path(tmp) / "audit.json"
        command = [sys.executable, "-m", "pip_audit", "-r", str(requirements), "--no-deps"]
        command += ["--disable-pip", "-s", "pypi", "-f", "json", "-o", str(out)]
        command += ["--progress-spinner", "off", "--cache-dir", str(Path(tmp) / "cache")]
        done = subprocess.run(command, capture_output=True, text=True, timeout=900)
        if not out.exists():
            tail = " ".join(done.stderr.split()[-40:])
            raise SystemExit(f"audit_deps: pip-audit did not run ({tail}); exit 2") from None
        report = json.loads(out.read_text())
    return {normalise(d["name"]): d for d in report["dependencies"]}


def pypi_latest(name: str) -> tuple[str, list[dict[str, Any]]] | None:
    """(latest release, its advisories) from PyPI's per-project JSON; None if unreachable."""
    try:
        with urllib.request.urlopen(PYPI_PROJECT.format(name=name), timeout=60) as response:
            data = json.load(response)
    except (OSError, ValueError):
        return None
    return str(data["info"]["version"]), list(data.get("vulnerabilities") or [])


def _base(version: str) -> str:
    return version.split("+", 1)[0]  # 2.13.0+cpu is the 2.13.0 release


def audit(
    packages: dict[str, str],
    pip_audit: dict[str, dict[str, Any]],
    latest: Callable[[str], tuple[str, list[dict[str, Any]]] | None],
) -> Report:
    """Combine pip-audit's findings with the per-project fallback into one Report."""
    report = Report()
    missing = [n for n in packages if "vulns" not in pip_audit.get(n, {})]
    with ThreadPoolExecutor(8) as pool:
        fallback = dict(zip(missing, pool.map(latest, missing)))
    for name, version in packages.items():
        entry = pip_audit.get(name, {})
        if "vulns" in entry:
            found = [(str(v["id"]), tuple(v.get("fix_versions") or ())) for v in entry["vulns"]]
        elif (answer := fallback[name]) is None:
            report.unaudited[f"{name}=={version}"] = "no advisory data reachable"
            continue
        elif answer[0] != _base(version):
            why = f"not the latest release ({answer[0]}); per-release data unreachable"
            report.unaudited[f"{name}=={version}"] = why
            continue
        else:
            found = [
                (str(v["id"]), tuple(v.get("fixed_in") or ()))
                for v in answer[1]
                if not v.get("withdrawn")
            ]
        report.audited.append(name)
        for advisory_id, fixes in found:
            advisory = Advisory(name, version, advisory_id, fixes)
            (report.fixable if fixes else report.unfixed).append(advisory)
    return report


def lines(report: Report, total: int) -> Iterable[str]:
    yield f"audited {len(report.audited)} of {total} installed packages"
    for a in report.fixable:
        yield f"VULNERABLE {a.package}=={a.version}: {a.id}, fixed in {', '.join(a.fix_versions)}"
    for a in report.unfixed:
        yield f"known, no fix yet: {a.package}=={a.version}: {a.id}"
    for package, why in report.unaudited.items():
        yield f"NOT AUDITED {package}: {why}"


def verdict(report: Report, strict: bool = False) -> tuple[int, str]:
    """The exit code, and the last line saying why."""
    if not report.audited:
        return 2, "no vulnerability data could be reached: nothing was audited"
    if report.fixable:
        return 1, "upgrade the packages marked VULNERABLE (or pin past the fixed version)"
    if strict and report.unaudited:
        return 1, "--strict: some packages could not be audited"
    return 0, "no known vulnerability with a fix"


def main(argv: list[str]) -> int:
    packages = installed()
    report = audit(packages, run_pip_audit(packages), pypi_latest)
    code, why = verdict(report, strict="--strict" in argv)
    for line in [*lines(report, len(packages)), why]:
        print(f"audit_deps: {line}")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
