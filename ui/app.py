"""The Gradio chat: Blocks over the public API (Chatbot), nothing more.

A streaming chat whose answers are followed by their sources: one collapsible entry per `[n]`
citation, titled with the document name and page, holding the passage with the quote that
supports the answer highlighted. Sentences no passage supports are marked; a refusal is followed
by the closest passages; a follow-up question shows the standalone question that was searched.
Beside it, an upload box that ingests files with progress, the documents in the store, and a
control that removes one. The models' loading status is shown until they are loaded.

Security (README, "Security"): the model's answers and everything taken from documents
(passages, titles, file names, messages naming them) are shown as text: escaped, so that no image,
link or tag in them is rendered, with only the markup ragchat adds itself (citation markers, the
highlighted quote, the mark of an unsupported sentence); the answer's markup was removed before
(rag/markup.py), and Gradio sanitises what is left. ui/guard.py adds the outer wall: loopback Host
headers only, no cross-origin POST, no file named by a web address, and a Content-Security-Policy
that lets the page load nothing from elsewhere. Uploads are checked (type, size) and copied under
the data directory under a hash of their content, so an upload never replaces a document it did
not create; the server binds to 127.0.0.1 and refuses any other address without a password; it
serves no file but Gradio's own upload cache, which is kept in the data directory.
"""

from __future__ import annotations

import hashlib
import html
import logging
import os
import re
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from rag.citations import MARKER
from rag.errors import ConfigError, RagChatError, UnsupportedDocument
from rag.loaders import SUPPORTED_SUFFIXES, display_path
from rag.markup import strip_markup
from rag.pipeline import Chatbot
from rag.refusal import explain
from rag.support import with_markers
from rag.types import Answer, Chunk, Citation
from ui.guard import Guard, is_loopback_host

log = logging.getLogger(__name__)

CHAT_CONCURRENCY = 8  # questions in progress at once (see build_app)
MAX_UPLOAD_BYTES = 100 * 1024 * 1024  # per file; larger files: `ragchat ingest`
# every character Markdown, GFM autolinks (`:` `/` `@` `www.`), HTML or LaTeX (`$`) reads
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+\-.!|~&:/@$=\"'])")


def escape(text: str) -> str:
    """Text from a document or the model, made inert for the chat's Markdown and HTML
    rendering: shown as written, never a link, an image or a tag."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text).replace("\n", "  \n")


def escape_answer(text: str) -> str:
    """The model's text made inert like `escape`, its `[n]` citation markers kept as such."""
    parts, last = [], 0
    for m in MARKER.finditer(text):
        parts += [escape(text[last : m.start()]), m.group(0)]
        last = m.end()
    return "".join([*parts, escape(text[last:])])


def escape_html(text: str) -> str:
    """Text for a place that renders HTML (Gradio's warnings) shown as written."""
    return html.escape(text, quote=False)


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


def passage_message(n: int, chunk: Chunk, label: str = "") -> dict[str, Any]:
    """A collapsible chat entry showing a passage that was not cited (a refusal's closest)."""
    page = f" · page {chunk.page}" if chunk.page else ""
    return {
        "role": "assistant",
        "content": escape(chunk.text),
        "metadata": {"title": f"{label}{n}. {escape(chunk.title)}{page}", "status": "done"},
    }


def answer_markdown(answer: Answer) -> str:
    """The answer as shown: sentences no passage supports are marked as such, and a rewritten
    follow-up question is shown above the answer."""
    if answer.sentences and not answer.refused:
        parts = [
            escape_answer(with_markers(s.text, s.citations))
            if s.supported
            else f"⚠️ *{escape(s.text)}* _(not supported by the passages)_"
            for s in answer.sentences
        ]
        body = " ".join(parts)
    else:
        body = escape_answer(answer.text)
    reasons = explain(answer.signals)
    if reasons:
        body += "\n\n" + " ".join(f"*{escape(r)}*" for r in reasons)
    if answer.rewritten and answer.rewritten != answer.question:
        body = f"*Searched for:* {escape(answer.rewritten)}\n\n{body}"
    return body


def answer_messages(answer: Answer) -> list[dict[str, Any]]:
    """The entries below an answer: its citations, or a refusal's closest passages."""
    if answer.refused:
        return [passage_message(h.rank, h.chunk, "Closest passage ") for h in answer.hits[:3]]
    return [source_message(c) for c in answer.citations]


