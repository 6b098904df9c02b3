"""The bad-input corpus (scripts/make_corpus_bad.py) ingested in one batch: each bad file ends in
one line naming it and the reason, and every good file of the batch is in the store."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from models.embedders import SentenceTransformerEmbedder
from rag import Chatbot, Settings
from rag.loaders import display_path, load_file
from scripts.make_corpus_bad import CASES, INGESTED, Case, build
from tests.conftest import ScriptedGenerator

BAD = [c for c in CASES if c.expect != INGESTED]
GOOD = [c for c in CASES if c.expect == INGESTED]


def shown(name: str) -> str:
    return display_path(name)


def batch(root: Path) -> list[Path]:
    """The folder, plus the paths a folder walk leaves out (a missing file, an unknown type)."""
    return [root, *(root / c.name for c in CASES if c.passed)]


def reading_is_checked() -> bool:
    """Whether file permissions bind this process (root reads a mode-000 file all the same)."""
    return os.geteuid() != 0


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corpus_bad")
    build(root)
    return root


def expected_outcome(case: Case) -> str:
    if case.name == "locked.txt" and not reading_is_checked():
        return INGESTED  # root; the CLI test below drops the privilege and sees the refusal
    return case.expect


def test_one_batch_skips_each_bad_file_with_its_reason_and_keeps_the_good_ones(
    corpus: Path, tmp_path: Path, minilm: SentenceTransformerEmbedder
) -> None:
    settings = Settings(store=str(tmp_path / "store"), data_dir=str(tmp_path / "data"))
    bot = Chatbot(settings, embedder=minilm, generator=ScriptedGenerator())
    report = bot.ingest(batch(corpus))

    stored = {Path(d["doc_id"]).name for d in bot.documents()} | {
        str(d["doc_id"]).rpartition("#")[2]
        for d in bot.documents()  # .jsonl records' own ids
    }
    skipped = {Path(s.path).name: s.reason for s in report.skipped}
    for case in CASES:
        name = shown(case.name)
        if expected_outcome(case) == INGESTED:
            assert name in stored and name not in skipped, case
        elif case.name == "docs.jsonl":  # the good lines are kept, the bad one reported
            assert {"r1", "r3"} <= stored and "r2" not in stored
            assert case.expect in skipped["docs.jsonl:2"]
        else:
            assert name not in stored, case
            assert case.expect in skipped[name], (case, skipped.get(name))
    assert len(report.skipped) == sum(expected_outcome(c) != INGESTED for c in CASES)
    assert all("\n" not in s.reason for s in report.skipped)


def test_other_encodings_are_decoded_not_skipped(corpus: Path) -> None:
    german = "Über Rabat: Straßen, Gärten, Türme."
    assert load_file(corpus / "utf16.txt")[0].text == german
    assert load_file(corpus / "utf16-nobom.txt")[0].text == german
    assert load_file(corpus / "latin1.txt")[0].text == "Déjà vu à Salé : garçon, façade, élève."
    assert load_file(corpus / "caf\udce9.txt")[0].title == "caf\ufffd"


def test_zip_bomb_is_refused_with_bounded_memory(corpus: Path) -> None:
    code = (
        "import resource, sys\n"
        "from rag.loaders import load_file\n"
        "from rag.errors import UnsupportedDocument\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n"
        "    load_file(sys.argv[1])\n"
        "except UnsupportedDocument as e:\n"
        "    print(e)\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(corpus / "bomb.docx")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    message, grown_mib = out.stdout.strip().splitlines()
    assert "bomb.docx: refused as a zip bomb" in message
    assert int(grown_mib) < 50  # the member expands to 300 MiB


def drop_read_privilege() -> list[str]:
    """A command prefix under which root obeys file permissions, as any user does."""
    if reading_is_checked():
        return []
    setpriv = shutil.which("setpriv")
    if not setpriv:
        pytest.skip("running as root without util-linux's setpriv: cannot test mode 000 files")
    caps = "-dac_override,-dac_read_search"
    return [setpriv, f"--bounding-set={caps}", f"--inh-caps={caps}", "--"]


def test_cli_prints_one_line_per_bad_input_and_ingests_the_rest(
    corpus: Path, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "RAGCHAT_DATA_DIR": str(tmp_path / "data"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    exe = str(Path(sys.executable).parent / "ragchat")
    out = subprocess.run(
        [
            *drop_read_privilege(),
            exe,
            "ingest",
            *map(str, batch(corpus)),
            "--store",
            str(tmp_path / "store"),
            "--embedder",
            "all-MiniLM-L6-v2",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    lines = [ln for ln in out.stderr.splitlines() if ln.startswith("skipped ")]
    for case in BAD:
        name = shown(case.name) + (":2" if case.name == "docs.jsonl" else "")
        mine = [ln for ln in lines if ln.startswith(f"skipped {corpus / name}: ")]
        assert len(mine) == 1 and case.expect in mine[0], (case, lines)
    assert len(lines) == len(BAD), lines
    documents = len(GOOD) + 2  # docs.jsonl gives two documents
    assert f"{documents} documents added or updated" in out.stdout, out.stdout
