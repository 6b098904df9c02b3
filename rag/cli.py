"""The `ragchat` command line: ingest, ask, search, list, delete, chat, eval, serve.

This is an edge: it reads the environment (Settings.from_env), shows progress bars, and maps
RagChatError to a one-line message and exit code 1.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from rag.config import Settings
from rag.errors import RagChatError
from rag.markup import printable
from rag.records import answer_record, hit_record
from rag.refusal import explain
from rag.types import final_answer

app = typer.Typer(
    help="Private question answering over your own documents, with citations.",
    no_args_is_help=True,
    add_completion=False,
    # Markdown: "[1]" is shown as written (Rich markup would take it for a style tag), and
    # a docstring's lines are joined into sentences
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
)

StoreOpt = Annotated[
    str | None,
    typer.Option(
        "--store",
        help="Store directory (default: RAGCHAT_STORE, else the store folder of the data "
        "directory).",
    ),
]
LlmOpt = Annotated[
    str | None,
    typer.Option(
        "--llm", help="Model: packaged name, .gguf path, hf:REPO/FILE or openai:URL#MODEL."
    ),
]
EmbedderOpt = Annotated[str | None, typer.Option("--embedder", help="Embedding model.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]
RetrievalOpt = Annotated[
    str | None,
    typer.Option("--retrieval", help="hybrid (default), dense or keyword."),
]
TranslateOpt = Annotated[
    bool | None,
    typer.Option(
        "--translate/--no-translate",
        help="Also search for the question translated by the model into the documents' other "
        "languages (default: off, RAGCHAT_TRANSLATE).",
        show_default=False,
    ),
]
VerifyOpt = Annotated[
    bool | None,
    typer.Option(
        "--verify/--no-verify",
        help="Ask the model whether the cited passages state the answer, and refuse when it "
        "doubts it (default: off, RAGCHAT_VERIFY_ANSWERS).",
        show_default=False,
    ),
]
RerankerOpt = Annotated[
    str | None,
    typer.Option("--reranker", help="Cross-encoder folder or hub id to re-order passages."),
]

F = TypeVar("F", bound=Callable[..., Any])


def _errors(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RagChatError as e:
            typer.echo(f"Error: {e}", err=True)
            raise typer.Exit(1) from e
        except KeyboardInterrupt:
            typer.echo("Interrupted.", err=True)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def _bot(**overrides: Any) -> Any:
    from rag.pipeline import Chatbot

    return Chatbot(Settings.from_env(**overrides))


@app.command()
@_errors
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files and folders to add.")],
    store: StoreOpt = None,
    embedder: EmbedderOpt = None,
) -> None:
    """Add files and folders (.txt .md .html .pdf .docx .jsonl) to the store.

    Example: `ragchat ingest ~/Documents/manuals report.pdf`"""
    from tqdm import tqdm

    bot = _bot(store=store, embedder=embedder)
    # two bars: the files read, then the passages embedded (most of the time), with their
    # rate and time left; the second one's total grows while files are read
    reading = tqdm(total=0, unit="file", desc="reading  ", file=sys.stderr, position=0)
    embedding = tqdm(total=0, unit="passage", desc="embedding", file=sys.stderr, position=1)
    with reading, embedding:

        def progress(done: int, total: int, path: str) -> None:
            reading.total = total
            reading.set_postfix_str(Path(path).name[-30:], refresh=done == reading.n)
            reading.update(done - reading.n)

        def embedded(done: int, total: int) -> None:
            if total != embedding.total:
                embedding.total = total
                embedding.refresh()
            embedding.update(done - embedding.n)

        report = bot.ingest(paths, progress=progress, embedding=embedded)
    for s in report.skipped:
        typer.echo(f"skipped {s.path}: {s.reason}", err=True)
    typer.echo(
        f"{report.documents} documents added or updated ({report.chunks} chunks), "
        f"{report.unchanged} unchanged, {len(report.skipped)} skipped, from {report.files} files "
        f"in {report.seconds:.1f} s."
    )


@app.command()
@_errors
def ask(
    question: Annotated[str, typer.Argument(help="Your question, in any language.")],
    store: StoreOpt = None,
    llm: LlmOpt = None,
    embedder: EmbedderOpt = None,
    k: Annotated[int | None, typer.Option("-k", "--top-k", help="Passages to retrieve.")] = None,
    retrieval: RetrievalOpt = None,
    reranker: RerankerOpt = None,
    translate: TranslateOpt = None,
    verify: VerifyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Answer a question from your documents, citing passages as [1], [2].

    Example: `ragchat ask "Who did Hammouchi meet?"`"""
    bot = _bot(
        store=store,
        llm=llm,
        embedder=embedder,
        top_k=k,
        retrieval=retrieval,
        reranker=reranker,
        translate=translate,
        verify_answers=verify,
    )
    live = sys.stdout.isatty() and not as_json
    streamed = ""

    def shown(piece: str) -> None:
        nonlocal streamed
        if live:
            streamed += piece
            typer.echo(printable(piece), nl=False)

    answer = final_answer(bot.stream(question), shown)
    if as_json:
        typer.echo(json.dumps(answer_record(answer), ensure_ascii=False, indent=2))
        return
    if not live:
        typer.echo(answer.text)
    elif streamed.strip() != answer.text:  # markers were checked or the answer was a refusal
        typer.echo(f"\n{answer.text}")
    else:
        typer.echo()
    for sentence in answer.sentences:
        if not sentence.supported:
            typer.echo(f"(not supported by the passages: «{sentence.text}»)")
    for reason in explain(answer.signals):
        typer.echo(f"({reason})", err=True)
    if answer.refused and answer.hits:
        typer.echo("Closest passages:")
        for h in answer.hits[:3]:
            typer.echo(f"  {h.rank}. {h.chunk.title}: {' '.join(h.chunk.text.split())[:160]}")
    for c in answer.citations:
        page = f", page {c.chunk.page}" if c.chunk.page else ""
        typer.echo(f"[{c.n}] {c.chunk.title}{page}: «{c.quote}»")
    t = answer.timings
    typer.echo(f"({t['first_token']:.1f} s to first token, {t['total']:.1f} s in all)", err=True)


