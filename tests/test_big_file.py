"""A 200 MB text file: ingested in sections, ragchat's own memory bounded, with progress (slow).

Embedding 200 MB with a real model takes hours on 2 cores, so this test embeds with a
hashing embedder (words hashed into 64 dimensions); everything else is real: the loader,
chunking, language detection, Chroma and the keyword index. It runs in a child process so
that the memory figure is that ingest's alone.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SIZE = 200 * 1024 * 1024
CHILD = r"""
import json, resource, sys, time, tracemalloc, zlib
import numpy as np
from rag import Chatbot, Settings

class HashingEmbedder:
    name, dim = "hashing-64", 64
    def _one(self, text):
        v = np.bincount([zlib.crc32(w.encode()) % 64 for w in text.lower().split()], minlength=64)
        v = v.astype(np.float32) + 1e-3
        return v / np.linalg.norm(v)
    def embed_documents(self, texts):
        return np.stack([self._one(t) for t in texts]) if texts else np.zeros((0, 64), np.float32)
    def embed_query(self, text):
        return self._one(text)

path, store = sys.argv[1], sys.argv[2]
bot = Chatbot(Settings(store=store, data_dir=store + "-data", chunk_size=4000, chunk_overlap=0),
              embedder=HashingEmbedder())
_ = bot.keyword
tracemalloc.start()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
calls = []
t = time.perf_counter()
report = bot.ingest([path], progress=lambda done, total, p: calls.append(p))
seconds = time.perf_counter() - t
grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
python_peak = tracemalloc.get_traced_memory()[1] / 2**20
ids = sorted(d["doc_id"] for d in bot.documents())
print(json.dumps({"documents": report.documents, "chunks": report.chunks,
                  "skipped": [s.reason for s in report.skipped], "rss_grown_mib": round(grown),
                  "python_peak_mib": round(python_peak),
                  "progress": calls[:3] + calls[-2:], "progress_calls": len(calls),
                  "seconds": round(seconds), "ids": [ids[0], ids[-1]], "n_ids": len(ids),
                  "end": bot.store.get_chunks(ids[-1])[-1].text[-60:],
                  "stored": bot.store.count()}))
"""


def _write_big_file(path: Path) -> None:
    rng = random.Random(0)
    words = [
        "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 9)))
        for _ in range(3000)
    ]
    paragraphs = [
        ". ".join(" ".join(rng.choices(words, k=14)).capitalize() for _ in range(6)) + ".\n\n"
        for _ in range(500)
    ]
    written, n = 0, 0
    with path.open("w", encoding="utf-8") as f:
        while written < SIZE:
            text = f"Paragraph {n}. " + paragraphs[n % len(paragraphs)]
            f.write(text)
            written += len(text)
            n += 1
        f.write("The closing paragraph mentions a zebra and quartz.\n")


def test_a_200_mb_text_file_is_streamed_with_bounded_memory(tmp_path: Path) -> None:
    big = tmp_path / "big.txt"
    _write_big_file(big)
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(big), str(tmp_path / "store")],
        capture_output=True,
        text=True,
        timeout=3000,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    print(got)
    assert got["skipped"] == []
    assert got["documents"] >= 200  # sections of about a million characters
    assert got["stored"] == got["chunks"]
    assert got["progress"][0].endswith("big.txt (part 1)")  # progress while the file is read
    assert got["progress_calls"] >= got["documents"]
    assert got["n_ids"] == got["documents"] and got["ids"][-1].endswith(
        f"#part{got['documents']:05d}"
    )
    assert "zebra and quartz" in got["end"]  # the file was read to its end
    # ragchat's own memory (the Python heap) stays far below the file's size; the process also
    # holds what Chroma keeps in memory for the 50,000 chunks it stores (reported, not bounded)
    assert got["python_peak_mib"] < 100, got
