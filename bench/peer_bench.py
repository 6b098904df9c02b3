"""ragchat against LlamaIndex's CitationQueryEngine, side by side on the same questions.

Measures, in one process, for ragchat with its defaults (`Chatbot(Settings(data_dir=TMP))`:
the packaged Qwen2.5-Coder-1.5B-Instruct Q4_K_M GGUF and multilingual-e5-small) and for a
LlamaIndex `CitationQueryEngine` (similarity_top_k=3, otherwise LlamaIndex's defaults: an
in-memory VectorStoreIndex, SentenceSplitter chunks) over the same GGUF (LlamaIndex's LlamaCPP
wrapper with the model's own chat template, the same n_ctx, temperature, seed, threads and
answer length) and the same loaded embedder object:

- seconds to the first answer token and in all, from the question to the last token
  (retrieval included), and prompt tokens;
- contains-gold (`rag.metrics.contains_gold` over `answers` + `answers_question_lang`), and
  the same without the answers that print a whole source (`dumps_source`), counted apart;
- whether the gold passage (`context_id`) is cited, and retrieved; whether the answer refused
  (ragchat: `Answer.refused`; the peer has no refusal: `PEER_REFUSAL` phrases).

The two answer alternately, question by question, and which goes first alternates too (drift
and warm caches fall on both). Both models load once. Medians leave out question 1 (it loads
ragchat's model), which is reported apart; unanswerable questions are reported apart.
Needs the `bench` extra (never a dependency of the product), everything offline:

    .venv/bin/python -m pip install llama-index-core==0.14.25 llama-index-llms-llama-cpp==0.7.0
    .venv/bin/python bench/peer_bench.py --set hammouchi|piaf|es [--sample 50 --seed 0]
        [--limit N] [--out bench/results/peer-SET.json]
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no model hub: every model is packaged
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from difflib import SequenceMatcher  # noqa: E402
from importlib import metadata  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

try:
    from llama_cpp import Llama
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter
    from llama_index.core import Document, VectorStoreIndex
    from llama_index.core import Settings as LlamaIndexSettings
    from llama_index.core.base.embeddings.base import BaseEmbedding
    from llama_index.core.query_engine import CitationQueryEngine
    from llama_index.llms.llama_cpp import LlamaCPP
    from pydantic import PrivateAttr
except ImportError as e:  # pragma: no cover - a message, not a traceback
    sys.exit(f"{e}: install the bench extra first (see this script's docstring).")

from models.weights import QWEN_CODER_1_5B, assemble_gguf  # noqa: E402
from rag import Chatbot, Settings  # noqa: E402
from rag.evaluate import EvalQuestion, load_questions, select  # noqa: E402
from rag.metrics import contains_gold  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EVAL = Path(os.environ.get("RAGCHAT_EVAL_DATA") or ROOT.parent / "shared" / "eval")
SETS = {  # name: (documents, questions)
    "hammouchi": (ROOT / "eval/hammouchi/documents.jsonl", ROOT / "eval/hammouchi/questions.jsonl"),
    "piaf": (EVAL / "piaf_fr/documents.jsonl", EVAL / "piaf_fr_mini/questions.jsonl"),
    "es": (EVAL / "xquad_en_q_es/documents.jsonl", EVAL / "xquad_en_q_es_mini/questions.jsonl"),
}
TOP_K = 3
SYSTEMS = ("ragchat", "peer")
# the peer never refuses as such: its prompt asks it to "indicate" that no source helps
PEER_REFUSAL = re.compile(
    r"none of the (provided )?sources|(sources|context|text)s? (do(es)? not|don't) "
    r"(provide|contain|mention|say|state|include)|no (relevant )?information|"
    r"(cannot|can't|unable to) (be )?(answer|determin|find)|not (mentioned|provided|specified)|"
    r"aucune (des )?sources?|ne (mentionne|précise|fourni|contien|di)[a-z]* pas|"
    r"ninguna de las fuentes|no (se )?(menciona|proporciona|especifica)",
    re.IGNORECASE,
)
# "[2]", "[1, 3]" and, as the peer also writes them, "[Source 2]", "[Sources 1 and 3]"
MARKERS = re.compile(r"\[(?:Sources? )?(\d+(?:\s*(?:,|and|&)\s*\d+)*)\]", re.IGNORECASE)
SOURCE_LABEL = re.compile(r"^Source (\d+):\n", re.MULTILINE)


# --- the peer ---------------------------------------------------------------------------


class RagchatEmbedding(BaseEmbedding):
    """ragchat's Embedder (prefixes, batching, long texts) as a LlamaIndex embedding."""

    _embedder: Any = PrivateAttr()

    def __init__(self, embedder: Any) -> None:
        super().__init__(model_name=embedder.name)
        self._embedder = embedder

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._embedder.embed_query(query).tolist()

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._embedder.embed_documents([text])[0].tolist()

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._embedder.embed_documents(texts).tolist()


