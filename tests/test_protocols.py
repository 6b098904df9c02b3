"""Every implementation keeps the contract of its protocol (rag/protocols.py).

Two checks: the signature one (each method the protocol names exists, and accepts every
parameter the protocol's callers may pass, by the same name and kind), over all implementations
including the tests' fake; and the behaviour callers rely on, with the real components (the
packaged embedders, a Chroma store and keyword index on tmp_path, the small packaged GGUF).
"""

from __future__ import annotations

import contextlib
import inspect
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models.embedders import SentenceTransformerEmbedder
from models.generators import LlamaCppGenerator, OpenAIGenerator
from models.rerankers import CrossEncoderReranker
from rag import protocols as p
from rag.types import Chunk
from tests.conftest import ScriptedGenerator
from tests.test_chroma_server import chroma_server, free_port
from vectorstore.chroma import ChromaStore
from vectorstore.keyword import KeywordIndex

IMPLEMENTATIONS = [
    (SentenceTransformerEmbedder, p.Embedder),
    (ChromaStore, p.VectorStore),
    (ChromaStore, p.DocumentIndex),
    (ChromaStore, p.ChunkLookup),
    (KeywordIndex, p.KeywordSearch),
    (CrossEncoderReranker, p.Reranker),
    (LlamaCppGenerator, p.Generator),
    (LlamaCppGenerator, p.BlockGenerator),
    (LlamaCppGenerator, p.ScoresFirstToken),
    (LlamaCppGenerator, p.Chooser),
    (OpenAIGenerator, p.Generator),
    (ScriptedGenerator, p.Generator),
]


def methods(protocol: type) -> list[str]:
    return [
        name
        for name, value in vars(protocol).items()
        if not name.startswith("_") and callable(value) and not isinstance(value, property)
    ]


@pytest.mark.parametrize(
    ("cls", "protocol"), IMPLEMENTATIONS, ids=lambda x: getattr(x, "__name__", str(x))
)
def test_each_method_accepts_what_the_protocol_passes(cls: type, protocol: type) -> None:
    assert methods(protocol) or protocol is p.ReportsUsage
    for name in methods(protocol):
        assert callable(getattr(cls, name, None)), f"{cls.__name__} lacks {name}"
        wanted = inspect.signature(getattr(protocol, name)).parameters
        given = inspect.signature(getattr(cls, name)).parameters
        takes_any = any(q.kind is inspect.Parameter.VAR_KEYWORD for q in given.values())
        for param in list(wanted.values())[1:]:  # self aside
            if param.name in given:
                assert given[param.name].kind == param.kind, f"{cls.__name__}.{name}({param})"
                if param.default is not inspect.Parameter.empty:
                    assert given[param.name].default is not inspect.Parameter.empty, (
                        f"{cls.__name__}.{name}: {param.name} must be optional"
                    )
            else:
                assert takes_any and param.kind is inspect.Parameter.KEYWORD_ONLY, (
                    f"{cls.__name__}.{name} does not take {param.name}"
                )


@pytest.mark.parametrize("which", ["e5", "minilm"])
def test_embedders_return_unit_vectors_of_their_dimension(
    which: str, request: pytest.FixtureRequest
) -> None:
    embedder: SentenceTransformerEmbedder = request.getfixturevalue(which)
    assert isinstance(embedder, p.Embedder)
    docs = embedder.embed_documents(["Avril Haines dirige le renseignement.", "Le FBI."])
    assert docs.shape == (2, embedder.dim)
    np.testing.assert_allclose(np.linalg.norm(docs, axis=1), 1.0, atol=1e-4)
    query = embedder.embed_query("Who leads intelligence?")
    assert query.shape == (embedder.dim,)
    assert embedder.embed_documents([]).shape[0] == 0


TEXTS = ["Hammouchi a rencontré Avril Haines.", "Le musée ouvre à 10 heures."]
CHUNKS = [
    Chunk(f"c{i}", "doc", t, 0, len(t), {"title": "t", "source": "s.txt", "doc_hash": "h"})
    for i, t in enumerate(TEXTS)
]


@pytest.mark.parametrize("where", ["directory", "server"])
def test_both_chroma_stores_serve_what_they_hold(
    where: str, tmp_path: Path, minilm: SentenceTransformerEmbedder
) -> None:
    """The persistent store (a directory) and the HTTP one (`chroma run`) alike."""
    with contextlib.ExitStack() as stack:
        location = str(tmp_path / "store")
        if where == "server":
            location = stack.enter_context(chroma_server(tmp_path / "server", free_port()))
        store = ChromaStore(location, minilm.name, minilm.dim)
        check_store(store, minilm)


def check_store(store: ChromaStore, minilm: SentenceTransformerEmbedder) -> None:
    vectors = minilm.embed_documents(TEXTS)
    for protocol in (p.VectorStore, p.DocumentIndex, p.ChunkLookup):
        assert isinstance(store, protocol)
    store.replace_documents([("doc", CHUNKS, vectors)])
    assert store.count() == 2
    assert store.search(minilm.embed_query("Avril Haines"), 1)[0].chunk.id == "c0"
    assert store.nearest_ids(minilm.embed_query("Avril Haines"), 1)[0][0] == "c0"
    assert [c.id for c in store.get_chunks("doc")] == ["c0", "c1"]
    assert [c.text for c in store.fetch(["c1"])] == [TEXTS[1]]
    assert store.doc_hashes(["doc"]) == {"doc": "h"}
    assert store.source_doc_ids("s.txt") == ["doc"]
    assert store.delete("doc") == 2 and store.count() == 0


def test_the_keyword_index_finds_what_it_holds(tmp_path: Path) -> None:
    keyword = KeywordIndex(tmp_path / "keyword.sqlite3")
    assert isinstance(keyword, p.KeywordSearch)
    keyword.begin(["doc"])
    keyword.replace_document("doc", CHUNKS, "fr")
    assert keyword.search("musée", 1)[0].chunk_id == "c1"


def test_the_local_generator_streams_counts_and_reports_usage(smol: LlamaCppGenerator) -> None:
    for protocol in (p.Generator, p.BlockGenerator, p.ReportsUsage, p.ScoresFirstToken, p.Chooser):
        assert isinstance(smol, protocol)
    messages = [{"role": "user", "content": "Say yes."}]
    pieces = list(smol.stream(messages, max_tokens=4))
    assert all(isinstance(piece, str) for piece in pieces)
    assert smol.last_usage["prompt_tokens"] > 0
    assert smol.count_tokens("Avril Haines") > 0
    chosen: dict[str, Any] = smol.choose(messages, ("yes", "no"))
    assert not chosen or abs(sum(chosen.values()) - 1) < 1e-6


def test_the_server_generator_keeps_the_protocol_without_a_server() -> None:
    generator = OpenAIGenerator("http://127.0.0.1:9/v1", model="m")
    assert isinstance(generator, p.Generator) and isinstance(generator, p.ReportsUsage)
    assert not isinstance(generator, p.BlockGenerator)
    assert generator.count_tokens("Avril Haines et William Burns") > 0
