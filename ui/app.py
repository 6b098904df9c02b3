"""The Gradio chat: the page's layout and events over the public API (Chatbot), nothing more.

Tabs: Chat (conversations beside the chat: new, resume, rename, delete, export; a stop button
while an answer streams), Library (ui/library.py), Settings (ui/preferences.py) and Evaluate
(ui/evaluate.py). What an answer shows is ui/render.py; conversations are kept in SQLite
(ui/conversations.py); the models' loading status is shown until they are loaded.

Security (docs/security.md): everything taken from documents or the model is escaped
(ui/render.py); ui/guard.py adds the outer wall: loopback Host headers only, no cross-origin
POST, no file named by a web address, and a Content-Security-Policy that lets the page load
nothing from elsewhere. Uploads are checked and copied under the data directory
(ui/library.py); the server binds to 127.0.0.1 and refuses any other address without a
password; it serves no file but Gradio's own cache, kept in the data directory.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from rag.config import ANSWER_LANGUAGES, RETRIEVAL_MODES
from rag.errors import ConfigError, RagChatError, UnsupportedDocument
from rag.loaders import SUPPORTED_SUFFIXES
from rag.markup import strip_markup
from rag.pipeline import Chatbot
from rag.types import Answer
from ui import evaluate, library, preferences
from ui.conversations import Conversations
from ui.guard import Guard, is_loopback_host
from ui.library import MAX_UPLOAD_BYTES, save_upload, upload_dir
from ui.render import (
    CSS,
    answer_html,
    answer_messages,
    escape,
    escape_answer,
    escape_html,
    shown,
    source_message,
)

__all__ = ["build_app", "launch", "save_upload", "source_message", "escape", "answer_html"]

log = logging.getLogger(__name__)

CHAT_CONCURRENCY = 8  # questions in progress at once (see build_app)


def user_of(request: gr.Request | None) -> str:
    """Who is asking: the signed-in user with --auth, "" on a loopback chat without one."""
    return str(getattr(request, "username", None) or "")


def keep_gradio_files_in(data_dir: str | Path) -> Path:
    """Make Gradio keep its upload cache, the only files it serves, in the data directory.

    Gradio reads GRADIO_TEMP_DIR when a Blocks is built and when it is launched; it has no
    parameter for it."""
    cache = Path(data_dir).resolve() / "gradio"
    cache.mkdir(parents=True, exist_ok=True)
    os.environ["GRADIO_TEMP_DIR"] = str(cache)
    return cache


class Session:
    """What the page's events share: the Chatbot, one Chatbot per other answer model chosen
    in Settings (each keeps its model loaded), and the conversations."""

    def __init__(self, bot: Chatbot) -> None:
        self.bot = bot
        self.by_model: dict[str, Chatbot] = {}
        self.loading: dict[str, Readiness] = {}  # per other model: its loading, for Settings
        self._lock = threading.Lock()
        self.db = Path(bot.settings.data_dir) / "conversations.sqlite3"

    def conversations(self, request: gr.Request | None) -> Conversations:
        return Conversations(self.db, user_of(request))

    def bot_for(self, request: gr.Request | None) -> Chatbot:
        """The Chatbot for the user's settings (ui/preferences.py)."""
        chosen = preferences.load(self.bot.settings, user_of(request))
        base = self.bot if chosen.llm == self.bot.settings.llm else self.model_bot(chosen.llm)
        return base.configured(
            top_k=chosen.top_k, retrieval=chosen.retrieval, answer_language=chosen.answer_language
        )

    def model_bot(self, llm: str) -> Chatbot:
        """The Chatbot answering with another model than the started one, made once."""
        with self._lock:
            if llm not in self.by_model:
                self.by_model[llm] = self.bot.configured(llm=llm)
            return self.by_model[llm]

    def load_model(self, llm: str) -> Readiness:
        """Start loading another answer model in the background (once); its Readiness says
        how it goes."""
        bot = self.model_bot(llm)
        with self._lock:
            if llm not in self.loading:
                self.loading[llm] = warm_up(bot, f"⏳ Loading {escape(llm)}…")
            return self.loading[llm]


def _conversation_choices(convs: Conversations) -> list[tuple[str, int]]:
    return [(c.title, c.id) for c in convs.listed()]