def chat_template(vocab: Llama) -> Callable[[list[dict[str, str]]], str]:
    """The GGUF's own chat template, as llama.cpp's chat API (and ragchat) render it."""

    def text(token: int) -> str:
        return "" if token == -1 else vocab.detokenize([token], special=True).decode()

    formatter = Jinja2ChatFormatter(
        template=vocab.metadata["tokenizer.chat_template"],
        eos_token=text(vocab.token_eos()),
        bos_token=text(vocab.token_bos()),
        add_generation_prompt=True,
    )
    return lambda messages: formatter(messages=messages).prompt


class Peer:
    """A CitationQueryEngine over an in-memory index; remembers its last prompt."""

    def __init__(self, gguf: Path, embedder: Any, settings: Settings) -> None:
        self.vocab = Llama(model_path=str(gguf), vocab_only=True, verbose=False)
        render = chat_template(self.vocab)
        self.last_prompt = ""

        def completion_to_prompt(text: str) -> str:
            self.last_prompt = render([{"role": "user", "content": text}])
            return self.last_prompt

        def messages_to_prompt(messages: Sequence[Any]) -> str:
            turns = [{"role": m.role.value, "content": m.content or ""} for m in messages]
            self.last_prompt = render(turns)
            return self.last_prompt

        threads = settings.threads or os.cpu_count() or 1
        t = time.perf_counter()
        self.llm = LlamaCPP(
            model_path=str(gguf),
            temperature=settings.temperature,
            max_new_tokens=settings.max_tokens,
            context_window=settings.context_window,
            model_kwargs={"n_threads": threads, "n_threads_batch": threads, "seed": settings.seed},
            completion_to_prompt=completion_to_prompt,
            messages_to_prompt=messages_to_prompt,
            verbose=False,
        )
        self.load_s = time.perf_counter() - t
        self.embed_model = RagchatEmbedding(embedder)
        LlamaIndexSettings.llm = self.llm  # nothing falls back on LlamaIndex's OpenAI default
        LlamaIndexSettings.embed_model = self.embed_model
        self.engine: Any = None

    def index(self, records: Sequence[dict[str, Any]]) -> int:
        docs = [
            Document(text=r["text"], id_=str(r["id"]), metadata={"title": r.get("title", "")})
            for r in records
        ]
        index = VectorStoreIndex.from_documents(docs, embed_model=self.embed_model)
        self.engine = CitationQueryEngine.from_args(
            index, llm=self.llm, similarity_top_k=TOP_K, streaming=True
        )
        return len(index.docstore.docs)

    def ask(self, question: str) -> dict[str, Any]:
        t0 = time.perf_counter()
        response = self.engine.query(question)
        first, text = None, ""
        for delta in response.response_gen:
            if first is None and delta.strip():
                first = time.perf_counter() - t0
            text += delta
        total = time.perf_counter() - t0
        sources = [n.node for n in response.source_nodes]
        labels = {source_number(n.get_content()): n.ref_doc_id for n in sources}  # "Source n:"
        cited = sorted({int(n) for m in MARKERS.findall(text) for n in re.findall(r"\d+", m)})
        prompt = self.last_prompt.encode("utf-8")
        return {
            "answer": text.strip(),
            "total_s": total,
            "first_token_s": first if first is not None else total,
            "prompt_tokens": len(self.vocab.tokenize(prompt, add_bos=False, special=True)),
            "refused": not text.strip() or bool(PEER_REFUSAL.search(text)),
            "retrieved": [n.ref_doc_id for n in sources],
            "cited": [labels[n] for n in cited if n in labels],
            "cited_numbers": cited,
            "sources": [SOURCE_LABEL.sub("", n.get_content()) for n in sources],
        }