def conversation(history: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The user questions and assistant answers of the chat (sources left out), as text."""
    turns = []
    for m in history:
        if m.get("metadata") or m.get("role") not in ("user", "assistant"):
            continue
        content = m.get("content")
        if isinstance(content, list):  # Gradio 6 message parts
            content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
        if isinstance(content, str) and content.strip():
            turns.append({"role": str(m["role"]), "content": content})
    return turns


def documents_table(bot: Chatbot) -> list[list[Any]]:
    try:
        return [[d["title"], d["chunks"], d["name"], d["doc_id"]] for d in bot.documents()]
    except RagChatError as e:
        gr.Warning(escape_html(str(e)))
        return []


def library(bot: Chatbot) -> tuple[list[list[Any]], Any]:
    """The documents table and the choices of the remove control, read once."""
    rows = documents_table(bot)
    choices = [(f"{name} ({passages} passages)", doc_id) for _, passages, name, doc_id in rows]
    return [row[:3] for row in rows], gr.Dropdown(choices=choices, value=None)


def added(bot: Chatbot, status: str) -> tuple[Any, ...]:
    """What the upload event shows: the table, the upload box emptied, the status, the remove
    control's choices."""
    rows, choices = library(bot)
    return rows, None, status, choices


def upload_dir(bot: Chatbot) -> Path:
    return Path(bot.settings.data_dir) / "uploads"


def save_upload(src: str, dest_dir: Path, max_bytes: int = MAX_UPLOAD_BYTES) -> Path:
    """Copy an uploaded file into `dest_dir` (in the data directory) as `<key>/<name>`.

    The key is a hash of the file's content: an upload never replaces a document it did not
    create (another file of the same name is kept beside it; the same file uploaded again is
    found unchanged), and replacing a document is an explicit removal first. The name keeps
    only letters, digits, `_ - . space` of the original, so no name can reach outside
    `dest_dir`. Files of another type than the loaders read, or over `max_bytes`, are
    refused with UnsupportedDocument."""
    original = Path(src).name
    suffix = Path(original).suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        accepted = ", ".join(sorted(SUPPORTED_SUFFIXES))
        raise UnsupportedDocument(display_path(original), f"not accepted: upload one of {accepted}")
    size = os.path.getsize(src)
    if size > max_bytes:
        raise UnsupportedDocument(
            display_path(original),
            f"too large to upload ({size / 2**20:.0f} MiB, the limit is {max_bytes / 2**20:.0f} "
            "MiB): add it with `ragchat ingest FILE` instead",
        )
    stem = re.sub(r"[^\w\- ]", "_", Path(original).stem).strip(" ._")[:80] or "upload"
    digest = hashlib.sha256()
    with open(src, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    key = digest.hexdigest()[:16]
    root = dest_dir.resolve()
    dest = root / key / f"{stem}{suffix}"
    if not dest.resolve().is_relative_to(root):  # cannot happen with the names above
        raise UnsupportedDocument(display_path(original), "refused: unsafe file name")
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f".{dest.name}.partial")
    shutil.copyfile(src, partial)
    os.replace(partial, dest)
    return dest


def keep_gradio_files_in(data_dir: str | Path) -> Path:
    """Make Gradio keep its upload cache, the only files it serves, in the data directory.

    Gradio reads GRADIO_TEMP_DIR when a Blocks is built and when it is launched; it has no
    parameter for it."""
    cache = Path(data_dir).resolve() / "gradio"
    cache.mkdir(parents=True, exist_ok=True)
    os.environ["GRADIO_TEMP_DIR"] = str(cache)
    return cache


def build_app(
    bot: Chatbot, max_upload_bytes: int = MAX_UPLOAD_BYTES, readiness: Readiness | None = None
) -> gr.Blocks:
    """The page. With `readiness` (from warm_up), it shows the models' loading status until
    they are loaded."""
    keep_gradio_files_in(bot.settings.data_dir)

    def respond(message: str, history: list[dict[str, Any]]):  # type: ignore[no-untyped-def]
        message = (message or "").strip()
        if not message:
            yield history, ""
            return
        messages = [*conversation(history), {"role": "user", "content": message}]
        history = [
            *history,
            {"role": "user", "content": message},
            {"role": "assistant", "content": ""},
        ]
        yield history, ""
        try:
            answer: Answer | None = None
            streamed = ""
            for piece in bot.stream_chat(messages):
                if isinstance(piece, Answer):
                    answer = piece
                else:  # shown as text, its markup left out, until the checked answer
                    streamed += piece
                    history[-1]["content"] = escape_answer(strip_markup(streamed).text)
                    yield history, ""
        except RagChatError as e:
            history[-1]["content"] = escape(str(e))
            gr.Warning(escape_html(str(e)))
            yield history, ""
            return
        assert answer is not None
        history[-1]["content"] = answer_markdown(answer)
        history.extend(answer_messages(answer))
        yield history, ""

    def ingest_uploads(files: list[str] | None, progress: gr.Progress = gr.Progress()) -> Any:
        if not files:
            gr.Warning("Choose files to add first.")
            return added(bot, "")
        progress(0, desc="Reading files")
        saved: list[Path] = []
        refused: list[UnsupportedDocument] = []
        for f in files:
            try:
                saved.append(save_upload(f, upload_dir(bot), max_upload_bytes))
            except UnsupportedDocument as e:
                refused.append(e)

        read = {"done": 0, "total": len(saved)}

        def report_progress(done: int, total: int, path: str) -> None:
            read.update(done=done, total=total)
            progress((done, total), desc=f"Reading {Path(path).name} ({done}/{total} files)")

        def report_embedding(done: int, total: int) -> None:  # most of the time: embedding
            progress(
                (done, total),
                desc=f"Embedding passages ({read['done']}/{read['total']} files read)",
                unit="passages",
            )

        try:
            report = bot.ingest(saved, progress=report_progress, embedding=report_embedding)
        except RagChatError as e:
            gr.Warning(escape_html(str(e)))
            return added(bot, "")
        problems = [(e.path, e.reason) for e in refused]
        problems += [(s.path, s.reason) for s in report.skipped]
        lines = [
            f"Added {report.documents} documents ({report.chunks} passages); "
            f"{report.unchanged} unchanged."
        ]
        lines += [f"Skipped {Path(path).name}: {reason}" for path, reason in problems]
        for line in lines[1:]:
            gr.Warning(escape_html(line))
        return added(bot, "\n\n".join(escape(line) for line in lines))

    def remove_document(doc_id: str | None) -> Any:
        """The explicit way to replace a document: remove it, then add the new version."""
        if not doc_id:
            gr.Warning("Choose a document to remove first.")
            return *library(bot), ""
        try:
            removed = bot.delete(doc_id)
        except RagChatError as e:
            gr.Warning(escape_html(str(e)))
            return *library(bot), ""
        return *library(bot), f"Removed {removed} passages of {escape(doc_id)}."

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
            gr.Warning(escape_html(str(e)))
            return escape(str(e)), ""
        report = (run_dir / "report.html").read_text(encoding="utf-8")
        frame = (
            f'<iframe title="evaluation report" srcdoc="{html.escape(report, quote=True)}" '
            'style="width:100%;height:900px;border:0"></iframe>'
        )
        done = f"{len(result.rows)} questions evaluated; run saved in `{run_dir}`."
        return done, frame

    # no telemetry: Gradio would otherwise report the launch to its servers
    with gr.Blocks(title="ragchat", delete_cache=(3600, 3600), analytics_enabled=False) as demo:
        gr.Markdown(
            "## ragchat — ask your documents\nAnswers cite their passages as [1], [2]; "
            "open a source below an answer to read the passage."
        )
        if readiness is not None:
            model_status = gr.Markdown(readiness.message, elem_id="model-status")
            poll = gr.Timer(1.0, active=not readiness.done)
            poll.tick(
                lambda: (readiness.message, gr.Timer(active=not readiness.done)),
                None,
                [model_status, poll],
                queue=False,
            )
        with gr.Tab("Chat"):
            with gr.Row():
                with gr.Column(scale=3):
                    chat = gr.Chatbot(
                        label="Chat",
                        elem_id="chat",
                        height="75vh",
                        group_consecutive_messages=False,
                        # the answer is Markdown from the model, which documents can steer:
                        # Gradio strips scripts and event handlers from it (tests/test_security.py)
                        sanitize_html=True,
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
                        headers=["title", "passages", "file"],
                        label="Documents",
                        interactive=False,
                        elem_id="documents",
                        wrap=True,
                    )
                    # an upload never replaces a document: replacing one is removing it first
                    with gr.Row():
                        to_remove = gr.Dropdown(
                            label="Remove a document",
                            choices=[],
                            allow_custom_value=True,  # bot.delete takes exact ids only
                            elem_id="remove-choice",
                            scale=3,
                        )
                        remove = gr.Button("Remove", elem_id="remove", scale=1)
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
        # Up to CHAT_CONCURRENCY questions are in progress at once: their retrieval runs side
        # by side, and the generator lets one of them generate at a time (a llama.cpp context
        # is not thread-safe; a model server takes several).
        for trigger in (box.submit, send.click):
            trigger(
                respond,
                [box, chat],
                [chat, box],
                concurrency_limit=CHAT_CONCURRENCY,
                concurrency_id="chat",
            )
        run_eval.click(
            run_evaluation,
            [test_set, limit, retrieval_only],
            [eval_status, eval_report],
            concurrency_limit=1,
            concurrency_id="eval",
        )
        add.click(
            ingest_uploads,
            [files],
            [docs, files, status, to_remove],
            concurrency_limit=1,
            concurrency_id="ingest",
        )
        remove.click(
            remove_document,
            [to_remove],
            [docs, to_remove, status],
            concurrency_limit=1,
            concurrency_id="ingest",
        )
        demo.load(lambda: library(bot), None, [docs, to_remove])
    return demo


@dataclass
class Readiness:
    """What the page says about the models while they load in the background."""

    message: str = "⏳ Loading the models… questions asked now wait for them."
    done: bool = False


def warm_up(bot: Chatbot) -> Readiness:
    """Load the models in the background so the first question does not wait for them; the
    returned Readiness follows the loading (the page shows it)."""
    readiness = Readiness()

    def run() -> None:
        t0 = time.perf_counter()
        try:
            _ = bot.store  # loads the embedder and opens the store
            readiness.message = "⏳ Loading the answer model… questions asked now wait for it."
            bot.generator.count_tokens("warm up")
            readiness.message = (
                f"✅ Ready: {escape(bot.generator.name)} answers, "
                f"{escape(bot.embedder.name)} searches (loaded in "
                f"{time.perf_counter() - t0:.0f} s)."
            )
        except Exception as e:  # reported again, with its message, on the first question
            log.exception("warm-up failed")
            readiness.message = f"⚠️ The models could not be loaded: {escape(str(e))}"
        readiness.done = True

    threading.Thread(target=run, daemon=True, name="ragchat-warm-up").start()
    return readiness


def parse_auth(value: str | None) -> tuple[str, str] | None:
    """`USER:PASSWORD` (from --auth or RAGCHAT_AUTH) as Gradio's auth pair; None when unset."""
    if not value:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user.strip() or not password:
        raise ConfigError(
            "--auth (or RAGCHAT_AUTH) must be USER:PASSWORD with both parts non-empty, "
            "e.g. RAGCHAT_AUTH='alice:a long passphrase'."
        )
    return user.strip(), password


def check_exposure(host: str, auth: tuple[str, str] | None) -> None:
    """Refuse to serve the documents beyond this machine without a password."""
    if auth is None and not is_loopback_host(host):
        raise ConfigError(
            f"Refusing to listen on {host} without a password: anyone who can reach this "
            "machine could read your documents. Pass --auth USER:PASSWORD (or set RAGCHAT_AUTH), "
            "or keep the default --host 127.0.0.1."
        )


def launch(
    bot: Chatbot,
    host: str = "127.0.0.1",
    port: int = 7860,
    auth: tuple[str, str] | None = None,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
    **kwargs: Any,
) -> gr.Blocks:
    """Serve the chat; see check_exposure for when it refuses. Blocks unless the Gradio option
    `prevent_thread_lock=True` is passed, then returns the app (close it with `.close()`)."""
    check_exposure(host, auth)
    readiness = warm_up(bot)
    demo = build_app(bot, max_upload_bytes, readiness)
    demo.queue(default_concurrency_limit=4)
    settings = bot.settings
    from starlette.middleware import Middleware

    demo.launch(
        # Host, Origin and file-address checks, and the Content-Security-Policy (ui/guard.py)
        app_kwargs={"middleware": [Middleware(Guard, loopback=is_loopback_host(host))]},
        server_name=host,
        server_port=port,
        share=False,
        show_error=True,
        auth=auth,
        allowed_paths=[],
        blocked_paths=[settings.store_path, str(settings.models_dir), str(upload_dir(bot))],
        max_file_size=max_upload_bytes,
        **kwargs,
    )
    return demo