@app.command()
@_errors
def search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    k: Annotated[int, typer.Option("-k", help="How many passages.")] = 5,
    store: StoreOpt = None,
    embedder: EmbedderOpt = None,
    llm: LlmOpt = None,
    retrieval: RetrievalOpt = None,
    reranker: RerankerOpt = None,
    translate: TranslateOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the passages most relevant to a query, without asking the model for an answer.

    With --translate, the model translates the query into the documents' other languages.

    Example: `ragchat search "Hammouchi Washington" -k 3`"""
    bot = _bot(
        store=store,
        llm=llm,
        embedder=embedder,
        retrieval=retrieval,
        reranker=reranker,
        translate=translate,
    )
    hits = bot.search(query, k=k)
    if as_json:
        typer.echo(json.dumps([hit_record(h) for h in hits], ensure_ascii=False, indent=2))
        return
    for h in hits:
        snippet = " ".join(h.chunk.text.split())[:200]
        typer.echo(f"{h.rank}. [{h.score:.3f}] {h.chunk.title}: {snippet}")


@app.command("list")
@_errors
def list_documents(
    store: StoreOpt = None, embedder: EmbedderOpt = None, as_json: JsonOpt = False
) -> None:
    """List the documents in the store.

    Example: `ragchat list --json`"""
    docs = _bot(store=store, embedder=embedder).documents()
    if as_json:
        typer.echo(json.dumps(docs, ensure_ascii=False, indent=2))
        return
    if not docs:
        typer.echo("The store is empty: run `ragchat ingest DOCS...`.")
    for d in docs:
        typer.echo(f"{d['name']}\t{d['chunks']} chunks\t{d['title']}")


@app.command()
@_errors
def delete(
    doc: Annotated[
        str, typer.Argument(help="The document's name (as `list` shows it), id, path or title.")
    ],
    store: StoreOpt = None,
    embedder: EmbedderOpt = None,
) -> None:
    """Remove a document and all its chunks from the store.

    Example: `ragchat delete report.pdf`"""
    removed = _bot(store=store, embedder=embedder).delete(doc)
    typer.echo(f"Deleted {doc} ({removed} chunks).")


@app.command()
@_errors
def chat(
    host: Annotated[
        str,
        typer.Option(
            envvar="RAGCHAT_HOST",
            help="Address to bind. Anything but this machine (127.0.0.1, ::1) needs --auth.",
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 7860,
    auth: Annotated[
        str | None,
        typer.Option(
            envvar="RAGCHAT_AUTH",
            show_default=False,
            help="USER:PASSWORD asked before the chat opens (prefer RAGCHAT_AUTH: a flag shows "
            "in the process list).",
        ),
    ] = None,
    store: StoreOpt = None,
    llm: LlmOpt = None,
    embedder: EmbedderOpt = None,
    sample: Annotated[
        bool, typer.Option(help="Ingest the sample article when the store is empty.")
    ] = True,
) -> None:
    """Open the chat in the browser (ingests the sample article into an empty store).

    Example: `ragchat chat --port 7860`, then open http://127.0.0.1:7860"""
    from rag.pipeline import SAMPLE_CORPUS
    from ui.app import check_exposure, launch, parse_auth

    credentials = parse_auth(auth)
    check_exposure(host, credentials)  # before anything is loaded
    bot = _bot(store=store, llm=llm, embedder=embedder)
    if sample and not bot.documents():
        report = bot.ingest([SAMPLE_CORPUS])
        typer.echo(f"Empty store: ingested the sample article ({report.chunks} chunks).")
    launch(bot, host=host, port=port, auth=credentials)


