"""Server mode: ragchat against a real Chroma server (`chroma run`, shipped with chromadb)."""

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from models.embedders import SentenceTransformerEmbedder
from rag import SAMPLE_CORPUS, Chatbot, Settings
from rag.errors import StoreError
from tests.conftest import SAMPLE_ID, ScriptedGenerator

CHROMA = Path(sys.executable).parent / "chroma"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def chroma_server(path: Path, port: int) -> Iterator[str]:
    proc = subprocess.Popen(
        [str(CHROMA), "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail("chroma run did not start listening within 60 s")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_ingest_search_and_find_the_data_again_after_a_restart(
    tmp_path: Path, minilm: SentenceTransformerEmbedder
) -> None:
    port = free_port()
    data = tmp_path / "server-data"

    def bot(url: str) -> Chatbot:
        settings = Settings(store=url, data_dir=str(tmp_path / "client"))
        return Chatbot(settings, embedder=minilm, generator=ScriptedGenerator())

    with chroma_server(data, port) as url:
        first = bot(url)
        report = first.ingest([SAMPLE_CORPUS])
        assert report.documents == 1 and report.chunks > 0
        assert "Avril Haines" in " ".join(h.chunk.text for h in first.search("Avril Haines", 3))
        keyword_file = tmp_path / "client" / "keywords" / f"127.0.0.1_{port}" / "ragchat.sqlite"
        assert keyword_file.is_file()  # the keyword index stays on the client's machine

    with chroma_server(data, port) as url:
        again = bot(url)
        assert [d["doc_id"] for d in again.documents()] == [SAMPLE_ID]
        assert again.ingest([SAMPLE_CORPUS]).unchanged == 1  # nothing re-embedded
        again.settings = again.settings.replace(retrieval="keyword")
        assert "Christopher Wray" in again.search("Christopher Wray", 1)[0].chunk.text


def test_an_unreachable_server_is_a_clear_error(tmp_path: Path) -> None:
    from vectorstore.chroma import ChromaStore

    with pytest.raises(StoreError, match="chroma run"):
        ChromaStore(f"http://127.0.0.1:{free_port()}", "m", 4)
