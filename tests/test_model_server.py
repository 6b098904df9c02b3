"""Model-server mode: answers through an OpenAI-compatible endpoint (llama-cpp-python's server
running the small packaged model), streamed."""

import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from models.embedders import SentenceTransformerEmbedder
from models.weights import resolve_gguf
from rag import SAMPLE_CORPUS, Answer, Chatbot, Settings, prompts
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


@pytest.fixture
def server_bot(server: str, tmp_path: Path, minilm: SentenceTransformerEmbedder) -> Chatbot:
    """A Chatbot answering through the model server, the sample article ingested."""
    settings = Settings(
        store=str(tmp_path / "store"), data_dir=str(tmp_path), llm=f"openai:{server}"
    )
    bot = Chatbot(settings, embedder=minilm)
    bot.ingest([SAMPLE_CORPUS])
    return bot


def test_ask_through_an_openai_compatible_server(server: str, server_bot: Chatbot) -> None:
    bot = server_bot
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


def test_the_servers_grammar_holds_the_reply_to_the_shown_ids(server: str) -> None:
    from models.generators import OpenAIGenerator

    gen = OpenAIGenerator(server)
    messages = [
        {"role": "system", "content": prompts.quote_system()},
        {"role": "user", "content": "[1] Note\n(1.1) The shop opens at 9.\nQuestion: When?"},
    ]
    # ids that were never shown: the grammar still holds the model to them (or to none)
    grammar = prompts.quote_reply_grammar(["7.3", "8.1"])
    reply = "".join(gen.stream_grammar(messages, grammar=grammar, max_tokens=60))
    assert gen.last_usage["grammar"] == 1
    assert re.fullmatch(
        r"Evidence:( none| (7\.3|8\.1)(, (7\.3|8\.1)){0,3}\n(\((7\.3|8\.1)\) [^\n]+\n)*"
        r"(Answer: [^\n]+)?)",
        reply,
    ), reply


def test_a_question_through_the_server_is_answered_in_the_quoted_form(
    server_bot: Chatbot,
) -> None:
    bot = server_bot
    bot.settings = bot.settings.replace(answer_form="quote")
    answer = bot.ask("Who did Hammouchi meet?")
    assert answer.usage["grammar"] == 1  # the server took the grammar
    assert re.match(r"Evidence:( none$| \d+\.\d+(, \d+\.\d+)*\n)", answer.raw), answer.raw


def test_a_question_through_the_server_is_answered_in_a_few_words(server_bot: Chatbot) -> None:
    """The extract form (the default over a small collection) through a server: one plain
    chat call, no grammar; a kept answer cites sentences verbatim in their passages."""
    bot = server_bot
    assert bot.answerer.form() == "extract"
    answer = bot.ask("Who did Hammouchi meet?")
    assert "grammar" not in answer.usage and answer.usage["completion_tokens"] > 0
    assert answer.refused or answer.citations
    for c in answer.citations:
        assert c.chunk.text[c.start : c.end] == c.quote


@pytest.fixture
def refuses_grammars() -> Iterator[tuple[str, list[dict]]]:
    """A stand-in for a server without grammars (OpenAI's own API answers HTTP 400 to an
    unknown field): it refuses a request with `grammar`, and streams a plain reply to one
    without. The requests it got are recorded."""
    import http.server
    import json
    import threading

    bodies: list[dict] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            bodies.append(body)
            if "grammar" in body:
                self.send_response(400)
                self.end_headers()
                self.wfile.write(b'{"error": "Unrecognized request argument supplied: grammar"}')
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            event = {"choices": [{"delta": {"content": "Evidence: none"}}]}
            self.wfile.write(f"data: {json.dumps(event)}\n\ndata: [DONE]\n\n".encode())

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", bodies
    httpd.shutdown()


def test_a_server_that_refuses_grammars_is_asked_without_one(
    refuses_grammars: tuple[str, list[dict]],
) -> None:
    from models.generators import OpenAIGenerator

    url, bodies = refuses_grammars
    gen = OpenAIGenerator(url)
    messages = [{"role": "user", "content": "When?"}]
    grammar = prompts.quote_reply_grammar(["1.1"])
    for _ in range(2):
        assert "".join(gen.stream_grammar(messages, grammar=grammar, max_tokens=9)) == (
            "Evidence: none"
        )
        assert gen.last_usage["grammar"] == 0
    # refused once, then not sent again
    assert ["grammar" in b for b in bodies] == [True, False, False]

    strict = OpenAIGenerator(url, grammar="on")
    with pytest.raises(GenerationError, match="does not take a GBNF grammar"):
        list(strict.stream_grammar(messages, grammar=grammar, max_tokens=9))
    off = OpenAIGenerator(url, grammar="off")
    list(off.stream_grammar(messages, grammar=grammar, max_tokens=9))
    assert "grammar" not in bodies[-1]