@app.command("eval")
@_errors
def eval_command(
    args: Annotated[
        list[str],
        typer.Argument(help="QUESTIONS.jsonl, or: compare RUN_A RUN_B", show_default=False),
    ],
    docs: Annotated[
        list[Path] | None,
        typer.Option("--docs", help="Documents to ingest first (files, folders, .jsonl)."),
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N questions.")] = None,
    sample: Annotated[int | None, typer.Option(help="A random sample of N questions.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of --sample and the bootstrap.")] = 0,
    retrieval_only: Annotated[
        bool, typer.Option("--retrieval-only", help="Skip the model: retrieval metrics only.")
    ] = False,
    out: Annotated[Path | None, typer.Option(help="Run directory (default: a new one).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out.")] = False,
    warm: Annotated[
        bool,
        typer.Option(
            help="Load the models and read the fixed start of the prompts before the first "
            "question, as the chat does when it opens (timed apart: warm_s in summary.json)."
        ),
    ] = True,
    store: StoreOpt = None,
    llm: LlmOpt = None,
    embedder: EmbedderOpt = None,
    k: Annotated[int | None, typer.Option("-k", "--top-k", help="Passages for the model.")] = None,
    retrieval: RetrievalOpt = None,
    reranker: RerankerOpt = None,
    translate: TranslateOpt = None,
    verify: VerifyOpt = None,
) -> None:
    """Measure retrieval, answers and citations against a test set, with a report.

    `ragchat eval compare RUN_A RUN_B` prints the differences between two runs.

    Example: `ragchat eval eval/hammouchi/questions.jsonl --docs eval/hammouchi/documents.jsonl`"""
    if args and args[0] == "compare":
        if len(args) != 3:
            raise RagChatError("Usage: ragchat eval compare RUN_A RUN_B")
        _print_comparison(args[1], args[2])
        return
    if len(args) != 1:
        raise RagChatError("Usage: ragchat eval QUESTIONS.jsonl [options]")
    _run_eval(
        Path(args[0]),
        docs,
        limit,
        sample,
        seed,
        retrieval_only,
        out,
        resume,
        warm,
        dict(
            store=store,
            llm=llm,
            embedder=embedder,
            top_k=k,
            retrieval=retrieval,
            reranker=reranker,
            translate=translate,
            verify_answers=verify,
        ),
    )


def _run_eval(
    questions: Path,
    docs: list[Path] | None,
    limit: int | None,
    sample: int | None,
    seed: int,
    retrieval_only: bool,
    out: Path | None,
    resume: bool,
    warm: bool,
    overrides: dict[str, Any],
) -> None:
    import tempfile
    from datetime import datetime

    from tqdm import tqdm

    from rag.evaluate import evaluate

    if resume and out is None:
        raise RagChatError("--resume needs --out RUN_DIR: the run to continue.")
    with tempfile.TemporaryDirectory(prefix="ragchat-eval-store-") as tmp_store:
        if docs and not overrides.get("store"):
            overrides["store"] = tmp_store  # a throwaway store for the given documents
        bot = _bot(**overrides)
        if docs:
            report = bot.ingest(docs)
            typer.echo(
                f"Ingested {report.documents} documents ({report.chunks} chunks), "
                f"{report.unchanged} unchanged, {len(report.skipped)} skipped.",
                err=True,
            )
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        run_dir = out or Path(bot.settings.data_dir) / "runs" / f"{stamp}-{questions.parent.name}"
        bar = tqdm(total=0, unit="q", desc="evaluating", file=sys.stderr)

        def progress(done: int, total: int, shown: dict[str, float]) -> None:
            bar.total = total
            bar.set_postfix({k: f"{v:.3f}" for k, v in shown.items()}, refresh=False)
            bar.update(done - bar.n)

        info = {
            "name": questions.parent.name,
            "command": " ".join(["ragchat", *sys.argv[1:]]),
            "docs": [str(d) for d in docs or []],
        }
        try:
            result = evaluate(
                questions,
                bot,
                retrieval_only=retrieval_only,
                out_dir=run_dir,
                resume=resume,
                limit=limit,
                sample=sample,
                seed=seed,
                progress=progress,
                run_info=info,
                warm=warm,
            )
        except KeyboardInterrupt:
            bar.close()
            typer.echo(
                f"Interrupted: finished questions are kept in {run_dir}; continue with "
                f"--out {run_dir} --resume.",
                err=True,
            )
            raise typer.Exit(130) from None
        bar.close()
    _print_summary(result.summary)
    typer.echo(f"Run saved in {run_dir} (results.jsonl, summary.json, report.html)")


def _print_summary(summary: dict[str, Any]) -> None:
    run = summary.get("run", {})
    if "warm_s" in run:
        typer.echo(f"{'warm-up s':22s} {run['warm_s']:.2f}  ({run['warm_reused']} tokens restored)")
    for name, m in summary["metrics"].items():
        typer.echo(f"{name:22s} {m['mean']:.3f}  [{m['low']:.3f}, {m['high']:.3f}]  n={m['n']}")
    for name, c in summary["costs"].items():
        typer.echo(f"{name:22s} p50 {c['p50']:.2f}  p95 {c['p95']:.2f}  n={c['n']}")


def _print_comparison(run_a: str, run_b: str) -> None:
    from rag.evaluate import compare_runs

    result = compare_runs(run_a, run_b)
    typer.echo(f"{result['common_questions']} questions in both runs; B - A:")
    for name, m in result["metrics"].items():
        typer.echo(
            f"{name:22s} {m['a']:.3f} -> {m['b']:.3f}  diff {m['diff']:+.3f} "
            f"[{m['low']:+.3f}, {m['high']:+.3f}]  n={m['n']}"
        )
    for c in result["changed"]:
        typer.echo(f"changed {c['id']}: {c['a']} -> {c['b']}  {c['question']}")


OWN_LOGGERS = ("rag", "models", "vectorstore", "ui")


def configure_logging(level: str | None = None) -> None:
    """ragchat's own messages at WARNING, third-party ones (bm25s sets its logger to DEBUG,
    transformers warns of its own deprecations, pypdf logs damage it works around, which the
    skip reason says already) only when they are errors; `debug` (--verbose, RAGCHAT_LOG=debug)
    shows everything. Errors the user must act on are one line from `_errors`, not logs."""
    name = (level or os.environ.get("RAGCHAT_LOG") or "warning").strip().upper()
    verbose = name == "DEBUG"
    chosen = getattr(logging, name, None)
    if not isinstance(chosen, int):
        chosen = logging.WARNING
    root = logging.getLogger()
    handler = next(iter(root.handlers), None)
    if handler is None:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.ERROR)
    handler.setLevel(logging.DEBUG if verbose else logging.WARNING)
    for own in OWN_LOGGERS:
        logging.getLogger(own).setLevel(chosen)
    logging.captureWarnings(True)  # Python warnings become "py.warnings" log records
    for noisy in ("py.warnings", "bm25s", "pypdf", "transformers", "sentence_transformers"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.ERROR)


@app.callback()
def _options(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show every log line, third-party ones too.")
    ] = False,
) -> None:
    """Private question answering over your own documents, with citations."""
    if verbose:
        configure_logging("debug")


def main() -> None:
    configure_logging()
    app()


if __name__ == "__main__":
    main()