def source_number(text: str) -> int | None:
    """The n of the "Source n:" label CitationQueryEngine puts before a passage."""
    found = SOURCE_LABEL.match(text)
    return int(found.group(1)) if found else None


# --- ragchat ----------------------------------------------------------------------------


def ask_ragchat(bot: Chatbot, question: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    answer = bot.ask(question)
    wall = time.perf_counter() - t0
    return {
        "answer": answer.text,
        "total_s": answer.timings["total"],
        "first_token_s": answer.timings["first_token"],
        "wall_s": wall,
        "timings": {k: round(v, 3) for k, v in answer.timings.items()},  # its own breakdown
        "prompt_tokens": answer.usage.get("prompt_tokens"),
        "refused": answer.refused,
        "retrieved": [h.chunk.record_id for h in answer.hits],
        "cited": [c.chunk.record_id for c in answer.citations],
        "sources": [h.chunk.text for h in answer.hits],
    }


# --- scoring ----------------------------------------------------------------------------


def dumps_source(answer: str, sources: Sequence[str]) -> bool:
    """Whether an answer prints a source rather than answering: it holds >= 80% of one
    retrieved source's text verbatim, or is over 400 characters and >= 70% verbatim copy of
    one source (runs of 20+ characters, whitespace collapsed, [n] markers removed)."""
    text = " ".join(MARKERS.sub(" ", SOURCE_LABEL.sub("", answer)).split())
    for source in sources:
        source = " ".join(source.split())
        if not source or not text:
            continue
        blocks = SequenceMatcher(None, text, source, autojunk=False).get_matching_blocks()
        copied = sum(b.size for b in blocks if b.size >= 20)
        if copied >= 0.8 * len(source) or (len(text) > 400 and copied >= 0.7 * len(text)):
            return True
    return False


def score(q: EvalQuestion, result: dict[str, Any]) -> dict[str, Any]:
    sources = result.pop("sources")
    dump = dumps_source(result["answer"], sources)
    contains = contains_gold(result["answer"], q.answers) if q.answers else None
    result.update(
        contains=contains,
        dumps_source=dump,
        contains_clean=None if contains is None else contains * (not dump),
        gold_cited=None if not q.context_id else q.context_id in result["cited"],
        gold_retrieved=None if not q.context_id else q.context_id in result["retrieved"],
    )
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}


