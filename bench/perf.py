"""ragchat against the engines it wraps, measured side by side in one process run (issue 6).

    .venv/bin/python bench/perf.py [--only ingest,startup,answer] [--answers 20]
    .venv/bin/python bench/perf.py --smoke      # seconds; what CI runs (tests/test_bench.py)

Results: bench/results/perf.json and a Markdown table in bench/results/perf.md.

ingest   For each set (the full piaf_fr, xquad_en, xquad_en_q_es and xquad_en_q_de document
         pools): first the floor, the embedder alone embedding the chunk texts that ragchat's
         own loader and chunker make of the file (`embed_documents`, the pipeline's batch of
         256); then `Chatbot.ingest` of the same file into a fresh store (reading, language
         detection, chunking, embedding, Chroma and keyword-index writes). Chunks/s of both
         and their ratio; then the same ingest again, every document unchanged (re-ingestion,
         as a share of the first). Peak resident memory of the process after each set.
startup  `ragchat chat` in a subprocess on a fresh store (so it ingests the sample article,
         as on first use; models already built in the data dir): seconds until the page
         answers HTTP 200, then until the first answer arrives through gradio_client.
answer   The Hammouchi question and N evaluation questions (half piaf_fr_mini, half
         xquad_en_q_de_mini, a seeded sample, asked over the stores of the ingest step):
         ragchat's `Chatbot.stream` (retrieval included; time to the first text it yields;
         its generator keeps the system prompt's KV cache between questions) against raw
         llama-cpp-python streaming the identical messages from a second copy of the model
         loaded the same way (`Llama.create_chat_completion`, reset first: the whole prompt
         evaluated, the floor without a cache), alternating which goes first. Time to first
         token, total, prompt tokens and how many of them ragchat took from its cache,
         tokens/s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from rag import SAMPLE_CORPUS, Chatbot, Settings, prompts
from rag.chunking import chunk_document
from rag.language import detect_language
from rag.loaders import load_file

EVAL = Path(os.environ.get("RAGCHAT_EVAL_DATA", Path(__file__).parents[1] / "../shared/eval"))
SETS = ("piaf_fr", "xquad_en", "xquad_en_q_es", "xquad_en_q_de")
QUESTION = "Who did Hammouchi meet?"
BATCH = 256  # rag/pipeline.py _EMBED_BATCH


def peak_rss_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


# -- ingestion ---------------------------------------------------------------------------------


def chunk_texts(path: Path, settings: Settings) -> list[str]:
    return [
        c.text
        for doc in load_file(path)
        for c in chunk_document(doc, settings.chunk_size, settings.chunk_overlap)
    ]


def bench_ingest(name: str, path: Path, settings: Settings, bot_embedder: Any) -> dict[str, Any]:
    texts = chunk_texts(path, settings)
    t = time.perf_counter()
    for i in range(0, len(texts), BATCH):
        bot_embedder.embed_documents(texts[i : i + BATCH])
    floor_s = time.perf_counter() - t

    bot = Chatbot(settings, embedder=bot_embedder)
    t = time.perf_counter()
    report = bot.ingest([path])
    ingest_s = time.perf_counter() - t
    assert report.chunks == len(texts), (report.chunks, len(texts))
    t = time.perf_counter()
    again = bot.ingest([path])
    reingest_s = time.perf_counter() - t
    assert again.documents == 0 and again.unchanged == report.documents
    row = {
        "set": name,
        "documents": report.documents,
        "chunks": report.chunks,
        "embedder_alone_s": round(floor_s, 2),
        "embedder_alone_chunks_per_s": round(len(texts) / floor_s, 1),
        "ingest_s": round(ingest_s, 2),
        "ingest_chunks_per_s": round(report.chunks / ingest_s, 1),
        "ratio": round(floor_s / ingest_s, 3),
        "reingest_s": round(reingest_s, 2),
        "reingest_share": round(reingest_s / ingest_s, 4),
        "peak_rss_mib": peak_rss_mib(),
    }
    print(json.dumps(row), flush=True)
    return row


# -- startup -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bench_startup(store: Path, data_dir: str | None, timeout: float = 600) -> dict[str, Any]:
    from gradio_client import Client

    port = free_port()
    env = {**os.environ, "RAGCHAT_STORE": str(store), "GRADIO_ANALYTICS_ENABLED": "False"}
    if data_dir:
        env["RAGCHAT_DATA_DIR"] = data_dir
    ragchat = str(Path(sys.executable).with_name("ragchat"))
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [ragchat, "chat", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        page_s = None
        while time.perf_counter() - t0 < timeout and proc.poll() is None:
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        page_s = time.perf_counter() - t0
                        break
            except OSError:
                time.sleep(0.1)
        if page_s is None:
            raise RuntimeError(f"ragchat chat did not serve {url} (exit {proc.poll()})")
        client = Client(url, verbose=False)
        history, *_ = client.predict(QUESTION, [], None, api_name="/respond")
        answer_s = time.perf_counter() - t0
        content = next(m["content"] for m in history if m["role"] == "assistant")
        text = content if isinstance(content, str) else "".join(p.get("text", "") for p in content)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    row = {
        "page_s": round(page_s, 2),
        "first_answer_s": round(answer_s, 2),
        "answer": text,
    }
    print(json.dumps(row, ensure_ascii=False), flush=True)
    return row


# -- answers -----------------------------------------------------------------------------------


def ragchat_answer(bot: Chatbot, question: str) -> dict[str, Any]:
    from rag.types import final_answer

    t0 = time.perf_counter()
    first = last = None

    def timed(piece: str) -> None:
        nonlocal first, last
        if piece:
            last = time.perf_counter() - t0
            first = last if first is None else first

    answer = final_answer(bot.stream(question), timed)
    total = time.perf_counter() - t0
    usage = answer.usage
    return {
        "first_token_s": round(first if first is not None else total, 3),
        # the last text, before the final Answer (whose citation check is not generation)
        "last_token_s": round(last if last is not None else total, 3),
        "total_s": round(total, 3),
        "check_s": round(answer.timings.get("check", 0.0), 3),
        "prompt_tokens": usage.get("prompt_tokens"),
        "completion_tokens": usage.get("completion_tokens"),
        "cached_prompt_tokens": usage.get("cached_prompt_tokens", 0),
        "hits": answer.hits,
        "text": answer.text,
    }


def raw_answer(llm: Any, messages: list[dict[str, str]], settings: Settings) -> dict[str, Any]:
    llm.reset()
    t0 = time.perf_counter()
    first = last = None
    pieces = 0
    for part in llm.create_chat_completion(
        messages=messages,
        max_tokens=settings.max_tokens,
        temperature=settings.temperature,
        seed=settings.seed,
        stream=True,
    ):
        if part["choices"][0]["delta"].get("content"):
            pieces += 1
            last = time.perf_counter() - t0
            first = last if first is None else first
    total = time.perf_counter() - t0
    return {
        "first_token_s": round(first if first is not None else total, 3),
        "last_token_s": round(last if last is not None else total, 3),
        "total_s": round(total, 3),
        "completion_tokens": pieces,
    }


def tokens_per_s(row: dict[str, Any]) -> float | None:
    """Generation speed: tokens after the first, over the time from the first to the last."""
    n, span = row.get("completion_tokens") or 0, row["last_token_s"] - row["first_token_s"]
    return round((n - 1) / span, 2) if n > 1 and span > 0 else None


def bench_answers(
    bots: dict[str, Chatbot], sample_bot: Chatbot, raw_llm: Any, n: int, seed: int
) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    questions: list[tuple[str, Chatbot, str]] = [("sample", sample_bot, QUESTION)]
    for name in ("piaf_fr", "xquad_en_q_de") if n else ():
        rows = [json.loads(line) for line in (EVAL / f"{name}_mini" / "questions.jsonl").open()]
        for q in rng.sample(rows, n // 2):
            questions.append((name, bots[name], q["question"]))
    rows = []
    for i, (name, bot, question) in enumerate(questions):
        order = ("raw", "ragchat") if i % 2 else ("ragchat", "raw")
        got: dict[str, dict[str, Any]] = {}
        for who in order:
            if who == "ragchat":
                got["ragchat"] = ragchat_answer(bot, question)
            else:
                hits = bot.search(question)
                messages = prompts.build_messages(question, hits, detect_language(question))
                got["raw"] = raw_answer(raw_llm, messages, bot.settings)
        r, w = got["ragchat"], got["raw"]
        row = {
            "set": name,
            "question": question,
            "order": order[0] + " first",
            "prompt_tokens": r["prompt_tokens"],
            "ragchat": {k: v for k, v in r.items() if k not in ("hits", "text")},
            "raw": w,
            "ttft_ratio": round(r["first_token_s"] / w["first_token_s"], 3),
            "ragchat_tokens_per_s": tokens_per_s(r),
            "raw_tokens_per_s": tokens_per_s(w),
            "answer": r["text"],
        }
        print(json.dumps(row, ensure_ascii=False), flush=True)
        rows.append(row)
    return rows


# -- report ------------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def markdown(report: dict[str, Any]) -> str:
    out = []
    if report.get("ingest"):
        out += [
            "| set | chunks | embedder alone chunks/s | ragchat ingest chunks/s | ratio | "
            "re-ingest s (share) | peak RSS MiB |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for r in report["ingest"]:
            out.append(
                f"| {r['set']} | {r['chunks']} | {r['embedder_alone_chunks_per_s']} | "
                f"{r['ingest_chunks_per_s']} | {r['ratio']:.3f} | {r['reingest_s']} "
                f"({100 * r['reingest_share']:.1f} %) | {r['peak_rss_mib']} |"
            )
        out.append("")
    if report.get("startup"):
        s = report["startup"]
        out += [f"Startup: page {s['page_s']} s, first answer {s['first_answer_s']} s.", ""]
    if report.get("answer"):
        rows = report["answer"]
        out += [
            "| questions | ragchat first token s (median) | raw first token s (median) | "
            "TTFT ratio median / max | ragchat tokens/s | raw tokens/s | prompt tokens median | "
            "prompt tokens from ragchat's cache, median |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        rt = [r["ragchat_tokens_per_s"] for r in rows if r["ragchat_tokens_per_s"]]
        wt = [r["raw_tokens_per_s"] for r in rows if r["raw_tokens_per_s"]]
        out.append(
            f"| {len(rows)} | {median([r['ragchat']['first_token_s'] for r in rows]):.2f} | "
            f"{median([r['raw']['first_token_s'] for r in rows]):.2f} | "
            f"{median([r['ttft_ratio'] for r in rows]):.3f} / "
            f"{max(r['ttft_ratio'] for r in rows):.3f} | "
            f"{median(rt) if rt else '-'} | {median(wt) if wt else '-'} | "
            f"{median([r['prompt_tokens'] or 0 for r in rows]):.0f} | "
            f"{median([r['ragchat'].get('cached_prompt_tokens') or 0 for r in rows]):.0f} |"
        )
        out.append("")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="ingest,startup,answer")
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--answers", type=int, default=20, help="evaluation questions asked")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="tiny and fast: CI's check")
    parser.add_argument("--out", type=Path, default=Path("bench/results/perf.json"))
    args = parser.parse_args()
    only = set(args.only.split(","))

    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    from rag import factory

    tmp = Path(tempfile.mkdtemp(prefix="ragchat-perf-"))
    base = Settings.from_env(store=str(tmp / "store"))
    if args.smoke:  # the small models and the sample article: seconds, for CI
        base = base.replace(embedder="all-MiniLM-L6-v2", llm="smollm2-135m-instruct")
    report: dict[str, Any] = {
        "command": "python bench/perf.py " + " ".join(sys.argv[1:]),
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "load_1min_at_start": os.getloadavg()[0],
        },
        "embedder": base.embedder,
        "llm": base.llm,
    }
    try:
        embedder = factory.build_embedder(base)
        embedder.embed_query("warm up")
        sets = (
            [("sample", SAMPLE_CORPUS)]
            if args.smoke
            else [(s, EVAL / s / "documents.jsonl") for s in args.sets.split(",")]
        )
        stores = {name: base.replace(store=str(tmp / f"store-{name}")) for name, _ in sets}
        if "ingest" in only:
            report["ingest"] = [
                bench_ingest(name, path, stores[name], embedder) for name, path in sets
            ]
        if "startup" in only and not args.smoke:
            report["startup"] = bench_startup(
                tmp / "store-startup", os.environ.get("RAGCHAT_DATA_DIR")
            )
        if "answer" in only:
            generator = factory.build_generator(base)
            sample = Chatbot(
                base.replace(store=str(tmp / "store-sample-answers")),
                embedder=embedder,
                generator=generator,
            )
            sample.ingest([SAMPLE_CORPUS])
            bots = {
                name: Chatbot(stores[name], embedder=embedder, generator=generator)
                for name in ("piaf_fr", "xquad_en_q_de")
                if name in stores
            }
            if "ingest" not in only:  # the answers' stores, ingested without measuring
                for name, bot in bots.items():
                    bot.ingest([EVAL / name / "documents.jsonl"])
            n = 0 if args.smoke or len(bots) < 2 else args.answers
            raw_llm = factory.build_generator(base).llm  # the floor: a second, uncached copy
            report["answer"] = bench_answers(bots, sample, raw_llm, n, args.seed)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report["machine"]["load_1min_at_end"] = os.getloadavg()[0]
    table = markdown(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    args.out.with_suffix(".md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
