"""Is Chroma's HNSW index exact enough? Recall@10 and query latency on real e5 vectors.

Compares Chroma's approximate top-10 with the exact top-10 (numpy dot products of unit vectors)
for 1,000 real eval questions over 1k / 10k / 100k real text chunks embedded with
multilingual-e5-small, for several HNSW settings. It measures the index alone: no keyword
search, no reranking, no generation.

    .venv/bin/python bench/hnsw_recall.py [--sizes 1000,10000,100000] [--queries 1000]
        [--cache-dir ~/.cache/ragchat/bench] [--out bench/results/hnsw_recall.json]

The corpus (100,000 rows, built once and cached):
  1. Eval passages: every passage of /work/shared/eval/*/documents.jsonl, files read in sorted
     order, a passage kept once (exact text; the *_mini sets are subsets and add nothing). Each
     passage is split into sentences (a regex: . ! ? or … then whitespace then an upper-case
     letter, digit or opening quote) and every window of 1, 2 and 3 consecutive sentences is a
     chunk. Windows shorter than 20 characters are dropped; chunks are unique by text.
  2. Python docstrings, to fill the rest: the .py files of the standard library and of the
     project's site-packages, in sorted path order, parsed with `ast` (nothing is imported);
     the docstrings of modules, classes and functions are split into paragraphs at blank lines,
     the lines of a paragraph joined by spaces. A paragraph is kept if it is 80 to 1,000
     characters, has at least 8 words, is at least 75 % letters and spaces, and holds no doctest
     (`>>>`). Unique by text and not equal to an eval chunk; a seeded shuffle (random.Random(0))
     of these, then the first (100,000 - eval chunks) are taken.
  3. The union is shuffled with random.Random(0); the first n rows are the corpus of size n.
The eval questions are not in the corpus: they are the queries. Queries: the "question" field
of piaf_fr, xquad_en, xquad_en_q_de and xquad_en_q_es questions.jsonl, unique by text (the three
xquad sets ask the same English questions), a random.Random(0) sample of 1,000.

Cache (reused by later runs and by other benchmarks): in --cache-dir, corpus100k.jsonl (one row
per line, {"row", "source", "text"}, in corpus order), corpus100k.f32.npy (float32, unit-norm,
row i = line i, passage: prefix applied by the embedder), corpus100k.meta.json (composition,
embedding time) and queries1000.jsonl / queries1000.f32.npy.

Chroma: a PersistentClient on a temporary directory per (size, build setting), vectors and texts
added in batches of the client's maximum batch size; build time = the adds plus the first query
(which waits for the index). ef_search is then swept on the same collection with
collection.modify() and a reopened client (see open_collection); for each value, 20 warm-up
queries, then each query timed alone (collection.query with include=[], n_results=10). The
machine's 1-minute load average is recorded, as other work on it slows the timings.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import platform
import random
import re
import shutil
import sysconfig
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

EVAL_DIR = Path("/work/shared/eval")
QUERY_SETS = ("piaf_fr", "xquad_en", "xquad_en_q_de", "xquad_en_q_es")
CORPUS_SIZE = 100_000
SEED = 0
K = 10
EMBED_BATCH = 512
WARMUP = 20
MODEL = "multilingual-e5-small"
# build settings: (name, ef_construction, max_neighbors); ef_search is swept on each
BUILDS = (
    ("chroma-default", 100, 16),
    ("project", 200, 32),
    ("strong", 400, 48),
)
EF_SEARCH = (50, 100, 200, 400, 800)

SENTENCE_END = re.compile(r"(?<=[.!?…])\s+(?=[\"'«“„(¿¡]?[A-ZÀ-ÖØ-ÞĀ-Ž0-9])")


# -- corpus ------------------------------------------------------------------------------------


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in SENTENCE_END.split(text) if s.strip()]


def eval_chunks(eval_dir: Path) -> tuple[list[tuple[str, str]], dict[str, int]]:
    """(source, text) windows of 1-3 sentences of every unique eval passage."""
    seen_passages: set[str] = set()
    passages: Counter[str] = Counter()
    chunks: dict[str, str] = {}
    for path in sorted(eval_dir.glob("*/documents.jsonl")):
        source = "eval:" + path.parent.name.removesuffix("_mini")
        for line in path.read_text(encoding="utf-8").splitlines():
            text = json.loads(line)["text"]
            if text in seen_passages:
                continue
            seen_passages.add(text)
            passages[source] += 1
            sentences = split_sentences(text)
            for width in (1, 2, 3):
                for i in range(len(sentences) - width + 1):
                    chunk = " ".join(sentences[i : i + width])
                    if len(chunk) >= 20:
                        chunks.setdefault(chunk, source)
    return [(source, text) for text, source in chunks.items()], dict(passages)


def python_files() -> Iterator[tuple[str, Path]]:
    roots = [("docstring:stdlib", Path(sysconfig.get_paths()["stdlib"]))]
    roots.append(("docstring:site-packages", Path(sysconfig.get_paths()["purelib"])))
    for source, root in roots:
        for path in sorted(root.rglob("*.py")):
            if source == "docstring:stdlib" and "site-packages" in path.parts:
                continue
            yield source, path


def docstring_paragraphs() -> list[tuple[str, str]]:
    """(source, paragraph) for every acceptable docstring paragraph, unique, in path order."""
    kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    seen: dict[str, str] = {}
    for source, path in python_files():
        try:
            tree = ast.parse(path.read_bytes())
        except (SyntaxError, ValueError, OSError, RecursionError):
            continue
        for node in ast.walk(tree):
            if not isinstance(node, kinds):
                continue
            doc = ast.get_docstring(node, clean=True)
            if not doc:
                continue
            for para in re.split(r"\n\s*\n", doc):
                text = " ".join(line.strip() for line in para.splitlines()).strip()
                if _is_prose(text):
                    seen.setdefault(text, source)
    return [(source, text) for text, source in seen.items()]


def _is_prose(text: str) -> bool:
    if not 80 <= len(text) <= 1000 or ">>>" in text or len(text.split()) < 8:
        return False
    letters = sum(c.isalpha() or c == " " for c in text)
    return letters / len(text) >= 0.75


def build_corpus(eval_dir: Path, size: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    chunks, passages = eval_chunks(eval_dir)
    if len(chunks) > size:
        raise SystemExit(f"{len(chunks)} eval chunks already exceed the corpus size {size}")
    taken = {text for _, text in chunks}
    extra = [(s, t) for s, t in docstring_paragraphs() if t not in taken]
    random.Random(SEED).shuffle(extra)
    if len(chunks) + len(extra) < size:
        raise SystemExit(f"only {len(chunks) + len(extra)} texts found, {size} needed")
    rows = chunks + extra[: size - len(chunks)]
    random.Random(SEED).shuffle(rows)
    corpus = [{"row": i, "source": s, "text": t} for i, (s, t) in enumerate(rows)]
    composition = {
        "eval_passages_by_set": passages,
        "chunks_by_source": dict(sorted(Counter(s for s, _ in rows).items())),
        "docstring_paragraphs_available": len(extra),
        "mean_chars": round(sum(len(t) for _, t in rows) / len(rows), 1),
    }
    return corpus, composition


# -- embedding ---------------------------------------------------------------------------------


def make_embedder() -> Any:
    import torch

    from models.embedders import SentenceTransformerEmbedder
    from rag.config import Settings

    torch.set_num_threads(2)
    return SentenceTransformerEmbedder(MODEL, models_dir=Settings().models_dir)


def embed_texts(emb: Any, texts: list[str], partial: Path) -> tuple[np.ndarray, float]:
    """Passage vectors in the order of `texts`, embedded shortest first (little padding).

    Progress is saved to `partial` every 20 batches, and an interrupted run resumes from it.
    Returns the vectors and the seconds spent embedding in this run.
    """
    order = sorted(range(len(texts)), key=lambda i: (len(texts[i]), i))
    done = np.load(partial) if partial.exists() else np.zeros((0, emb.dim), dtype=np.float32)
    parts = [done]
    n_done, start = len(done), time.perf_counter()
    for b, lo in enumerate(range(n_done, len(order), EMBED_BATCH), 1):
        batch = [texts[i] for i in order[lo : lo + EMBED_BATCH]]
        parts.append(np.asarray(emb.embed_documents(batch), dtype=np.float32))
        got, spent = lo + len(batch), time.perf_counter() - start
        rate = (got - n_done) / spent
        print(
            f"embedded {got}/{len(texts)}  {rate:.0f} texts/s  "
            f"eta {(len(texts) - got) / rate / 60:.1f} min",
            flush=True,
        )
        if b % 20 == 0:
            np.save(partial, np.concatenate(parts))
    seconds = time.perf_counter() - start
    sorted_vectors = np.concatenate(parts)
    vectors = np.empty_like(sorted_vectors)
    vectors[np.array(order)] = sorted_vectors
    return vectors, seconds


def load_corpus(cache: Path, eval_dir: Path) -> tuple[list[dict[str, Any]], np.ndarray, dict]:
    texts_path, vec_path = cache / "corpus100k.jsonl", cache / "corpus100k.f32.npy"
    meta_path = cache / "corpus100k.meta.json"
    if texts_path.exists() and vec_path.exists() and meta_path.exists():
        rows = [json.loads(line) for line in texts_path.read_text(encoding="utf-8").splitlines()]
        vectors = np.load(vec_path)
        if len(rows) == len(vectors) == CORPUS_SIZE:
            print(f"corpus: cached, {len(rows)} rows from {cache}", flush=True)
            return rows, vectors, json.loads(meta_path.read_text())
    cache.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    rows, composition = build_corpus(eval_dir, CORPUS_SIZE)
    print(f"corpus: built {len(rows)} rows in {time.perf_counter() - t:.0f} s", flush=True)
    with texts_path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    texts = [r["text"] for r in rows]
    digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
    partial = cache / f"corpus100k.{digest}.partial.npy"
    vectors, seconds = embed_texts(make_embedder(), texts, partial)
    np.save(vec_path, vectors)
    partial.unlink(missing_ok=True)
    meta = {
        "model": MODEL,
        "rows": len(rows),
        "sha256_16": digest,
        "composition": composition,
        "embedding": {
            "seconds": round(seconds, 1),
            "texts_per_s": round(len(rows) / seconds, 1),
            "batch": EMBED_BATCH,
            "torch_threads": 2,
            "note": "seconds of the run that finished the embedding (resumed runs count less)",
        },
    }
    meta_path.write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    return rows, vectors, meta


def load_queries(cache: Path, eval_dir: Path, n: int) -> tuple[list[dict], np.ndarray]:
    texts_path, vec_path = cache / f"queries{n}.jsonl", cache / f"queries{n}.f32.npy"
    if texts_path.exists() and vec_path.exists():
        rows = [json.loads(line) for line in texts_path.read_text(encoding="utf-8").splitlines()]
        return rows, np.load(vec_path)
    pool: dict[str, str] = {}
    for name in QUERY_SETS:
        for line in (eval_dir / name / "questions.jsonl").read_text(encoding="utf-8").splitlines():
            pool.setdefault(json.loads(line)["question"], name)
    questions = sorted(pool)
    rows = [{"set": pool[q], "question": q} for q in random.Random(SEED).sample(questions, n)]
    emb = make_embedder()
    vectors = np.stack([emb.embed_query(r["question"]) for r in rows]).astype(np.float32)
    with texts_path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    np.save(vec_path, vectors)
    return rows, vectors


# -- measurement -------------------------------------------------------------------------------


def exact_top_k(corpus: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    scores = queries @ corpus.T
    top = np.argpartition(-scores, k, axis=1)[:, :k]
    return np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, 1), 1), 1)


def exact_latency_ms(corpus: np.ndarray, queries: np.ndarray, k: int) -> dict[str, float]:
    """One query at a time with numpy, as a brute-force baseline."""
    times = []
    for q in queries[:200]:
        t = time.perf_counter()
        np.argpartition(-(corpus @ q), k)[:k]
        times.append(time.perf_counter() - t)
    return _percentiles(times)


def _percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.array(seconds) * 1000
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p95_ms": round(float(np.percentile(ms, 95)), 3),
    }


def open_collection(path: str) -> Any:
    """The benchmark collection, from a freshly started Chroma client.

    Chroma keeps a loaded index in memory with the ef_search it was loaded with: after
    collection.modify(), queries in the same client still use the old value (checked with
    chromadb 1.5.9). Dropping the client's cached system and reopening applies the new value.
    """
    import chromadb
    from chromadb.api.client import SharedSystemClient
    from chromadb.config import Settings as ChromaSettings

    SharedSystemClient.clear_system_cache()
    client = chromadb.PersistentClient(
        path=path, settings=ChromaSettings(anonymized_telemetry=False)
    )
    return client.get_or_create_collection(name="bench", embedding_function=None)


def chroma_build(
    path: str, vectors: np.ndarray, texts: list[str], ef_construction: int, max_neighbors: int
) -> float:
    """Build a collection at `path`; returns the seconds of the adds and the first query."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    client = chromadb.PersistentClient(
        path=path, settings=ChromaSettings(anonymized_telemetry=False)
    )
    hnsw = {
        "space": "cosine",
        "ef_construction": ef_construction,
        "ef_search": 100,
        "max_neighbors": max_neighbors,
    }
    col = client.create_collection(
        name="bench",
        embedding_function=None,
        configuration={"hnsw": hnsw},  # type: ignore[arg-type]
    )
    step = client.get_max_batch_size()
    t = time.perf_counter()
    for lo in range(0, len(vectors), step):
        col.add(
            ids=[str(i) for i in range(lo, min(lo + step, len(vectors)))],
            embeddings=vectors[lo : lo + step],
            documents=texts[lo : lo + step],
        )
    col.query(query_embeddings=vectors[:1], n_results=K, include=[])
    return time.perf_counter() - t


