"""The Gradio chat: Blocks over the public API (Chatbot), nothing more.

A streaming chat whose answers are followed by their sources: one collapsible entry per `[n]`
citation, titled with the document name and page, holding the passage with the cited part
highlighted. Beside it, an upload box that ingests files with progress, and the documents in the
store. Everything taken from documents is escaped before it is shown.
"""

from __future__ import annotations

import html
import logging
import re
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import gradio as gr

from rag.errors import RagChatError
from rag.loaders import SUPPORTED_SUFFIXES
from rag.pipeline import Chatbot
from rag.types import Answer, Citation

log = logging.getLogger(__name__)

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+\-.!|~&])")


def escape(text: str) -> str:
    """Text from a document, made inert for the chat's Markdown and HTML rendering."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text).replace("\n", "  \n")


def source_message(citation: Citation) -> dict[str, Any]:
    """One collapsible chat entry showing the cited passage, the quote highlighted."""
    chunk = citation.chunk
    page = f" · page {chunk.page}" if chunk.page else ""
    body = (
        escape(chunk.text[: citation.start])
        + "<mark>"
        + escape(citation.quote)
        + "</mark>"
        + escape(chunk.text[citation.end :])
    )
    return {
        "role": "assistant",
        "content": body,
        "metadata": {"title": f"[{citation.n}] {escape(chunk.title)}{page}", "status": "done"},
    }


def documents_table(bot: Chatbot) -> list[list[Any]]:
    try:
        return [[d["title"], d["chunks"], d["doc_id"]] for d in bot.documents()]
    except RagChatError as e:
        gr.Warning(str(e))
        return []


def upload_dir(bot: Chatbot) -> Path:
    return Path(bot.settings.data_dir) / "uploads"


def save_upload(src: str, dest_dir: Path) -> Path:
    """Copy an uploaded file into the data directory under a safe name of its own."""
    name = re.sub(r"[^\w.\- ]", "_", Path(src).name).strip(" .") or "upload"
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / name
    shutil.copyfile(src, dest)
    return dest


def build_app(bot: Chatbot) -> gr.Blocks:
    def respond(message: str, history: list[dict[str, Any]]):  # type: ignore[no-untyped-def]
        message = (message or "").strip()
        if not message:
            yield history, ""
            return
        history = [
            *history,
            {"role": "user", "content": message},
            {"role": "assistant", "content": ""},
        ]
        yield history, ""
        try:
            answer: Answer | None = None
            for piece in bot.stream(message):
                if isinstance(piece, Answer):
                    answer = piece
                else:
                    history[-1]["content"] += piece
                    yield history, ""
        except RagChatError as e:
            history[-1]["content"] = str(e)
            gr.Warning(str(e))
            yield history, ""
            return
        assert answer is not None
        history[-1]["content"] = answer.text
        history.extend(source_message(c) for c in answer.citations)
        yield history, ""

    def ingest_uploads(files: list[str] | None, progress: gr.Progress = gr.Progress()) -> Any:
        if not files:
            gr.Warning("Choose files to add first.")
            return documents_table(bot), None, ""
        progress(0, desc="Reading files")
        saved = [save_upload(f, upload_dir(bot)) for f in files]

        def report_progress(done: int, total: int, path: str) -> None:
            progress((done, total), desc=f"Ingesting {Path(path).name}")

        try:
            report = bot.ingest(saved, progress=report_progress)
        except RagChatError as e:
            gr.Warning(str(e))
            return documents_table(bot), None, ""
        lines = [
            f"Added {report.documents} documents ({report.chunks} passages); "
            f"{report.unchanged} unchanged."
        ]
        lines += [f"Skipped {Path(s.path).name}: {s.reason}" for s in report.skipped]
        for s in report.skipped:
            gr.Warning(f"Skipped {Path(s.path).name}: {s.reason}")
        return documents_table(bot), None, "\n\n".join(escape(line) for line in lines)

    def run_evaluation(
        path: str | None,
        limit: float | None,
        retrieval_only: bool,
        progress: gr.Progress = gr.Progress(),
    ) -> tuple[str, str]:
        from rag.evaluate import evaluate

        if not path:
            gr.Warning("Choose a test set (.jsonl) first.")
            return "", ""
        run_dir = Path(bot.settings.data_dir) / "runs" / time.strftime("%Y%m%d-%H%M%S-ui")

        def report_progress(done: int, total: int, shown: dict[str, float]) -> None:
            figures = ", ".join(f"{k} {v:.3f}" for k, v in shown.items())
            progress((done, total), desc=f"{done}/{total} questions; {figures}")

        try:
            result = evaluate(
                path,
                bot,
                retrieval_only=retrieval_only,
                out_dir=run_dir,
                limit=int(limit) if limit else None,
                progress=report_progress,
                run_info={"name": Path(path).name},
            )
        except RagChatError as e:
            gr.Warning(str(e))
            return str(e), ""
        report = (run_dir / "report.html").read_text(encoding="utf-8")
        frame = (
            f'<iframe title="evaluation report" srcdoc="{html.escape(report, quote=True)}" '
            'style="width:100%;height:900px;border:0"></iframe>'
        )
        done = f"{len(result.rows)} questions evaluated; run saved in `{run_dir}`."
        return done, frame

    with gr.Blocks(title="ragchat") as demo:
        gr.Markdown(
            "## ragchat — ask your documents\nAnswers cite their passages as [1], [2]; "
            "open a source below an answer to read the passage."
        )
        with gr.Tab("Chat"):
            with gr.Row():
                with gr.Column(scale=3):
                    chat = gr.Chatbot(
                        label="Chat",
                        elem_id="chat",
                        height="75vh",
                        group_consecutive_messages=False,
                    )
                    with gr.Row():
                        box = gr.Textbox(
                            placeholder="Ask a question, in any language…",
                            show_label=False,
                            scale=5,
                            elem_id="question",
                            autofocus=True,
                        )
                        send = gr.Button("Ask", variant="primary", scale=1, elem_id="ask")
                with gr.Column(scale=2):
                    files = gr.File(
                        label="Add documents",
                        file_count="multiple",
                        file_types=sorted(SUPPORTED_SUFFIXES),
                        elem_id="upload",
                    )
                    add = gr.Button("Add to library", elem_id="add")
                    status = gr.Markdown(elem_id="ingest-status")
                    docs = gr.Dataframe(
                        headers=["title", "passages", "id"],
                        label="Documents",
                        interactive=False,
                        elem_id="documents",
                        wrap=True,
                    )
        with gr.Tab("Evaluate"):
            gr.Markdown(
                "Run a test set (JSONL: `id`, `question`, `answers`, `context_id`, "
                "`unanswerable`) against the documents in the store."
            )
            with gr.Row():
                test_set = gr.File(
                    label="Test set (.jsonl)", file_types=[".jsonl"], elem_id="eval-file"
                )
                with gr.Column():
                    limit = gr.Number(
                        label="Questions (first N; 0 = all)",
                        value=20,
                        precision=0,
                        minimum=0,
                        elem_id="eval-limit",
                    )
                    retrieval_only = gr.Checkbox(
                        label="Retrieval only (no model, fast)", elem_id="eval-retrieval-only"
                    )
                    run_eval = gr.Button("Run evaluation", variant="primary", elem_id="eval-run")
            eval_status = gr.Markdown(elem_id="eval-status")
            eval_report = gr.HTML(elem_id="eval-report")
        box.submit(respond, [box, chat], [chat, box], concurrency_limit=1, concurrency_id="model")
        send.click(respond, [box, chat], [chat, box], concurrency_limit=1, concurrency_id="model")
        add.click(
            ingest_uploads,
            [files],
            [docs, files, status],
            concurrency_limit=1,
            concurrency_id="ingest",
        )
        run_eval.click(
            run_evaluation,
            [test_set, limit, retrieval_only],
            [eval_status, eval_report],
            concurrency_limit=1,
            concurrency_id="model",
        )
        demo.load(lambda: documents_table(bot), None, docs)
    return demo


def warm_up(bot: Chatbot) -> None:
    """Load the models in the background so the first question does not wait for them."""

    def run() -> None:
        try:
            _ = bot.store  # loads the embedder and opens the store
            bot.generator.count_tokens("warm up")
        except Exception:  # reported again, with its message, on the first question
            log.exception("warm-up failed")

    threading.Thread(target=run, daemon=True, name="ragchat-warm-up").start()


def launch(bot: Chatbot, host: str = "127.0.0.1", port: int = 7860, **kwargs: Any) -> None:
    warm_up(bot)
    demo = build_app(bot)
    demo.queue(default_concurrency_limit=4)
    demo.launch(
        server_name=host, server_port=port, share=False, show_error=True, allowed_paths=[], **kwargs
    )
