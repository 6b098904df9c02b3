"""The Gradio chat: the page's layout and events over the public API (Chatbot), nothing more.

Tabs: Chat (ui/chat.py: conversations beside the chat, new, resume, rename, delete, export; a
stop button while an answer streams), Library (ui/library.py), Settings (here; the values are
kept by ui/preferences.py) and Evaluate (ui/evaluate.py). What an answer shows is ui/render.py;
conversations are kept in SQLite (ui/conversations.py); the models' loading status is shown
until they are loaded, and another model's in Settings once it is chosen.

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
from rag.errors import ConfigError
from rag.pipeline import Chatbot
from ui import evaluate, preferences
from ui.chat import ChatPanel
from ui.conversations import Conversations
from ui.guard import Guard, is_loopback_host
from ui.library import MAX_UPLOAD_BYTES, LibraryPanel, save_upload, upload_dir
from ui.render import CSS, answer_html, escape, escape_html, source_message

__all__ = ["build_app", "launch", "save_upload", "source_message", "escape", "answer_html"]

log = logging.getLogger(__name__)


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
        self._conversations: dict[str, Conversations] = {}  # per user
        self._lock = threading.Lock()
        self.db = Path(bot.settings.data_dir) / "conversations.sqlite3"

    def conversations(self, request: gr.Request | None) -> Conversations:
        """The asking user's conversations (opened, and its schema made, once per user)."""
        owner = user_of(request)
        with self._lock:
            if owner not in self._conversations:
                self._conversations[owner] = Conversations(self.db, owner)
            return self._conversations[owner]

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
        """Start loading another answer model in the background (once, or again after it
        failed); its Readiness says how it goes."""
        bot = self.model_bot(llm)
        with self._lock:
            tried = self.loading.get(llm)
            # again after a failure: the file may be there now
            if tried is None or (tried.done and tried.message.startswith("⚠️")):
                self.loading[llm] = warm_up(bot, f"⏳ Loading {escape(llm)}…")
            return self.loading[llm]


class SettingsPanel:
    """The Settings tab: the answer model (with its loading status), top_k, retrieval mode
    and answer language, saved per user (ui/preferences.py)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.settings = session.bot.settings

    def build(self) -> OnLoad:
        """Lay the tab out and wire its events; what to run when the page loads."""
        started = preferences.Preferences.of(self.settings)
        # not editable until the page has loaded this user's saved values: an edit made
        # before would be overwritten by them
        fields = [
            gr.Dropdown(
                label="Answer model (a .gguf of the models folder, or openai:http://host:port/v1)",
                choices=preferences.models(self.settings, started.llm),
                value=started.llm,
                allow_custom_value=True,
                elem_id="set-model",
                interactive=False,
            ),
            gr.Number(
                label="Passages retrieved (top_k)",
                value=started.top_k,
                precision=0,
                elem_id="set-top-k",
                interactive=False,
            ),
            gr.Radio(
                label="Retrieval",
                choices=list(RETRIEVAL_MODES),
                value=started.retrieval,
                elem_id="set-retrieval",
                interactive=False,
            ),
            gr.Dropdown(
                label="Answer language (auto: the question's)",
                choices=list(ANSWER_LANGUAGES),
                value=started.answer_language,
                elem_id="set-language",
                interactive=False,
            ),
        ]
        save = gr.Button("Save settings", variant="primary", elem_id="set-save", interactive=False)
        status = gr.Markdown(elem_id="set-status")
        model_status = gr.Markdown(elem_id="set-model-status")
        poll = gr.Timer(1.0, active=False)
        save.click(self.saved, fields, [status, poll])
        poll.tick(self.model_loading, None, [model_status, poll], queue=False)
        return self.loaded, [*fields, save]

    def model_loading(self, request: gr.Request):  # type: ignore[no-untyped-def]
        """The user's answer model's loading status, and whether to keep asking."""
        llm = preferences.load(self.settings, user_of(request)).llm
        readiness = self.session.loading.get(llm) if llm != self.settings.llm else None
        if readiness is None:
            return "", gr.Timer(active=False)
        return readiness.message, gr.Timer(active=not readiness.done)

    def saved(self, llm: str, k: float, mode: str, lang: str, request: gr.Request):  # type: ignore[no-untyped-def]
        try:
            chosen = preferences.Preferences(llm, k, mode, lang).checked(self.settings)  # type: ignore[arg-type]
        except ConfigError as e:
            gr.Warning(escape_html(str(e)))
            return f"⚠️ {escape(str(e))}", gr.Timer(active=False)
        preferences.save(self.settings, chosen, user_of(request))
        if chosen.llm != self.settings.llm:
            self.session.load_model(chosen.llm)  # now, not on the next question
        return escape("Saved: the next answer uses these settings."), gr.Timer(active=True)

    def loaded(self, request: gr.Request):  # type: ignore[no-untyped-def]
        p = preferences.load(self.settings, user_of(request))
        values = (p.llm, p.top_k, p.retrieval, p.answer_language)
        return *(gr.update(value=v, interactive=True) for v in values), gr.update(interactive=True)


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
            on_load.append(ChatPanel(session).build())
        with gr.Tab("Library"):
            on_load.append(LibraryPanel(session, max_upload_bytes).build())
        with gr.Tab("Settings"):
            on_load.append(SettingsPanel(session).build())
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
            readiness.message = "⏳ Preparing the answer model… questions asked now wait for it."
            bot.warm()
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
        blocked_paths=[
            settings.store_path,
            str(settings.models_dir),
            str(upload_dir(bot)),
            str(settings.kv_dir),
        ],
        max_file_size=max_upload_bytes,
        **kwargs,
    )
    return demo
