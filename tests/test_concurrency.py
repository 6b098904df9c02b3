"""Concurrent use: one writer per store across processes, and questions answered during ingest."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from rag import Chatbot, Settings
from rag.errors import StoreBusy
from rag.factory import build_lock

EMBEDDER = "all-MiniLM-L6-v2"
HOLD = """
import sys, time
from rag import Settings
from rag.factory import build_lock
lock = build_lock(Settings(store=sys.argv[1], data_dir=sys.argv[2]))
with lock.hold(0):
    print("held", flush=True)
    time.sleep(120)
"""


def _corpus(folder: Path, n: int, version: int) -> None:
    folder.mkdir(exist_ok=True)
    for i in range(n):
        topic = ["harbour", "glacier", "orchard", "citadel"][i % 4]
        text = " ".join(
            f"Report {i} version {version}: the {topic} survey counted {i * 7 + j} items in "
            f"section {j}, and the team noted it in the {topic} ledger."
            for j in range(12)
        )
        (folder / f"report{i:02d}.txt").write_text(text, encoding="utf-8")


def _cli_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a `ragchat` process on the test's store, with the fast embedder."""
    return {
        **os.environ,
        "RAGCHAT_STORE": settings.store_path,
        "RAGCHAT_DATA_DIR": settings.data_dir,
        "RAGCHAT_EMBEDDER": EMBEDDER,
        **extra,
    }


@pytest.fixture
def holder(settings: Settings) -> object:
    """Another process holding the store's writer lock until it is killed."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, settings.store_path, settings.data_dir],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    yield proc
    proc.kill()
    proc.wait()


def test_second_writer_waits_then_fails_with_a_message(
    settings: Settings, minilm: object, holder: subprocess.Popen[str], tmp_path: Path
) -> None:
    _corpus(tmp_path / "docs", 3, 1)
    bot = Chatbot(settings.replace(lock_timeout=0.5), embedder=minilm)  # type: ignore[arg-type]
    with pytest.raises(StoreBusy, match="Another ragchat process is writing to the store"):
        bot.ingest([tmp_path / "docs"])
    assert bot.store.count() == 0
    holder.send_signal(signal.SIGKILL)  # the OS releases a dead process's lock
    holder.wait()
    report = bot.ingest([tmp_path / "docs"])
    assert report.documents == 3 and bot.store.count() == report.chunks


def test_cli_ingest_refuses_while_another_process_writes(
    settings: Settings, holder: subprocess.Popen[str], tmp_path: Path
) -> None:
    _corpus(tmp_path / "docs", 2, 1)
    env = _cli_env(settings, RAGCHAT_LOCK_TIMEOUT="1")
    cmd = [sys.executable, "-m", "rag.cli", "ingest", str(tmp_path / "docs")]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert "Another ragchat process is writing to the store" in done.stderr
    assert "waiting up to 1 s" in done.stderr


def test_two_cli_ingests_at_once_leave_each_document_once(
    settings: Settings, tmp_path: Path
) -> None:
    _corpus(tmp_path / "docs", 30, 1)
    env = _cli_env(settings)
    cmd = [sys.executable, "-m", "rag.cli", "ingest", str(tmp_path / "docs")]
    procs = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    added = sorted(int(out.split(" documents added")[0].split()[-1]) for out, _ in outs)
    assert added == [0, 30]  # the second waited, then found everything unchanged
    from chromadb.api.client import SharedSystemClient

    SharedSystemClient.clear_system_cache()
    from vectorstore.chroma import ChromaStore

    store = ChromaStore(settings.store_path, EMBEDDER, 384)
    docs = store.documents()
    assert len(docs) == 30 and sum(d["chunks"] for d in docs) == store.count()


def test_questions_are_answered_from_one_version_while_documents_are_replaced(
    settings: Settings, minilm: object, smol: object, tmp_path: Path
) -> None:
    """The UI's situation: one thread ingests (replacing every document) while another asks."""
    docs = tmp_path / "docs"
    _corpus(docs, 40, 1)
    bot = Chatbot(settings, embedder=minilm, generator=smol)  # type: ignore[arg-type]
    bot.ingest([docs])
    _corpus(docs, 40, 2)
    errors: list[BaseException] = []

    def ingest() -> None:
        try:
            bot.ingest([docs])
        except BaseException as e:  # noqa: BLE001 - reported by the test
            errors.append(e)

    writer = threading.Thread(target=ingest)
    writer.start()
    searches_during = 0
    while writer.is_alive():
        hits = bot.search("How many items did the glacier survey count?", 8)
        assert hits
        versions: dict[str, set[str]] = {}
        for h in hits:
            version = h.chunk.text.split(" version ")[1].split(":")[0]
            versions.setdefault(h.chunk.doc_id, set()).add(version)
        assert all(len(v) == 1 for v in versions.values()), versions
        searches_during += 1
    answer = bot.ask("How many items did the glacier survey of report 1 count in section 0?")
    writer.join()
    assert not errors, errors
    assert searches_during >= 5
    assert answer.text and answer.hits
    assert {h.chunk.text.split(" version ")[1][0] for h in bot.search("glacier survey", 20)} == {
        "2"
    }


def test_opening_the_keyword_index_never_waits_for_a_writer_thread(settings: Settings) -> None:
    """A search that opens the store while another thread of the process holds the writer
    lock must not wait for it (the writer may need the Chatbot lock the search holds)."""
    lock = build_lock(settings)
    held, done = threading.Event(), threading.Event()

    def writer() -> None:
        with lock.hold(0):
            held.set()
            done.wait(30)

    thread = threading.Thread(target=writer)
    thread.start()
    held.wait(10)
    with lock.try_hold() as got:
        assert got is False
    done.set()
    thread.join()
    with lock.try_hold() as got:
        assert got is True
