"""Retrieval latency of ragchat's search at 1k, 10k and 100k chunks: p50 / p95 per query.

Times `Retriever.search(question, k=5)` as the pipeline calls it: the question's embedding
(multilingual-e5-small, 2 threads), its language, the Chroma HNSW query, the BM25 query over
each language's index, fusion, the chunk lookups and the joining of overlapping neighbours
(none overlap here: the chunks of a pseudo-document are laid end to end); for "hybrid" (the
default) and "dense".

The corpus and questions are those of bench/hnsw_recall.py (real e5 vectors of 100,000 short
chunks of the evaluation passages plus Python docstrings, cached in ~/.cache/ragchat/bench:
run that script first). The chunks are written with the stores' own writes (ChromaStore,
KeywordIndex), 20 chunks per pseudo-document, from the cached vectors; questions are embedded
live. 20 warm-up queries, then each query timed alone.

    .venv/bin/python bench/retrieval_latency.py --out bench/results/retrieval_latency.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from models.embedders import SentenceTransformerEmbedder
from rag.config import Settings
from rag.language import detect_language
from rag.retrieval import Retriever
from rag.types import Chunk
from vectorstore.chroma import HNSW, ChromaStore
from vectorstore.keyword import KeywordIndex

PER_DOC = 20


def load(cache: Path) -> tuple[list[dict[str, Any]], np.ndarray, list[str]]:
    rows = [json.loads(line) for line in (cache / "corpus100k.jsonl").open(encoding="utf-8")]
    vectors = np.load(cache / "corpus100k.f32.npy", mmap_mode="r")
    queries = [json.loads(line)["question"] for line in (cache / "queries1000.jsonl").open()]
    return rows, vectors, queries


def build(
    path: Path, rows: list[dict[str, Any]], vectors: np.ndarray
) -> tuple[ChromaStore, KeywordIndex, float]:
    t0 = time.perf_counter()
    store = ChromaStore(path / "store", "multilingual-e5-small", 384)
    keyword = KeywordIndex(path / "store" / "keywords" / "ragchat.sqlite")
    for start in range(0, len(rows), PER_DOC):
        part = rows[start : start + PER_DOC]
        doc_id = f"doc{start // PER_DOC}"
        lang = detect_language(" ".join(r["text"] for r in part[:3]))
        ends = np.cumsum([len(r["text"]) + 1 for r in part])  # laid end to end, a space apart
        chunks = [
            Chunk(f"c{r['row']}", doc_id, r["text"], end - 1 - len(r["text"]), end - 1,
                  {"lang": lang, "title": doc_id, "source": r.get("source", "")})
            for r, end in zip(part, ends.tolist())
        ]  # fmt: skip
        store.replace_document(doc_id, chunks, np.asarray(vectors[start : start + len(part)]))
        keyword.replace_document(doc_id, chunks, lang)
    return store, keyword, time.perf_counter() - t0


def percentiles(ms: list[float]) -> dict[str, float]:
    q = statistics.quantiles(ms, n=100)
    return {"p50": round(q[49], 2), "p95": round(q[94], 2), "mean": round(statistics.fmean(ms), 2)}


def time_queries(retriever: Retriever, queries: list[str]) -> dict[str, float]:
    for q in queries[:20]:
        retriever.search(q, 5)
    ms = []
    for q in queries:
        t0 = time.perf_counter()
        retriever.search(q, 5)
        ms.append((time.perf_counter() - t0) * 1000)
    return percentiles(ms)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache/ragchat/bench")
    parser.add_argument("--out", type=Path, default=Path("bench/results/retrieval_latency.json"))
    args = parser.parse_args()
    import torch

    torch.set_num_threads(2)
    rows, vectors, queries = load(args.cache_dir)
    queries = queries[: args.queries]
    embedder = SentenceTransformerEmbedder(
        "multilingual-e5-small", models_dir=Settings().models_dir
    )
    embedder.embed_query("warm up")
    merge_chars = Settings().merge_chars  # as the pipeline builds its Retriever
    results = []
    for n in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory(prefix="ragchat-latency-") as tmp:
            store, keyword, build_s = build(Path(tmp), rows[:n], vectors[:n])
            keyword.search("warm up the index", 5)  # builds the in-memory BM25 indexes
            entry: dict[str, Any] = {"chunks": n, "build_s": round(build_s, 1)}
            for mode in ("hybrid", "dense"):
                retriever = Retriever(embedder, store, keyword if mode == "hybrid" else None,
                                      mode=mode, merge_chars=merge_chars)  # fmt: skip
                entry[mode] = time_queries(retriever, queries)
            t0 = time.perf_counter()
            for q in queries:
                embedder.embed_query(q)
            entry["query_embedding_ms_mean"] = round(
                (time.perf_counter() - t0) * 1000 / len(queries), 2
            )
            results.append(entry)
            print(json.dumps(entry))
    report = {
        "command": "python bench/retrieval_latency.py",
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "load_1min_at_end": os.getloadavg()[0],
        },
        "hnsw": HNSW,
        "queries": len(queries),
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print("| chunks | hybrid p50 / p95 ms | dense p50 / p95 ms | query embedding ms |")
    print("|---|---|---|---|")
    for r in results:
        print(
            f"| {r['chunks']:,} | {r['hybrid']['p50']} / {r['hybrid']['p95']} | "
            f"{r['dense']['p50']} / {r['dense']['p95']} | {r['query_embedding_ms_mean']} |"
        )


if __name__ == "__main__":
    main()
