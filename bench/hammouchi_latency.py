"""Latency of the Hammouchi question with the default model, from a fresh data directory.

Measures, in one process: assembling the default GGUF from its packaged parts, ingesting the
sample article, loading the model, then asking "Who did Hammouchi meet?" N times (the first
answer includes model loading; the later ones reuse the loaded model and its prompt cache).

    .venv/bin/python bench/hammouchi_latency.py [--repeats 3] [--out bench/results/latency.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from models.weights import QWEN_CODER_1_5B, assemble_gguf
from rag import SAMPLE_CORPUS, Chatbot, Settings

QUESTION = "Who did Hammouchi meet?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="ragchat-bench-") as tmp:
        settings = Settings(data_dir=tmp)
        t = time.perf_counter()
        assemble_gguf(QWEN_CODER_1_5B, settings.models_dir)
        assembly = time.perf_counter() - t

        bot = Chatbot(settings)
        t = time.perf_counter()
        bot.ingest([SAMPLE_CORPUS])
        ingest = time.perf_counter() - t

        runs = []
        for i in range(args.repeats):
            t = time.perf_counter()
            answer = bot.ask(QUESTION)
            runs.append(
                {
                    "run": i + 1,
                    "wall_s": round(time.perf_counter() - t, 2),
                    "first_token_s": round(answer.timings["first_token"], 2),
                    "total_s": round(answer.timings["total"], 2),
                    "retrieval_s": round(answer.timings["retrieval"], 3),
                    **answer.usage,
                    "answer": answer.text,
                    "cited_passage_has_names": any(
                        "Avril Haines" in c.chunk.text for c in answer.citations
                    ),
                }
            )
    result = {
        "command": "python bench/hammouchi_latency.py",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "model": settings.llm,
        "embedder": settings.embedder,
        "assembly_s": round(assembly, 1),
        "ingest_sample_s": round(ingest, 1),
        "runs": runs,
    }
    text = json.dumps(result, indent=2, ensure_ascii=False)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