def chat_tab(session: Session) -> OnLoad:
    """Conversations beside the chat, the question box with Ask and Stop."""
    with gr.Row():
        with gr.Column(scale=1, min_width=230):
            new = gr.Button("New chat", elem_id="new-chat")
            picked = gr.Radio(
                label="Conversations", choices=[], elem_id="conversations", interactive=True
            )
            name = gr.Textbox(label="Name", elem_id="conversation-name", max_lines=1)
            with gr.Row():
                rename = gr.Button("Rename", size="sm", elem_id="rename")
                export = gr.Button("Export", size="sm", elem_id="export")
                delete = gr.Button("Delete", size="sm", variant="stop", elem_id="delete-chat")
            sure = gr.Button(
                "Delete this conversation for good",
                variant="stop",
                visible=False,
                elem_id="delete-chat-confirm",
            )
            exported = gr.File(label="Markdown", visible=False, elem_id="exported")
        with gr.Column(scale=4):
            chat = gr.Chatbot(
                label="Chat",
                elem_id="chat",
                height="72vh",
                group_consecutive_messages=False,
                # the answer is ragchat's HTML over escaped text (ui/render.py); Gradio strips
                # scripts and event handlers from anything else (tests/test_security.py)
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
                stop = gr.Button("Stop", scale=1, elem_id="stop", variant="stop")
    current = gr.State(None)  # the open conversation's id

    def respond(message: str, history: list[dict[str, Any]], conv: int | None, request: gr.Request):  # type: ignore[no-untyped-def]
        message = (message or "").strip()
        convs = session.conversations(request)
        if not message:
            yield history, "", conv, gr.Radio()
            return
        try:
            bot = session.bot_for(request)
            if conv is None:
                conv = convs.create().id
            messages = [*convs.messages(conv), {"role": "user", "content": message}]
        except RagChatError as e:
            gr.Warning(escape_html(str(e)))
            yield history, message, conv, gr.Radio()
            return
        history = [
            *history,
            {"role": "user", "content": escape(message)},
            {"role": "assistant", "content": ""},
        ]
        yield history, "", conv, gr.Radio()
        stream = bot.stream_chat(messages)
        answer: Answer | None = None
        streamed = ""
        try:
            for piece in stream:
                if isinstance(piece, Answer):
                    answer = piece
                else:  # shown as text, its markup left out, until the checked answer
                    streamed += piece
                    history[-1]["content"] = escape_answer(strip_markup(streamed).text)
                    yield history, "", conv, gr.Radio()
        except RagChatError as e:
            history[-1]["content"] = escape(str(e))
            gr.Warning(escape_html(str(e)))
            yield history, "", conv, gr.Radio()
            return
        finally:  # Stop closes this generator: the model's generation ends with it
            close = getattr(stream, "close", None)
            if callable(close):
                close()
        assert answer is not None
        convs.add(conv, answer)
        history[-1]["content"] = answer_html(answer)
        history.extend(answer_messages(answer))
        yield history, "", conv, gr.Radio(choices=_conversation_choices(convs), value=conv)

    def opened(conv: int | None, request: gr.Request):  # type: ignore[no-untyped-def]
        convs = session.conversations(request)
        if conv is None:
            return [], None, ""
        try:
            return shown(convs.answers(conv)), conv, convs.get(conv).title
        except RagChatError as e:
            gr.Warning(escape_html(str(e)))
            return [], None, ""

    def start(request: gr.Request):  # type: ignore[no-untyped-def]
        """On load: the conversations, the last one used opened."""
        convs = session.conversations(request)
        listed = _conversation_choices(convs)
        conv = listed[0][1] if listed else None
        history, conv, title = opened(conv, request)
        return gr.Radio(choices=listed, value=conv), history, conv, title

    def new_chat():  # type: ignore[no-untyped-def]
        return [], None, "", gr.Radio(value=None)

    def renamed(conv: int | None, title: str, request: gr.Request):  # type: ignore[no-untyped-def]
        convs = session.conversations(request)
        if conv is None:
            gr.Warning("Open a conversation first, then rename it.")
            return gr.Radio()
        try:
            convs.rename(conv, title)
        except RagChatError as e:
            gr.Warning(escape_html(str(e)))
        return gr.Radio(choices=_conversation_choices(convs), value=conv)

    def deleted(conv: int | None, request: gr.Request):  # type: ignore[no-untyped-def]
        convs = session.conversations(request)
        if conv is not None:
            try:
                convs.delete(conv)
            except RagChatError as e:
                gr.Warning(escape_html(str(e)))
        listed = _conversation_choices(convs)
        return gr.Radio(choices=listed, value=None), [], None, "", gr.Button(visible=False)

    def exported_file(conv: int | None, request: gr.Request):  # type: ignore[no-untyped-def]
        convs = session.conversations(request)
        if conv is None:
            gr.Warning("Open a conversation first, then export it.")
            return gr.File(visible=False)
        folder = Path(session.bot.settings.data_dir) / "exports"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"conversation-{conv}.md"
        path.write_text(convs.markdown(conv), encoding="utf-8")
        return gr.File(value=str(path), visible=True)

    # Up to CHAT_CONCURRENCY questions are in progress at once: their retrieval runs side
    # by side, and the generator lets one of them generate at a time (a llama.cpp context
    # is not thread-safe; a model server takes several).
    events = [
        trigger(
            respond,
            [box, chat, current],
            [chat, box, current, picked],
            concurrency_limit=CHAT_CONCURRENCY,
            concurrency_id="chat",
        )
        for trigger in (box.submit, send.click)
    ]
    stop.click(None, None, None, cancels=events)  # type: ignore[arg-type]
    picked.input(opened, [picked], [chat, current, name])
    new.click(new_chat, None, [chat, current, name, picked])
    rename.click(renamed, [current, name], [picked])
    delete.click(lambda: gr.Button(visible=True), None, [sure])
    sure.click(deleted, [current], [picked, chat, current, name, sure])
    export.click(exported_file, [current], [exported])
    return start, [picked, chat, current, name]


def library_tab(session: Session, max_upload_bytes: int) -> OnLoad:
    """The documents: search, the table, remove (confirmed), read again, add."""
    bot = session.bot
    search = gr.Textbox(
        label="Search documents", placeholder="title or file name", elem_id="doc-search"
    )
    docs = gr.Dataframe(
        headers=library.HEADERS,
        label="Documents",
        interactive=False,
        elem_id="documents",
        wrap=False,
    )
    with gr.Row():
        chosen = gr.Dropdown(
            label="Document",
            choices=[],
            allow_custom_value=True,  # bot.delete takes exact ids only
            elem_id="remove-choice",
            scale=3,
        )
        again = gr.Button("Read again", elem_id="reingest", scale=1)
        remove = gr.Button("Remove", elem_id="remove", scale=1, variant="stop")
    sure = gr.Button(
        "Remove this document for good", variant="stop", visible=False, elem_id="remove-confirm"
    )
    status = gr.Markdown(elem_id="ingest-status")
    skipped = gr.Markdown(elem_id="skipped")
    files = gr.File(
        label="Add documents",
        file_count="multiple",
        file_types=sorted(SUPPORTED_SUFFIXES),
        elem_id="upload",
    )
    add = gr.Button("Add to library", elem_id="add", variant="primary")

    def listing(query: str = "") -> tuple[Any, Any, str]:
        try:
            documents = bot.documents()
        except RagChatError as e:
            gr.Warning(escape_html(str(e)))
            documents = []
        problems = library.last_skipped(bot)
        kept = ""
        if problems:
            kept = "**Skipped in the last upload:**\n\n" + "\n".join(
                f"- {escape(p['file'])}: {escape(p['reason'])}" for p in problems
            )
        return (
            library.rows(documents, query or ""),
            gr.Dropdown(choices=library.choices(documents), value=None),
            kept,
        )

    def ingest_uploads(paths: list[str] | None, progress: gr.Progress = gr.Progress()):  # type: ignore[no-untyped-def]
        query = ""  # the whole list after an upload, so the new documents show
        if not paths:
            gr.Warning("Choose files to add first.")
            return *listing(query), None, ""
        saved: list[Path] = []
        refused: list[UnsupportedDocument] = []
        for f in paths:
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
            return *listing(query), None, ""
        problems = [(e.path, e.reason) for e in refused] + [
            (s.path, s.reason) for s in report.skipped
        ]
        library.keep_skipped(bot, problems)
        line = (
            f"Added {report.documents} documents ({report.chunks} passages); "
            f"{report.unchanged} unchanged; {len(problems)} skipped."
        )
        return *listing(query), None, escape(line)

    def removed(doc_id: str | None, query: str):  # type: ignore[no-untyped-def]
        """The explicit way to replace a document: remove it, then add the new version."""
        if not doc_id:
            gr.Warning("Choose a document to remove first.")
            return *listing(query), "", gr.Button(visible=False)
        try:
            n = bot.delete(doc_id)
            done = f"Removed {n} passages of {escape(doc_id)}."
        except RagChatError as e:
            gr.Warning(escape_html(str(e)))
            done = ""
        return *listing(query), done, gr.Button(visible=False)

    def read_again(doc_id: str | None, query: str):  # type: ignore[no-untyped-def]
        if not doc_id:
            gr.Warning("Choose a document to read again first.")
            return *listing(query), ""
        try:
            done = library.reingest(bot, doc_id)
        except RagChatError as e:
            gr.Warning(escape_html(str(e)))
            done = ""
        return *listing(query), escape(done)

    shown_now = [docs, chosen, skipped]
    add_outputs = [*shown_now, files, status]
    search.change(listing, [search], shown_now, queue=False)
    add.click(
        ingest_uploads,
        [files],
        add_outputs,
        concurrency_limit=1,
        concurrency_id="ingest",
    )
    remove.click(lambda: gr.Button(visible=True), None, [sure])
    sure.click(removed, [chosen, search], [*shown_now, status, sure], concurrency_id="ingest")
    again.click(read_again, [chosen, search], [*shown_now, status], concurrency_id="ingest")
    return (lambda: listing("")), shown_now


def settings_tab(session: Session) -> OnLoad:
    """The answer model, top_k, retrieval mode and answer language, saved per user."""
    settings = session.bot.settings
    started = preferences.Preferences.of(settings)
    model = gr.Dropdown(
        label="Answer model (a .gguf of the models folder, or openai:http://host:port/v1)",
        choices=preferences.models(settings, started.llm),
        value=started.llm,
        allow_custom_value=True,
        elem_id="set-model",
    )
    top_k = gr.Number(
        label="Passages retrieved (top_k)", value=started.top_k, precision=0, elem_id="set-top-k"
    )
    retrieval = gr.Radio(
        label="Retrieval",
        choices=list(RETRIEVAL_MODES),
        value=started.retrieval,
        elem_id="set-retrieval",
    )
    language = gr.Dropdown(
        label="Answer language (auto: the question's)",
        choices=list(ANSWER_LANGUAGES),
        value=started.answer_language,
        elem_id="set-language",
    )
    save = gr.Button("Save settings", variant="primary", elem_id="set-save")
    status = gr.Markdown(elem_id="set-status")
    model_status = gr.Markdown(elem_id="set-model-status")
    poll = gr.Timer(1.0, active=False)

    def model_loading(request: gr.Request):  # type: ignore[no-untyped-def]
        """The user's answer model's loading status, and whether to keep asking."""
        llm = preferences.load(settings, user_of(request)).llm
        readiness = session.loading.get(llm) if llm != settings.llm else None
        if readiness is None:
            return "", gr.Timer(active=False)
        return readiness.message, gr.Timer(active=not readiness.done)

    def saved(llm: str, k: float, mode: str, lang: str, request: gr.Request):  # type: ignore[no-untyped-def]
        try:
            chosen = preferences.Preferences(llm, k, mode, lang).checked(settings)  # type: ignore[arg-type]
        except ConfigError as e:
            gr.Warning(escape_html(str(e)))
            return f"⚠️ {escape(str(e))}", gr.Timer(active=False)
        preferences.save(settings, chosen, user_of(request))
        if chosen.llm != settings.llm:
            session.load_model(chosen.llm)  # now, not on the next question
        return escape("Saved: the next answer uses these settings."), gr.Timer(active=True)

    def loaded(request: gr.Request):  # type: ignore[no-untyped-def]
        p = preferences.load(settings, user_of(request))
        return p.llm, p.top_k, p.retrieval, p.answer_language

    save.click(saved, [model, top_k, retrieval, language], [status, poll])
    poll.tick(model_loading, None, [model_status, poll], queue=False)
    return loaded, [model, top_k, retrieval, language]


# what a tab runs when the page loads: a function and the components it fills
OnLoad = tuple[Any, list[Any]]


def build_app(
    bot: Chatbot, max_upload_bytes: int = MAX_UPLOAD_BYTES, readiness: Readiness | None = None
) -> gr.Blocks:
    """The page. With `readiness` (from warm_up), it shows the models' loading status until
    they are loaded."""
    keep_gradio_files_in(bot.settings.data_dir)
    session = Session(bot)
    # no telemetry: Gradio would otherwise report the launch to its servers
    with gr.Blocks(title="ragchat", delete_cache=(3600, 3600), analytics_enabled=False) as demo:
        gr.HTML(f"<style>{CSS}</style>", padding=False)
        gr.Markdown(
            "## ragchat — ask your documents\nAnswers cite their passages as [1], [2]: "
            "select a number to read the passage, its quote highlighted."
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
        on_load = []
        with gr.Tab("Chat"):
            on_load.append(chat_tab(session))
        with gr.Tab("Library"):
            on_load.append(library_tab(session, max_upload_bytes))
        with gr.Tab("Settings"):
            on_load.append(settings_tab(session))
        with gr.Tab("Evaluate"):
            evaluate.tab(bot)
        for fn, outputs in on_load:
            demo.load(fn, None, outputs)
    return demo


@dataclass
class Readiness:
    """What the page says about the models while they load in the background."""

    message: str = "⏳ Loading the models… questions asked now wait for them."
    done: bool = False


def warm_up(bot: Chatbot, message: str = "") -> Readiness:
    """Load the models in the background so the first question does not wait for them; the
    returned Readiness follows the loading (the page shows it), from `message`."""
    readiness = Readiness(message) if message else Readiness()

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
