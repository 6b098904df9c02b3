"""Latency of the Hammouchi question with the default model, from a fresh data directory.

Measures, in one process: assembling the default GGUF from its packaged parts, ingesting the
sample article, the warm-up the chat does when it opens (`Chatbot.warm`: loading the models
and reading the article once, its KV state kept in <data_dir>/kv), then asking "Who did
Hammouchi meet?" N times; then the chat opened again (a new Chatbot and model instance on the
same data directory, in the same process: the OS file cache is warm), whose warm-up restores
the article's state from disk, and its first answer.

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

        t = time.perf_counter()
        bot.warm()
        warm = time.perf_counter() - t
        runs = [_ask(bot, i + 1) for i in range(args.repeats)]

        reopened = Chatbot(settings)
        t = time.perf_counter()
        restored = reopened.warm()
        reopened_warm = time.perf_counter() - t
        reopened_run = _ask(reopened, 1)
    result = {
        "command": "python bench/hammouchi_latency.py",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "model": settings.llm,
        "embedder": settings.embedder,
        "assembly_s": round(assembly, 1),
        "ingest_sample_s": round(ingest, 1),
        "warm_s": round(warm, 2),
        "runs": runs,
        "reopened": {
            "warm_s": round(reopened_warm, 2),
            "restored_tokens": restored,
            "first": reopened_run,
        },
    }
    text = json.dumps(result, indent=2, ensure_ascii=False)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")


def _ask(bot: Chatbot, run: int) -> dict[str, object]:
    t = time.perf_counter()
    answer = bot.ask(QUESTION)
    return {
        "run": run,
        "wall_s": round(time.perf_counter() - t, 2),
        "first_token_s": round(answer.timings["first_token"], 2),
        "total_s": round(answer.timings["total"], 2),
        "retrieval_s": round(answer.timings["retrieval"], 3),
        **answer.usage,
        "answer": answer.text,
        "cited_passage_has_names": any("Avril Haines" in c.chunk.text for c in answer.citations),
    }


if __name__ == "__main__":
    main()
