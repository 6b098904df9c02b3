import numpy as np
import pytest

from rag.chunking import chunk_document
from rag.errors import EmbedderMismatch
from rag.types import Document
from vectorstore.chroma import ChromaStore


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def doc(doc_id: str, text: str) -> Document:
    return Document(doc_id, f"/docs/{doc_id}.txt", text, {"title": doc_id.upper()})


def test_upsert_search_delete_roundtrip(tmp_path) -> None:
    store = ChromaStore(tmp_path, "fake-embedder", 8)
    rng = np.random.default_rng(0)
    chunks = chunk_document(doc("a", "One sentence. " * 30), 60, 0)
    vectors = unit(rng.normal(size=(len(chunks), 8)))
    store.replace_document("a", chunks, vectors)
    assert store.count() == len(chunks)
    hits = store.search(vectors[2], k=3)
    assert hits[0].chunk.id == chunks[2].id and hits[0].rank == 1
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert [h.rank for h in hits] == [1, 2, 3] and hits[0].score >= hits[1].score
    got = hits[0].chunk
    assert (got.doc_id, got.start, got.end, got.text) == (
        "a",
        chunks[2].start,
        chunks[2].end,
        chunks[2].text,
    )
    assert got.title == "A" and got.source == "/docs/a.txt"
    assert store.documents() == [
        {
            "doc_id": "a",
            "title": "A",
            "name": None,
            "source": "/docs/a.txt",
            "chunks": len(chunks),
            "pages": None,  # chunks without pages; a PDF's: the last page a chunk is on
            "added": None,  # kept by Chatbot.ingest, not by this test's chunks
            "size": None,
        }
    ]
    assert store.delete("a") == len(chunks)
    assert store.count() == 0 and store.search(vectors[0], 3) == []


def test_replace_document_leaves_no_stale_chunks(tmp_path) -> None:
    store = ChromaStore(tmp_path, "fake-embedder", 4)
    old = chunk_document(doc("a", "Old text. " * 20), 50, 0)
    new = chunk_document(doc("a", "New words here. " * 5), 50, 0)
    store.replace_document("a", old, unit(np.ones((len(old), 4))))
    store.replace_document("a", new, unit(np.ones((len(new), 4))))
    assert {c.id for c in store.get_chunks("a")} == {c.id for c in new}
    assert store.doc_hash("a") == new[0].metadata["doc_hash"]


def test_store_is_persistent_and_remembers_its_embedder(tmp_path) -> None:
    store = ChromaStore(tmp_path, "model-a", 4)
    chunks = chunk_document(doc("a", "Text."), 50, 0)
    store.replace_document("a", chunks, unit(np.ones((1, 4))))
    del store
    assert ChromaStore(tmp_path, "model-a", 4).count() == 1
    with pytest.raises(EmbedderMismatch, match="model-a.*re-index"):
        ChromaStore(tmp_path, "model-b", 4)
    with pytest.raises(EmbedderMismatch):
        ChromaStore(tmp_path, "model-a", 8)


def _version(chunks: list, generation: int) -> list:
    from rag.types import Chunk

    meta = {"generation": generation, "doc_chunks": len(chunks)}
    return [Chunk(c.id, c.doc_id, c.text, c.start, c.end, {**c.metadata, **meta}) for c in chunks]


def test_repair_keeps_the_newest_complete_version(tmp_path) -> None:
    store = ChromaStore(tmp_path, "fake-embedder", 8)
    rng = np.random.default_rng(0)
    old = chunk_document(doc("a", "Old sentence here. " * 30), 60, 0)
    store.replace_document("a", old, unit(rng.normal(size=(len(old), 8))))
    new = _version(chunk_document(doc("a", "New words instead. " * 20), 60, 0), 2**62)
    # a crash after the new version's upsert, before the old chunks were deleted
    store.upsert(new, unit(rng.normal(size=(len(new), 8))))
    assert store.count() == len(old) + len(new) and store.doc_hash("a") is None
    assert store.repair("a") == len(old)
    assert {c.id for c in store.get_chunks("a")} == {c.id for c in new}
    assert store.repair("a") == 0  # whole: nothing to do


def test_repair_drops_a_partial_version_and_keeps_the_complete_one(tmp_path) -> None:
    store = ChromaStore(tmp_path, "fake-embedder", 8)
    rng = np.random.default_rng(1)
    old = chunk_document(doc("a", "Old sentence here. " * 30), 60, 0)
    store.replace_document("a", old, unit(rng.normal(size=(len(old), 8))))
    new = _version(chunk_document(doc("a", "New words instead. " * 20), 60, 0), 2**62)
    store.upsert(new[:2], unit(rng.normal(size=(2, 8))))  # only part of it was written
    store.repair("a")
    assert [c.id for c in store.get_chunks("a")] == [c.id for c in old]
    assert store.doc_hash("a") == old[0].metadata["doc_hash"]


def test_reads_of_a_large_document_are_paged(tmp_path, monkeypatch) -> None:
    """Chroma fails one read of more rows than SQLite takes variables (about 32,000 chunks:
    a 200 MB file); every read by document or source goes in pages. Pages of 3 rows here."""
    import vectorstore.chroma

    monkeypatch.setattr(vectorstore.chroma, "_PAGE", 3)
    store = ChromaStore(tmp_path, "fake-embedder", 4)
    chunks = chunk_document(doc("a", "One sentence here. " * 40), 60, 0)
    assert len(chunks) > 10
    store.replace_documents([("a", chunks, unit(np.ones((len(chunks), 4))))])
    assert [c.id for c in store.get_chunks("a")] == [c.id for c in chunks]
    assert store.doc_hashes(["a"]) == {"a": chunks[0].metadata["doc_hash"]}
    assert store.source_doc_ids("/docs/a.txt") == ["a"]
    assert store.repair("a") == 0
    assert store.delete("a") == len(chunks) and store.count() == 0