def chroma_sweep(path: str, queries: np.ndarray, exact: np.ndarray, ef: int) -> dict[str, Any]:
    """Recall@10 and single-query latency of the collection at `path` with this ef_search."""
    open_collection(path).modify(configuration={"hnsw": {"ef_search": ef}})
    col = open_collection(path)
    applied = col.configuration["hnsw"]["ef_search"]
    if applied != ef:
        raise RuntimeError(f"ef_search is {applied} after setting it to {ef}")
    for q in queries[:WARMUP]:
        col.query(query_embeddings=q[None], n_results=K, include=[])
    times, recalls = [], []
    for q, truth in zip(queries, exact):
        t = time.perf_counter()
        res = col.query(query_embeddings=q[None], n_results=K, include=[])
        times.append(time.perf_counter() - t)
        got = {int(i) for i in res["ids"][0]}
        recalls.append(len(got & set(truth.tolist())) / K)
    r = np.array(recalls)
    return {
        "ef_search": ef,
        "recall_at_10": round(float(r.mean()), 4),
        "queries_below_0.9": int((r < 0.9).sum()),
        "min_recall": float(r.min()),
        **_percentiles(times),
    }


def run_size(
    n: int, vectors: np.ndarray, texts: list[str], queries: np.ndarray, ef_values: list[int]
) -> dict[str, Any]:
    corpus = vectors[:n]
    exact = exact_top_k(corpus, queries, K)
    result: dict[str, Any] = {
        "n": n,
        "load_average_1m_at_start": round(os.getloadavg()[0], 2),
        "exact_numpy": exact_latency_ms(corpus, queries, K),
    }
    builds = []
    for name, ef_c, m in BUILDS:
        tmp = tempfile.mkdtemp(prefix="ragchat-hnsw-")
        try:
            build_s = chroma_build(tmp, corpus, texts[:n], ef_c, m)
            print(f"n={n} {name}: built in {build_s:.1f} s", flush=True)
            sweep = []
            for ef in ef_values:
                row = chroma_sweep(tmp, queries, exact, ef)
                print(
                    f"  ef_search={ef}: recall@10 {row['recall_at_10']:.4f}  "
                    f"p50 {row['p50_ms']:.2f} ms  p95 {row['p95_ms']:.2f} ms",
                    flush=True,
                )
                sweep.append(row)
            builds.append(
                {
                    "build": name,
                    "ef_construction": ef_c,
                    "max_neighbors": m,
                    "build_s": round(build_s, 2),
                    "ef_search": sweep,
                }
            )
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    result["builds"] = builds
    result["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    return result


# -- report ------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    import chromadb

    cpu = platform.processor()
    meminfo = Path("/proc/meminfo")
    ram_gib = None
    if Path("/proc/cpuinfo").exists():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    if meminfo.exists():
        kib = int(meminfo.read_text().split("MemTotal:")[1].split()[0])
        ram_gib = round(kib / 2**20, 1)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": ram_gib,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "chromadb": chromadb.__version__,
        "numpy": np.__version__,
    }


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "| n | build (ef_construction / M) | build s | ef_search | recall@10 | p50 ms | p95 ms |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for size in report["sizes"]:
        for b in size["builds"]:
            label = f"{b['build']} ({b['ef_construction']} / {b['max_neighbors']})"
            for row in b["ef_search"]:
                lines.append(
                    f"| {size['n']:,} | {label} | {b['build_s']:.1f} | {row['ef_search']} | "
                    f"{row['recall_at_10']:.4f} | {row['p50_ms']:.2f} | {row['p95_ms']:.2f} |"
                )
        ex = size["exact_numpy"]
        lines.append(
            f"| {size['n']:,} | exact (numpy, brute force) | - | - | 1.0000 | "
            f"{ex['p50_ms']:.2f} | {ex['p95_ms']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", default="1000,10000,100000", help="corpus sizes, comma-separated"
    )
    parser.add_argument("--queries", type=int, default=1000, help="eval questions used as queries")
    parser.add_argument(
        "--ef-search",
        default=",".join(map(str, EF_SEARCH)),
        help="ef_search values swept on each build, comma-separated",
    )
    parser.add_argument(
        "--cache-dir", type=Path, default=Path.home() / ".cache" / "ragchat" / "bench"
    )
    parser.add_argument("--eval-dir", type=Path, default=EVAL_DIR)
    parser.add_argument("--out", type=Path, default=Path("bench/results/hnsw_recall.json"))
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    ef_values = [int(s) for s in args.ef_search.split(",")]
    if max(sizes) > CORPUS_SIZE:
        parser.error(f"sizes must be at most {CORPUS_SIZE}")

    rows, vectors, meta = load_corpus(args.cache_dir, args.eval_dir)
    questions, queries = load_queries(args.cache_dir, args.eval_dir, args.queries)
    texts = [r["text"] for r in rows]
    report: dict[str, Any] = {
        "machine": machine(),
        "model": MODEL,
        "k": K,
        "corpus": meta,
        "queries": {
            "n": len(questions),
            "by_set": dict(sorted(Counter(q["set"] for q in questions).items())),
        },
        "target": "recall@10 >= 0.98 with query time < 10 ms at 100k",
        "sizes": [run_size(n, vectors, texts, queries, ef_values) for n in sizes],
    }
    table = markdown(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    args.out.with_suffix(".md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
