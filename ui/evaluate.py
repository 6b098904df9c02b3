"""The Evaluate tab: a test set run against the documents in the store, its report shown."""

from __future__ import annotations

import html
import time
from pathlib import Path
from typing import Any

import gradio as gr

from rag.errors import RagChatError
from rag.pipeline import Chatbot
from ui.render import escape, escape_html


def run_evaluation(
    bot: Chatbot, path: str | None, limit: float | None, retrieval_only: bool, progress: Any
) -> tuple[str, str]:
    """Run the test set at `path` (its first `limit` questions; 0 = all); the status line and
    the report, as an HTML frame."""
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
        gr.Warning(escape_html(str(e)))
        return escape(str(e)), ""
    report = (run_dir / "report.html").read_text(encoding="utf-8")
    frame = (
        f'<iframe title="evaluation report" srcdoc="{html.escape(report, quote=True)}" '
        'style="width:100%;height:900px;border:0"></iframe>'
    )
    done = f"{len(result.rows)} questions evaluated; run saved in `{escape(str(run_dir))}`."
    return done, frame


def tab(bot: Chatbot) -> None:
    """The tab's components and events, inside the page's Blocks."""
    gr.Markdown(
        "Run a test set (JSONL: `id`, `question`, `answers`, `context_id`, "
        "`unanswerable`) against the documents in the store."
    )
    with gr.Row():
        test_set = gr.File(label="Test set (.jsonl)", file_types=[".jsonl"], elem_id="eval-file")
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
            run = gr.Button("Run evaluation", variant="primary", elem_id="eval-run")
    status = gr.Markdown(elem_id="eval-status")
    report = gr.HTML(elem_id="eval-report")

    def go(path: str | None, n: float | None, only: bool, progress: gr.Progress = gr.Progress()):  # type: ignore[no-untyped-def]
        return run_evaluation(bot, path, n, only, progress)

    run.click(
        go,
        [test_set, limit, retrieval_only],
        [status, report],
        concurrency_limit=1,
        concurrency_id="eval",
    )
