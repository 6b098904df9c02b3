"""The Chroma vector store: the only module that imports chromadb.

A persistent Chroma collection in cosine space. We always supply the embeddings (Chroma's default
embedding function downloads a model, so it is never used) and telemetry is off. The collection
records the embedding model and dimension that built it; opening it with another embedder raises
EmbedderMismatch instead of mixing vectors.

A document's chunks are written in one upsert, then the chunks of its previous version are
deleted, so a document is replaced rather than duplicated. Each chunk records its version
(`generation`, a timestamp) and how many chunks that version has (`doc_chunks`), so that after a
crash between the two steps `repair` can keep the newest complete version of a document, or
remove it whole: a document is never left half-present.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import EmbedderMismatch, StoreError
from rag.types import Chunk, Hit

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
_PAGE = 5000  # rows per read: Chroma fails reads of more rows than SQLite takes variables
# HNSW parameters: higher than Chroma's defaults (100 / 100 / 16) for near-exact recall.
HNSW = {"space": "cosine", "ef_construction": 200, "ef_search": 200, "max_neighbors": 32}


class ChromaStore:
    """Chunks and their vectors in a Chroma collection: a directory on disk (embedded Chroma) or
    a Chroma server (`http://host:port`, as started by `chroma run`)."""

    def __init__(self, path: str | Path, embedder_name: str, dim: int, collection: str = "ragchat"):
        self.path = str(path)
        self.collection = collection
        self.embedder_name = embedder_name
        self.dim = dim
        where = "server" if is_server(self.path) else "store"
        try:
            self._client = _client(self.path)
            self._col = self._client.get_or_create_collection(
                name=collection,
                embedding_function=None,
                configuration={"hnsw": dict(HNSW)},  # type: ignore[arg-type]
                metadata={
                    "embedder": embedder_name,
                    "embedding_dim": dim,
                    "ragchat_schema": SCHEMA_VERSION,
                },
            )
        except Exception as e:  # chromadb raises many kinds; all mean "cannot open"
            hint = (
                "Check that the server is running (`chroma run --path DIR --port PORT`) and "
                "reachable"
                if where == "server"
                else "Check the path and its permissions"
            )
            raise StoreError(
                f"Cannot open the Chroma {where} at {self.path} ({e}). {hint}, or choose another "
                "with --store / RAGCHAT_STORE."
            ) from e
        self._check_embedder()
        self._max_batch = self._client.get_max_batch_size()

    def _check_embedder(self) -> None:
        meta = self._col.metadata or {}
        built_with, built_dim = meta.get("embedder"), meta.get("embedding_dim")
        if built_with != self.embedder_name or built_dim != self.dim:
            raise EmbedderMismatch(
                f"The store at {self.path} was built with the embedder {built_with!r} "
                f"(dimension {built_dim}), but {self.embedder_name!r} (dimension {self.dim}) "
                "is configured. Use the same embedder (--embedder / RAGCHAT_EMBEDDER), or "
                "re-index into a new store: `ragchat ingest --store NEW_DIR DOCS...`."
            )

    # -- VectorStore ---------------------------------------------------------------------------

    def upsert(self, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        """Write chunks with their vectors; ids already present are overwritten."""
        if len(chunks) != len(vectors):
            raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors")
        if len(chunks) and vectors.shape[1] != self.dim:
            raise EmbedderMismatch(
                f"Got vectors of dimension {vectors.shape[1]} for a store of dimension {self.dim}."
            )
        for i in range(0, len(chunks), self._max_batch):
            part = chunks[i : i + self._max_batch]
            self._col.upsert(
                ids=[c.id for c in part],
                embeddings=np.asarray(vectors[i : i + self._max_batch], dtype=np.float32),
                documents=[c.text for c in part],
                metadatas=[_chunk_metadata(c) for c in part],
            )

    def search(self, vector: np.ndarray, k: int) -> list[Hit]:
        """The k nearest chunks, best first; score = cosine similarity (fewer than k when the
        store holds fewer: Chroma 1.5 returns what it has, so no count is asked first)."""
        res = self._col.query(
            query_embeddings=np.asarray([vector], dtype=np.float32),
            n_results=k,
            include=["documents", "metadatas", "distances"],
        )
        documents, metadatas, distances = res["documents"], res["metadatas"], res["distances"]
        assert documents is not None and metadatas is not None and distances is not None
        hits = []
        for rank, (cid, text, meta, dist) in enumerate(
            zip(res["ids"][0], documents[0], metadatas[0], distances[0]), 1
        ):
            hits.append(Hit(chunk=_chunk_from(cid, text or "", meta), score=1.0 - dist, rank=rank))
        return hits

    def nearest_ids(self, vector: np.ndarray, k: int) -> list[tuple[str, float]]:
        """(chunk id, cosine similarity) of the k nearest chunks, best first: the search
        without reading texts and metadata (a third of the time for 50 candidates)."""
        res = self._col.query(
            query_embeddings=np.asarray([vector], dtype=np.float32),
            n_results=k,
            include=["distances"],
        )
        assert res["distances"] is not None
        return [(cid, 1.0 - d) for cid, d in zip(res["ids"][0], res["distances"][0])]

    def delete(self, doc_id: str) -> int:
        """Remove every chunk of a document; returns how many were removed."""
        ids = self._where({"doc_id": doc_id}, [])["ids"]
        for lo in range(0, len(ids), self._max_batch):
            self._col.delete(ids=ids[lo : lo + self._max_batch])
        return len(ids)

    def _where(self, where: dict[str, Any], include: list[str]) -> dict[str, list[Any]]:
        """Every chunk matching `where`: its id and the included fields (see `_pages`)."""
        out: dict[str, list[Any]] = {"ids": [], **{field: [] for field in include}}
        for page in self._pages(where, include):
            for field in out:
                out[field] += page[field] or []
        return out

    def _pages(self, where: dict[str, Any], include: list[str]) -> Iterator[Any]:
        """The chunks matching `where`, read in pages of _PAGE: one read of more than about
        32,000 rows fails in Chroma ("too many SQL variables")."""
        offset = 0
        while True:
            page: Any = self._col.get(where=where, include=include, limit=_PAGE, offset=offset)  # type: ignore[arg-type]
            yield page
            if len(page["ids"]) < _PAGE:
                return
            offset += _PAGE

    # -- DocumentIndex -------------------------------------------------------------------------

    def replace_document(self, doc_id: str, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        """Write a document's new chunks, then drop the chunks of its previous versions."""
        self.replace_documents([(doc_id, chunks, vectors)])

    def replace_documents(
        self, documents: Sequence[tuple[str, Sequence[Chunk], np.ndarray]]
    ) -> None:
        """replace_document for many documents at once: their new chunks in one upsert (split
        only at Chroma's batch limit), then the chunks of their previous versions in one
        delete. A crash in between leaves versions that `repair` sorts out per document."""
        if not documents:
            return
        generation = time.time_ns()
        chunks: list[Chunk] = []
        for _, doc_chunks, _ in documents:
            version = {"generation": generation, "doc_chunks": len(doc_chunks)}
            chunks += [
                Chunk(c.id, c.doc_id, c.text, c.start, c.end, {**c.metadata, **version})
                for c in doc_chunks
            ]
        vectors = [np.asarray(v, dtype=np.float32).reshape(-1, self.dim) for _, _, v in documents]
        self.upsert(chunks, np.concatenate(vectors))
        keep = {c.id for c in chunks}
        stale = [i for i in self._ids_of([d for d, _, _ in documents]) if i not in keep]
        for lo in range(0, len(stale), self._max_batch):
            self._col.delete(ids=stale[lo : lo + self._max_batch])

    def _ids_of(self, doc_ids: Sequence[str]) -> list[str]:
        """The chunk ids of these documents."""
        ids: list[str] = []
        for lo in range(0, len(doc_ids), 500):
            part = list(doc_ids[lo : lo + 500])
            ids += self._where({"doc_id": {"$in": part}}, [])["ids"]
        return ids

    def repair(self, doc_id: str) -> int:
        """Leave a document whole after an interrupted write: keep its newest complete version
        (all `doc_chunks` chunks of one generation), delete every other chunk; with no complete
        version, delete it all. Returns the number of chunks deleted."""
        got = self._where({"doc_id": doc_id}, ["metadatas"])
        metas = got["metadatas"]
        generation = [m.get("generation", 0) for m in metas]
        sizes = Counter(generation)
        complete = [
            g for g, m in zip(generation, metas) if sizes[g] == m.get("doc_chunks", sizes[g])
        ]
        keep = max(complete) if complete else None
        doomed = [cid for cid, g in zip(got["ids"], generation) if g != keep]
        if doomed:
            log.warning(
                "repairing %s: removing %d chunks of an interrupted write", doc_id, len(doomed)
            )
            for lo in range(0, len(doomed), self._max_batch):
                self._col.delete(ids=doomed[lo : lo + self._max_batch])
        return len(doomed)

    def doc_hash(self, doc_id: str) -> str | None:
        """The content hash of the stored document, or None if absent or not consistent."""
        return self.doc_hashes([doc_id])[doc_id]

    def doc_hashes(self, doc_ids: Sequence[str]) -> dict[str, str | None]:
        """doc_hash of many documents in one read per 500."""
        hashes: dict[str, set[str]] = {d: set() for d in doc_ids}
        for lo in range(0, len(doc_ids), 500):
            part = list(doc_ids[lo : lo + 500])
            for meta in self._where({"doc_id": {"$in": part}}, ["metadatas"])["metadatas"]:
                hashes.setdefault(str(meta["doc_id"]), set()).add(str(meta.get("doc_hash")))
        return {d: next(iter(h)) if len(h) == 1 else None for d, h in hashes.items()}

    def source_doc_ids(self, source: str | Sequence[str]) -> list[str]:
        """The ids of the documents read from a source (a file path, or a .jsonl record's
        `path#id`), or from any of several."""
        sources = [source] if isinstance(source, str) else list(source)
        doc_ids: set[str] = set()  # page by page: a 200 MB file has 50,000 chunks
        for lo in range(0, len(sources), 500):
            part = sources[lo : lo + 500]
            where = {"source": part[0]} if len(part) == 1 else {"source": {"$in": part}}
            for page in self._pages(where, ["metadatas"]):
                doc_ids.update(str(m["doc_id"]) for m in page["metadatas"] or [])
        return sorted(doc_ids)

    def documents(self) -> list[dict[str, Any]]:
        """One entry per document: doc_id, title, name (None when not stored), source,
        chunks, pages (the last page a chunk is on; None without pages), added (when it was
        ingested, seconds since the epoch; None before this was kept), size (the file's
        bytes; None when unknown)."""
        docs: dict[str, dict[str, Any]] = {}
        total = self.count()
        for offset in range(0, total, _PAGE):
            got = self._col.get(include=["metadatas"], limit=_PAGE, offset=offset)
            for meta in got["metadatas"] or []:
                doc_id = str(meta["doc_id"])
                entry = docs.setdefault(
                    doc_id,
                    {
                        "doc_id": doc_id,
                        "title": meta.get("title", doc_id),
                        "name": meta.get("name"),
                        "source": meta.get("source", ""),
                        "chunks": 0,
                        "pages": None,
                        "added": meta.get("added"),
                        "size": meta.get("size"),
                    },
                )
                entry["chunks"] += 1
                page = meta.get("page")
                if isinstance(page, int) and page > 0:
                    entry["pages"] = max(entry["pages"] or 0, page)
        return sorted(docs.values(), key=lambda d: str(d["title"]).lower())

    def count(self) -> int:
        return int(self._col.count())

    def fetch(self, ids: Sequence[str]) -> list[Chunk]:
        """The chunks with these ids that exist, in the order asked."""
        if not ids:
            return []
        got = self._col.get(ids=list(ids), include=["documents", "metadatas"])
        found = {
            cid: _chunk_from(cid, text or "", meta)
            for cid, text, meta in zip(got["ids"], got["documents"] or [], got["metadatas"] or [])
        }
        return [found[i] for i in ids if i in found]

    def get_chunks(self, doc_id: str) -> list[Chunk]:
        got = self._where({"doc_id": doc_id}, ["documents", "metadatas"])
        chunks = [
            _chunk_from(cid, text or "", meta)
            for cid, text, meta in zip(got["ids"], got["documents"], got["metadatas"])
        ]
        return sorted(chunks, key=lambda c: c.start)


def is_server(location: str) -> bool:
    """Whether a store location names a Chroma server rather than a directory."""
    return location.startswith(("http://", "https://"))


def _client(location: str) -> Any:
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
    if is_server(location):
        from urllib.parse import urlsplit

        url = urlsplit(location)
        ssl = url.scheme == "https"
        return chromadb.HttpClient(
            host=url.hostname or "localhost",
            port=url.port or (443 if ssl else 8000),
            ssl=ssl,
            settings=settings,
        )
    Path(location).mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=location, settings=settings)


def _chunk_metadata(chunk: Chunk) -> dict[str, Any]:
    meta = {k: v for k, v in chunk.metadata.items() if isinstance(v, (str, int, float, bool))}
    meta.update(doc_id=chunk.doc_id, start=chunk.start, end=chunk.end)
    return meta


def _chunk_from(chunk_id: str, text: str, meta: Any) -> Chunk:
    meta = dict(meta or {})
    doc_id = str(meta.pop("doc_id", ""))
    start = int(meta.pop("start", 0))
    end = int(meta.pop("end", start + len(text)))
    return Chunk(id=chunk_id, doc_id=doc_id, text=text, start=start, end=end, metadata=meta)