def median(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return round(statistics.median(kept), 3) if kept else None


def mean(values: Sequence[float | bool | None]) -> float | None:
    kept = [float(v) for v in values if v is not None]
    return round(sum(kept) / len(kept), 3) if kept else None


def summarize(rows: Sequence[dict[str, Any]], system: str) -> dict[str, Any]:
    answerable = [r[system] for r in rows if not r["unanswerable"]]
    later = [r[system] for r in rows[1:]]  # after question 1, which loads the models
    unanswerable = [r[system] for r in rows if r["unanswerable"]]
    return {
        "answerable": len(answerable),
        "contains_gold": mean([a["contains"] for a in answerable]),
        "contains_gold_without_dumps": mean([a["contains_clean"] for a in answerable]),
        "dumps_source": sum(a["dumps_source"] for a in answerable),
        "gold_cited": mean([a["gold_cited"] for a in answerable]),
        "gold_retrieved": mean([a["gold_retrieved"] for a in answerable]),
        "refused_answerable": mean([a["refused"] for a in answerable]),
        "unanswerable": len(unanswerable),
        "refused_unanswerable": mean([a["refused"] for a in unanswerable]),
        "median_total_s": median([a["total_s"] for a in later]),
        "median_first_token_s": median([a["first_token_s"] for a in later]),
        "median_prompt_tokens": median([a["prompt_tokens"] for a in later]),
        "question_1": {k: rows[0][system][k] for k in ("total_s", "first_token_s")}
        if rows
        else None,
    }


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def print_table(summary: dict[str, dict[str, Any]], ratios: dict[str, Any]) -> None:
    keys = [k for k in summary["ragchat"] if k != "question_1"]
    print(f"\n{'':30}{'ragchat':>12}{'peer':>12}")
    for key in keys:
        print(f"{key:30}{summary['ragchat'][key]!s:>12}{summary['peer'][key]!s:>12}")
    for system in SYSTEMS:
        q1 = summary[system]["question_1"]
        if q1:
            print(f"question 1 ({system}): {q1['total_s']} s, first token {q1['first_token_s']} s")
    print("ratios ragchat/peer:", json.dumps(ratios))


# --- the run ----------------------------------------------------------------------------


def read_records(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def run(args: argparse.Namespace) -> dict[str, Any]:
    docs_path, questions_path = SETS[args.set]
    questions = select(
        load_questions(questions_path), limit=args.limit, sample=args.sample, seed=args.seed
    )
    records = read_records(docs_path)
    with tempfile.TemporaryDirectory(prefix="ragchat-peer-") as tmp:
        settings = Settings(data_dir=tmp, models=str(args.models_dir))
        gguf = assemble_gguf(QWEN_CODER_1_5B, settings.models_dir)
        bot = Chatbot(settings)
        t = time.perf_counter()
        report = bot.ingest([str(docs_path)])
        setup: dict[str, Any] = {
            "ragchat_ingest_s": round(time.perf_counter() - t, 1),
            "ragchat_chunks": report.chunks,
        }
        peer = Peer(gguf, bot.embedder, settings)  # the same loaded embedder
        t = time.perf_counter()
        setup["peer_nodes"] = peer.index(records)
        setup["peer_index_s"] = round(time.perf_counter() - t, 1)
        setup["peer_llm_load_s"] = round(peer.load_s, 1)
        print(json.dumps(setup), flush=True)

        rows = []
        for i, q in enumerate(questions):
            order = SYSTEMS if i % 2 == 0 else SYSTEMS[::-1]
            row: dict[str, Any] = {
                "id": q.id,
                "question": q.question,
                "gold": list(q.answers),
                "context_id": q.context_id,
                "unanswerable": q.unanswerable,
                "order": list(order),
            }
            for system in order:
                result = (
                    ask_ragchat(bot, q.question) if system == "ragchat" else peer.ask(q.question)
                )
                row[system] = score(q, result)
            rows.append(row)
            print(progress_line(i + 1, len(questions), row), flush=True)

    summary = {s: summarize(rows, s) for s in SYSTEMS}
    ratios = {
        key: ratio(summary["ragchat"][key], summary["peer"][key])
        for key in (
            "median_total_s",
            "median_first_token_s",
            "contains_gold",
            "contains_gold_without_dumps",
        )
    }
    print_table(summary, ratios)
    return {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {
            "platform": platform.platform(),
            "machine": platform.machine(),
            "cpu_count": os.cpu_count(),
        },
        "set": args.set,
        "documents": str(docs_path),
        "questions": str(questions_path),
        "model": gguf.name,
        "embedder": settings.embedder,
        "versions": {
            p: metadata.version(p)
            for p in (
                "ragchat",
                "llama-index-core",
                "llama-index-llms-llama-cpp",
                "llama-cpp-python",
            )
        },
        "peer": f"CitationQueryEngine, similarity_top_k={TOP_K}, streaming, LlamaCPP wrapper",
        "schedule": "alternating question by question; the first system alternates too",
        "setup": setup,
        "summary": summary,
        "ratios_ragchat_over_peer": ratios,
        "rows": rows,
    }


def progress_line(done: int, total: int, row: dict[str, Any]) -> str:
    parts = [f"[{done}/{total}] {row['id']}"]
    for s in SYSTEMS:
        r = row[s]
        flags = "".join(f for f, on in (("R", r["refused"]), ("D", r["dumps_source"])) if on)
        parts.append(f"{s} {r['total_s']:.1f}s gold={r['contains']} {flags}".rstrip())
    return " | ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", choices=sorted(SETS), default="hammouchi")
    parser.add_argument("--sample", type=int, default=None, help="a seeded sample of N questions")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="the first N (after --sample)")
    parser.add_argument(
        "--out", type=Path, default=None, help="default bench/results/peer-SET.json"
    )
    parser.add_argument(
        "--models-dir",
        type=Path,
        default=Settings().models_dir,
        help="where the assembled GGUF and built e5 live (default: ragchat's, not rebuilt)",
    )
    args = parser.parse_args()
    result = run(args)
    out = args.out or ROOT / "bench" / "results" / f"peer-{args.set}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
