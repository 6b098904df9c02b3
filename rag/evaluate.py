"""Evaluation: a test set -> retrieval and answers -> per-question rows -> metrics with intervals.

A run directory holds `results.jsonl` (one row per question, appended as each finishes, so an
interrupted run keeps its work and `resume=True` continues it), `summary.json` (metrics with 95%
bootstrap intervals, settings, models and their file hashes, versions, machine) and
`report.html` (written by rag/report.py). Metric definitions live in rag/metrics.py.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import platform
import random
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from rag import metrics
from rag.citations import clean_markers
from rag.errors import ConfigError
from rag.language import detect_language
from rag.pipeline import Chatbot
from rag.records import sentence_records
from rag.types import Answer, Hit, final_answer

log = logging.getLogger(__name__)

K_MAX = 10
HIT_KS = (1, 3, 5, 10)
OUTCOMES_ANSWERED = ("correct", "wrong", "refused_wrongly")
OUTCOMES_UNANSWERABLE = ("refused_rightly", "answered_wrongly")

# progress(done, total, running summary of the main metrics)
EvalProgress = Callable[[int, int, dict[str, float]], None]


@dataclass(frozen=True, slots=True)
class EvalQuestion:
    id: str
    question: str
    answers: tuple[str, ...]
    context_id: str | None
    unanswerable: bool


@dataclass(frozen=True, slots=True)
class EvalResult:
    summary: dict[str, Any]
    rows: list[dict[str, Any]]
    out_dir: Path | None
    complete: bool  # False when interrupted before every question was done


def load_questions(path: str | Path) -> list[EvalQuestion]:
    """Read a test set: one `{"id", "question", "answers", "context_id"?, "unanswerable"?}`
    object per line."""
    questions = []
    seen: set[str] = set()
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                q = json.loads(line)
                item = EvalQuestion(
                    id=str(q.get("id") or f"line{lineno}"),
                    question=str(q["question"]),
                    # a cross-lingual question's answer may be given in the passage's
                    # language or in its own (`answers_question_lang`): either counts
                    answers=tuple(
                        str(a)
                        for a in [
                            *(q.get("answers") or ()),
                            *(q.get("answers_question_lang") or ()),
                        ]
                    ),
                    context_id=q.get("context_id"),
                    unanswerable=bool(q.get("unanswerable", False)),
                )
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise ConfigError(
                    f"{path}:{lineno}: not a test-set line ({e}); expected "
                    '{"id", "question", "answers": [...], "context_id"?, "unanswerable"?}.'
                ) from e
            if item.id in seen:
                raise ConfigError(f"{path}:{lineno}: duplicate question id {item.id!r}.")
            seen.add(item.id)
            questions.append(item)
    if not questions:
        raise ConfigError(f"{path} holds no questions.")
    return questions


def select(
    questions: list[EvalQuestion],
    *,
    limit: int | None = None,
    sample: int | None = None,
    seed: int = 0,
) -> list[EvalQuestion]:
    """A seeded random sample (kept in file order), then the first `limit`."""
    if sample is not None and sample < len(questions):
        keep = set(random.Random(seed).sample(range(len(questions)), sample))
        questions = [q for i, q in enumerate(questions) if i in keep]
    return questions[:limit] if limit is not None else questions


def evaluate_question(bot: Chatbot, q: EvalQuestion, *, retrieval_only: bool) -> dict[str, Any]:
    """Retrieve once (top K_MAX), answer from the top_k of those, and score."""
    t0 = time.perf_counter()
    hits = bot.search(q.question, k=K_MAX)
    retrieval_ms = (time.perf_counter() - t0) * 1000
    doc_ids = [h.chunk.record_id for h in hits]  # a .jsonl record's own id: the context_id
    rank = metrics.gold_rank(doc_ids, q.context_id) if q.context_id else None
    row: dict[str, Any] = {
        "id": q.id,
        "question": q.question,
        "answers": list(q.answers),
        "context_id": q.context_id,
        "unanswerable": q.unanswerable,
        "retrieved": [_hit_row(h) for h in hits],
        "gold_rank": rank,
        "retrieval_ms": round(retrieval_ms, 2),
    }
    if q.context_id:
        row.update({f"hit@{k}": metrics.hit_at(rank, k) for k in HIT_KS})
        row["mrr@10"] = metrics.reciprocal_rank(rank, 10)
    if not retrieval_only:
        answer = _answer(bot, q.question, hits[: bot.settings.top_k])
        row.update(score_answer(q, answer))
    row["outcome"] = outcome(row, retrieval_only)
    return row


def _answer(bot: Chatbot, question: str, hits: Sequence[Hit]) -> Answer:
    return final_answer(bot.stream(question, hits=hits))


def _hit_row(hit: Hit) -> dict[str, Any]:
    return {
        "doc_id": hit.chunk.record_id,
        "chunk_id": hit.chunk.id,
        "title": hit.chunk.title,
        "score": round(hit.score, 4),
        "similarity": None if hit.similarity is None else round(hit.similarity, 4),
        "text": hit.chunk.text,
    }


def score_answer(q: EvalQuestion, answer: Answer) -> dict[str, Any]:
    cited = [(c.chunk.record_id, c.chunk.text) for c in answer.citations]
    retrieved = [h.chunk.record_id for h in answer.hits]
    row: dict[str, Any] = {
        "answer": answer.text,
        "refused": answer.refused,
        "citations": [
            {"n": c.n, "doc_id": c.chunk.record_id, "chunk_id": c.chunk.id, "quote": c.quote}
            for c in answer.citations
        ],
        "has_citation": float(bool(answer.citations)) if not answer.refused else None,
        "first_token_s": round(answer.timings["first_token"], 3),  # the first words shown
        "first_generated_s": (
            round(answer.timings["first_generated"], 3)
            if "first_generated" in answer.timings
            else None
        ),
        "total_s": round(answer.timings["total"], 3),
        "check_s": round(answer.timings["check"], 3) if "check" in answer.timings else None,
        "verify_s": round(answer.timings["verify"], 3) if "verify" in answer.timings else None,
        "verified": answer.usage.get("verified"),
        "not_found_probability": answer.usage.get("not_found_probability"),
        "prompt_tokens": answer.usage.get("prompt_tokens"),
        "cached_prompt_tokens": answer.usage.get("cached_prompt_tokens"),
        "evidence_tokens": answer.usage.get("evidence_tokens"),
        "quote_support": answer.usage.get("quote_support"),
        "signals": list(answer.signals),
        "completion_tokens": answer.usage.get("completion_tokens"),
        "raw": answer.raw,
        "sentences": sentence_records(answer),
        "question_lang": answer.language,
    }
    if not answer.refused:
        own = own_words(clean_markers(answer.text, 0))  # without markers, quotes and names
        row["answer_lang"] = detect_language(own) if own else None
        row["language_ok"] = None if not own else float(row["answer_lang"] == answer.language)
        if answer.sentences:
            row["supported_share"] = sum(s.supported for s in answer.sentences) / len(
                answer.sentences
            )
    if q.unanswerable:
        row["refused_unanswerable"] = float(answer.refused)
        return row
    text = "" if answer.refused else answer.text
    row.update(
        em=metrics.exact_match(text, q.answers),
        f1=metrics.token_f1(text, q.answers),
        contains=metrics.contains_gold(text, q.answers),
        refused_answerable=float(answer.refused),
        citation_precision=None
        if answer.refused
        else metrics.citation_precision(cited, q.context_id, q.answers),
        citation_recall=None
        if answer.refused
        else metrics.citation_recall([d for d, _ in cited], retrieved, q.context_id),
    )
    return row


_QUOTED = re.compile(r"«[^»]*»|“[^”]*”|\"[^\"]*\"")
_NAME_OR_NUMBER = re.compile(r"\b(?:[^\W\d_][\w'’-]*[A-Z]|[A-Z][\w'’-]*|\d[\d.,]*)\b", re.UNICODE)


def own_words(answer: str) -> str:
    """The answer's own words, whose language is measured: without quoted passage text, names
    and numbers, which stay as written in the source. Empty when fewer than two words are left
    ("Christopher Wray", "13-14 June 2022"): such an answer is in no language in particular."""
    rest = _NAME_OR_NUMBER.sub(" ", _QUOTED.sub(" ", answer))
    words = re.findall(r"[^\W\d_]{2,}", rest)
    return " ".join(words) if len(words) >= 2 else ""


def outcome(row: dict[str, Any], retrieval_only: bool) -> str:
    if retrieval_only:
        if row["context_id"] is None:
            return "no_gold"
        return "retrieved@5" if row.get("hit@5") else "missed@5"
    if row["unanswerable"]:
        return "refused_rightly" if row["refused"] else "answered_wrongly"
    if row["refused"]:
        return "refused_wrongly"
    return "correct" if row["contains"] or row["f1"] >= 0.5 else "wrong"


METRICS = (
    *(f"hit@{k}" for k in HIT_KS),
    "mrr@10",
    "contains",
    "em",
    "f1",
    "has_citation",
    "citation_precision",
    "citation_recall",
    "refused_unanswerable",
    "refused_answerable",
    "language_ok",
    "supported_share",
)
COSTS = (
    "retrieval_ms",
    "first_token_s",
    "first_generated_s",
    "total_s",
    "check_s",
    "verify_s",
    "prompt_tokens",
    "cached_prompt_tokens",
    "evidence_tokens",
    "completion_tokens",
)


def summarize(rows: Sequence[dict[str, Any]], seed: int = 0) -> dict[str, Any]:
    """Each metric's mean with its 95% bootstrap interval and count; costs' p50/p95."""
    out: dict[str, Any] = {"questions": len(rows), "metrics": {}, "costs": {}, "outcomes": {}}
    for name in METRICS:
        values = [r[name] for r in rows if r.get(name) is not None]
        if values:
            mean, low, high = metrics.bootstrap_ci(values, seed=seed)
            out["metrics"][name] = {"mean": mean, "low": low, "high": high, "n": len(values)}
    for name in COSTS:
        values = [r[name] for r in rows if r.get(name) is not None]
        if values:
            out["costs"][name] = {
                **metrics.percentiles(values),
                "mean": sum(values) / len(values),
                "n": len(values),
            }
    for r in rows:
        out["outcomes"][r["outcome"]] = out["outcomes"].get(r["outcome"], 0) + 1
    return out


def running(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """The main metrics so far, for progress bars."""
    shown = {}
    for name in ("hit@5", "mrr@10", "contains", "citation_precision"):
        values = [r[name] for r in rows if r.get(name) is not None]
        if values:
            shown[name] = sum(values) / len(values)
    return shown


def evaluate(
    questions: str | Path | Sequence[EvalQuestion],
    bot: Chatbot,
    *,
    retrieval_only: bool = False,
    out_dir: str | Path | None = None,
    resume: bool = False,
    limit: int | None = None,
    sample: int | None = None,
    seed: int = 0,
    progress: EvalProgress | None = None,
    run_info: dict[str, Any] | None = None,
    warm: bool = False,
) -> EvalResult:
    """Run a test set against `bot`'s store and return the summary and per-question rows.

    `warm`: before the first question, load the models and compute the fixed start of the
    prompts (`Chatbot.warm`, as the chat does when it opens); its time is recorded apart, as
    `warm_s` in the summary's run information, and the first question no longer includes it.

    With `out_dir`, rows are appended to results.jsonl as they finish and summary.json and
    report.html are written at the end, or when interrupted (KeyboardInterrupt is re-raised
    after saving). `resume=True` skips the questions results.jsonl already holds."""
    source = str(questions) if isinstance(questions, (str, Path)) else None
    items = load_questions(questions) if isinstance(questions, (str, Path)) else list(questions)
    items = select(items, limit=limit, sample=sample, seed=seed)
    out = Path(out_dir) if out_dir is not None else None
    rows: list[dict[str, Any]] = []
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        results = out / "results.jsonl"
        if resume and results.exists():
            wanted = {q.id for q in items}
            rows = [r for r in _read_rows(results) if r["id"] in wanted]
        elif results.exists() and results.stat().st_size:
            raise ConfigError(
                f"{out} already holds a run: pass --resume to continue it, or choose another --out."
            )
    done = {r["id"] for r in rows}
    started = time.perf_counter()
    warmed: dict[str, Any] = {}
    if warm and not retrieval_only:
        reused = bot.warm()
        warmed = {"warm_s": round(time.perf_counter() - started, 2), "warm_reused": reused}
    complete = False
    try:
        for q in items:
            if q.id in done:
                continue
            row = evaluate_question(bot, q, retrieval_only=retrieval_only)
            rows.append(row)
            if out is not None:
                with open(out / "results.jsonl", "a", encoding="utf-8") as f:
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
            if progress:
                progress(len(rows), len(items), running(rows))
        complete = True
    finally:
        summary = summarize(rows, seed=seed)
        summary["run"] = _run_info(
            bot,
            source,
            items,
            retrieval_only,
            sample,
            seed,
            limit,
            time.perf_counter() - started,
            complete,
            {**warmed, **(run_info or {})},
        )
        if out is not None:
            (out / "summary.json").write_text(
                json.dumps(summary, indent=2, ensure_ascii=False), encoding="utf-8"
            )
            from rag.report import write_report

            write_report(out, summary, rows)
    return EvalResult(summary=summary, rows=rows, out_dir=out, complete=complete)


def _read_rows(path: Path) -> list[dict[str, Any]]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut short by a kill: that question is redone
            continue
    return rows


def load_run(run_dir: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    run = Path(run_dir)
    if not (run / "summary.json").is_file():
        raise ConfigError(f"{run} is not an evaluation run (no summary.json).")
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    return summary, _read_rows(run / "results.jsonl")


def _sha256(path: str | Path) -> str | None:
    try:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            while block := f.read(8 << 20):
                digest.update(block)
        return digest.hexdigest()
    except OSError:
        return None


def _versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for pkg in (
        "ragchat",
        "chromadb",
        "sentence-transformers",
        "llama-cpp-python",
        "torch",
        "transformers",
        "gradio",
        "bm25s",
        "PyStemmer",
    ):
        try:
            out[pkg] = importlib_metadata.version(pkg)
        except importlib_metadata.PackageNotFoundError:
            continue
    return out


def _machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpus": os.cpu_count(),
    }
    try:
        with open("/proc/meminfo") as f:
            info["memory_gib"] = round(int(f.readline().split()[1]) / 2**20, 1)
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(
                (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), None
            )
    except OSError:
        pass
    return info


def _run_info(
    bot: Chatbot,
    source: str | None,
    items: Sequence[EvalQuestion],
    retrieval_only: bool,
    sample: int | None,
    seed: int,
    limit: int | None,
    seconds: float,
    complete: bool,
    extra: dict[str, Any] | None,
) -> dict[str, Any]:
    from models.weights import resolve_embedder

    location = Path(resolve_embedder(bot.settings.embedder, bot.settings.models_dir)[0])
    weights = next(location.glob("*.safetensors"), None) if location.is_dir() else None
    models: dict[str, Any] = {
        "embedder": {
            "name": bot.settings.embedder,
            "path": str(location),
            "sha256": _sha256(weights) if weights else None,
        }
    }
    if not retrieval_only:
        path = getattr(bot.generator, "model_path", None)
        models["llm"] = {
            "name": bot.settings.llm,
            "path": str(path) if path else None,
            "sha256": _sha256(path) if path else None,
        }
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "questions_file": source,
        "questions_sha256": _sha256(source) if source else None,
        "questions_selected": len(items),
        "sample": sample,
        "seed": seed,
        "limit": limit,
        "retrieval_only": retrieval_only,
        "complete": complete,
        "seconds": round(seconds, 1),
        "settings": {**dataclasses.asdict(bot.settings), "llm_api_key": "(not recorded)"},
        "fusion": dataclasses.asdict(bot.retriever.fusion),
        "models": models,
        "versions": _versions(),
        "machine": _machine(),
        **(extra or {}),
    }


def compare_runs(run_a: str | Path, run_b: str | Path, seed: int = 0) -> dict[str, Any]:
    """Metric differences B - A over the questions both runs answered, with paired bootstrap
    95% intervals, and the questions whose outcome changed."""
    _, rows_a = load_run(run_a)
    _, rows_b = load_run(run_b)
    by_id_a = {r["id"]: r for r in rows_a}
    common = [(by_id_a[r["id"]], r) for r in rows_b if r["id"] in by_id_a]
    diffs: dict[str, Any] = {}
    for name in METRICS:
        pairs = [
            (a[name], b[name])
            for a, b in common
            if a.get(name) is not None and b.get(name) is not None
        ]
        if not pairs:
            continue
        mean, low, high = metrics.bootstrap_ci([b - a for a, b in pairs], seed=seed)
        diffs[name] = {
            "a": sum(a for a, _ in pairs) / len(pairs),
            "b": sum(b for _, b in pairs) / len(pairs),
            "diff": mean,
            "low": low,
            "high": high,
            "n": len(pairs),
        }
    changed = [
        {"id": a["id"], "question": a["question"], "a": a["outcome"], "b": b["outcome"]}
        for a, b in common
        if a["outcome"] != b["outcome"]
    ]
    return {"common_questions": len(common), "metrics": diffs, "changed": changed}
