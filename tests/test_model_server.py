"""Model-server mode: answers through an OpenAI-compatible endpoint (llama-cpp-python's server
running the small packaged model), streamed."""

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from models.embedders import SentenceTransformerEmbedder
from models.weights import resolve_gguf
from rag import SAMPLE_CORPUS, Answer, Chatbot, Settings
from rag.errors import GenerationError
from tests.conftest import SMOL


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    model = resolve_gguf(SMOL, tmp_path_factory.mktemp("models"))
    port = free_port()
    args = ["--model", str(model), "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096"]
    args += ["--n_threads", "2", "--n_threads_batch", "2"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail("python -m llama_cpp.server exited at start")
            time.sleep(0.3)
    yield f"http://127.0.0.1:{port}/v1"
    proc.terminate()
    proc.wait(timeout=30)


def test_ask_through_an_openai_compatible_server(
    server: str, tmp_path: Path, minilm: SentenceTransformerEmbedder
) -> None:
    settings = Settings(
        store=str(tmp_path / "store"), data_dir=str(tmp_path), llm=f"openai:{server}"
    )
    bot = Chatbot(settings, embedder=minilm)
    bot.ingest([SAMPLE_CORPUS])
    pieces = list(bot.stream("Who did Hammouchi meet?"))
    answer = pieces[-1]
    assert isinstance(answer, Answer) and len(pieces) > 2  # streamed in several pieces
    assert answer.text and answer.usage["completion_tokens"] > 0
    assert answer.usage["prompt_tokens"] > 100  # reported by the server, or estimated
    assert bot.generator.name == f"openai:{server}"


def test_an_unreachable_server_is_a_clear_error(tmp_path: Path) -> None:
    from models.generators import OpenAIGenerator

    gen = OpenAIGenerator(f"http://127.0.0.1:{free_port()}/v1")
    with pytest.raises(GenerationError, match="Cannot reach the model server"):
        list(gen.stream([{"role": "user", "content": "hi"}], max_tokens=5))
