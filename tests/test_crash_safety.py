"""Crash safety: `ragchat ingest` killed with SIGKILL at random points, 20 times.

Each round rewrites a third of the documents (so every round replaces documents as well as
adding them), starts the real CLI on the same store, waits until it is ingesting, kills it after
a random delay, then opens the store the way ragchat does (which repairs an interrupted write)
and checks that every document is whole: its chunks are exactly those of one version of it
that was on disk, and the keyword index holds the same chunks as Chroma. At the end the same
command runs to completion and the store holds every document's newest version, once.
"""

from __future__ import annotations

import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rag import Settings
from rag.chunking import chunk_document
from rag.factory import build_keyword_index, build_lock, keyword_index_path
from rag.loaders import load_file

pytestmark = pytest.mark.slow

ROUNDS = 20
DOCS = 240
WORDS = (
    "river mountain archive ledger harbour signal council treaty lantern orchard meridian "
    "copper falcon glacier quarry beacon delta summit vessel canyon atlas ember prairie "
    "tundra citadel estuary garnet horizon island jasmine kestrel lagoon marble nectar"
).split()
EMBEDDER = ("all-MiniLM-L6-v2", 384)
PROGRESS = re.compile(r"reading\s*:\s+\d+%.*?\|\s*(\d+)/(\d+)")


def _write_corpus(
    folder: Path, version: dict[str, int], rng: random.Random, ids: list[str]
) -> None:
    for doc in ids:
        version[doc] = version.get(doc, -1) + 1
        words = [rng.choice(WORDS) for _ in range(rng.randint(250, 450))]
        sentences = [
            " ".join(words[i : i + 12]).capitalize() + "." for i in range(0, len(words), 12)
        ]
        (folder / f"{doc}.txt").write_text(
            f"Document {doc}, version {version[doc]}. " + " ".join(sentences), encoding="utf-8"
        )


def _env(tmp_path: Path, store: Path) -> dict[str, str]:
    return {
        **os.environ,
        "RAGCHAT_DATA_DIR": str(tmp_path / "data"),
        "RAGCHAT_STORE": str(store),
        "RAGCHAT_EMBEDDER": EMBEDDER[0],
        "HF_HUB_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
    }


def _ingest_cmd(corpus: Path) -> list[str]:
    return [sys.executable, "-m", "rag.cli", "ingest", str(corpus)]


def _writing(journal: Path) -> bool:
    """Whether an ingest is between journaling documents and finishing their writes."""
    try:
        db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=0.1)
        try:
            return bool(db.execute("SELECT 1 FROM pending LIMIT 1").fetchall())
        finally:
            db.close()
    except sqlite3.Error:  # not created yet, or busy for a moment
        return False


def _kill_while_ingesting(
    cmd: list[str], env: dict[str, str], delay: float, journal: Path | None = None
) -> bool:
    """Start the CLI, wait for its first progress update (and, given the keyword index's
    `journal`, until it is writing documents), SIGKILL it `delay` s later.
    Returns False when it finished before the kill."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    os.set_blocking(proc.stderr.fileno(), False)
    seen, deadline = b"", time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        seen += proc.stderr.read() or b""
        if any(int(m.group(1)) >= 1 for m in PROGRESS.finditer(seen.decode(errors="replace"))):
            break
        time.sleep(0.02)
    else:
        if proc.poll() is None:
            proc.kill()
            pytest.fail(f"ingest never started: {seen.decode(errors='replace')[-2000:]}")
    while journal is not None and proc.poll() is None and not _writing(journal):
        time.sleep(0.005)
    time.sleep(delay)
    finished = proc.poll() is not None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return not finished


def _open(settings: Settings):  # type: ignore[no-untyped-def]
    """The store and keyword index as a new ragchat process opens them (repair included)."""
    from chromadb.api.client import SharedSystemClient

    from vectorstore.chroma import ChromaStore

    SharedSystemClient.clear_system_cache()  # a fresh client, reading what is on disk
    store = ChromaStore(settings.store_path, *EMBEDDER, settings.collection)
    keyword = build_keyword_index(settings, store, build_lock(settings, store))
    return store, keyword


def _check_whole(settings: Settings, corpus: Path, versions: dict[str, list[str]]) -> int:
    """Every stored document is exactly one version that was on disk; keyword index == store.
    Returns the number of chunks stored."""
    store, keyword = _open(settings)
    stored = store.documents()
    for entry in stored:
        doc_id = str(entry["doc_id"])
        texts = [c.text for c in store.get_chunks(doc_id)]
        assert texts in versions[doc_id], f"{doc_id} is not whole: {len(texts)} chunks"
    chroma_ids = set(store._col.get(include=[])["ids"])
    keyword_ids = {r[0] for r in keyword._db.execute("SELECT id FROM chunks")}
    assert chroma_ids == keyword_ids
    assert not list(keyword._db.execute("SELECT doc_id FROM pending"))
    keyword.close()
    return len(chroma_ids)


def _chunk_texts(path: Path, settings: Settings) -> list[str]:
    (doc,) = load_file(path)
    return [c.text for c in chunk_document(doc, settings.chunk_size, settings.chunk_overlap)]


def test_sigkill_during_ingest_and_replacement_loses_nothing(tmp_path: Path) -> None:
    rng = random.Random(7)
    corpus, store_dir = tmp_path / "corpus", tmp_path / "store"
    corpus.mkdir()
    ids = [f"doc{i:03d}" for i in range(DOCS)]
    version: dict[str, int] = {}
    _write_corpus(corpus, version, rng, ids)
    settings = Settings(data_dir=str(tmp_path / "data"), store=str(store_dir))
    env, cmd = _env(tmp_path, store_dir), _ingest_cmd(corpus)
    doc_ids = {d: str((corpus / f"{d}.txt").resolve()) for d in ids}
    versions = {doc_ids[d]: [_chunk_texts(corpus / f"{d}.txt", settings)] for d in ids}

    killed_mid_write = killed = 0
    for round_ in range(ROUNDS):
        if killed:  # from the second round on, a third of the documents change
            changed = rng.sample(ids, DOCS // 3)
            _write_corpus(corpus, version, rng, changed)
            for d in changed:
                versions[doc_ids[d]].append(_chunk_texts(corpus / f"{d}.txt", settings))
        # even rounds: killed at a random moment; odd rounds: while it writes documents
        if round_ % 2 == 0:
            was_killed = _kill_while_ingesting(cmd, env, rng.uniform(0.0, 4.0))
        else:
            journal = keyword_index_path(settings)
            was_killed = _kill_while_ingesting(cmd, env, rng.uniform(0.0, 0.3), journal)
        killed += was_killed
        db = sqlite3.connect(keyword_index_path(settings))
        killed_mid_write += bool(list(db.execute("SELECT doc_id FROM pending")))
        db.close()
        _check_whole(settings, corpus, versions)

    assert killed >= ROUNDS - 2, f"only {killed} of {ROUNDS} runs were killed before finishing"
    assert killed_mid_write >= ROUNDS // 4, f"only {killed_mid_write} kills interrupted a write"

    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    n_chunks = _check_whole(settings, corpus, versions)
    store, keyword = _open(settings)
    for d in ids:  # the newest version of every document, once
        got = [c.text for c in store.get_chunks(doc_ids[d])]
        assert got == versions[doc_ids[d]][-1]
    assert n_chunks == sum(len(v[-1]) for v in versions.values())
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert f"0 documents added or updated (0 chunks), {DOCS} unchanged" in again.stdout
    print(f"{killed} kills, {killed_mid_write} during a write; {n_chunks} chunks at the end")
