"""The Chat tab: conversations beside the chat, the question box with Ask and Stop.

Answers stream as escaped text, then become ragchat's HTML (ui/render.py); conversations are
kept per user in the data directory (ui/conversations.py). Everything goes through the public
API (`Chatbot.stream_chat`).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import gradio as gr

from rag.errors import RagChatError
from rag.markup import strip_markup
from rag.types import Answer
from ui.conversations import Conversations
from ui.render import answer_html, answer_messages, escape, escape_answer, escape_html, shown

if TYPE_CHECKING:
    from ui.app import OnLoad, Session

# Up to CHAT_CONCURRENCY questions are in progress at once: their retrieval runs side by side,
# and the generator lets one of them generate at a time (a llama.cpp context is not
# thread-safe; a model server takes several).
CHAT_CONCURRENCY = 8


def _choices(convs: Conversations) -> list[tuple[str, int]]:
    return [(c.title, c.id) for c in convs.listed()]


class ChatPanel:
    """The tab's components and the handlers of its events, for one Session."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def build(self) -> OnLoad:
        """Lay the tab out and wire its events; what to run when the page loads."""
        with gr.Row():
            with gr.Column(scale=1, min_width=230):
                side = self._conversations_column()
            with gr.Column(scale=4):
                main = self._chat_column()
        c = SimpleNamespace(**vars(side), **vars(main), current=gr.State(None))  # open conv id
        self._wire(c)
        return self.start, [c.picked, c.chat, c.current, c.name]

    def _conversations_column(self) -> SimpleNamespace:
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
        return SimpleNamespace(
            new=new, picked=picked, name=name, rename=rename, export=export, delete=delete,
            sure=sure, exported=exported,
        )  # fmt: skip

    def _chat_column(self) -> SimpleNamespace:
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
        return SimpleNamespace(chat=chat, box=box, send=send, stop=stop)

    def _wire(self, c: SimpleNamespace) -> None:
        events = [
            trigger(
                self.respond,
                [c.box, c.chat, c.current],
                [c.chat, c.box, c.current, c.picked],
                concurrency_limit=CHAT_CONCURRENCY,
                concurrency_id="chat",
            )
            for trigger in (c.box.submit, c.send.click)
        ]
        c.stop.click(None, None, None, cancels=events)
        c.picked.input(self.opened, [c.picked], [c.chat, c.current, c.name])
        c.new.click(self.new_chat, None, [c.chat, c.current, c.name, c.picked])
        c.rename.click(self.renamed, [c.current, c.name], [c.picked])
        c.delete.click(lambda: gr.Button(visible=True), None, [c.sure])
        c.sure.click(self.deleted, [c.current], [c.picked, c.chat, c.current, c.name, c.sure])
        c.export.click(self.exported_file, [c.current], [c.exported])

    # -- handlers ---------------------------------------------------------------------------

    def respond(  # type: ignore[no-untyped-def]
        self, message: str, history: list[dict[str, Any]], conv: int | None, request: gr.Request
    ):
        """Stream the answer into the chat, then show it checked, with its citations."""
        message = (message or "").strip()
        convs = self.session.conversations(request)
        if not message:
            yield history, "", conv, gr.Radio()
            return
        try:
            bot = self.session.bot_for(request)
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
            stream.close()
        assert answer is not None
        convs.add(conv, answer)
        history[-1]["content"] = answer_html(answer)
        history.extend(answer_messages(answer))
        yield history, "", conv, gr.Radio(choices=_choices(convs), value=conv)

    def opened(self, conv: int | None, request: gr.Request):  # type: ignore[no-untyped-def]
        convs = self.session.conversations(request)
        if conv is None:
            return [], None, ""
        try:
            return shown(convs.answers(conv)), conv, convs.get(conv).title
        except RagChatError as e:
            gr.Warning(escape_html(str(e)))
            return [], None, ""

    def start(self, request: gr.Request):  # type: ignore[no-untyped-def]
        """On load: the conversations, the last one used opened."""
        listed = _choices(self.session.conversations(request))
        conv = listed[0][1] if listed else None
        history, conv, title = self.opened(conv, request)
        return gr.Radio(choices=listed, value=conv), history, conv, title

    def new_chat(self):  # type: ignore[no-untyped-def]
        return [], None, "", gr.Radio(value=None)

    def renamed(self, conv: int | None, title: str, request: gr.Request):  # type: ignore[no-untyped-def]
        convs = self.session.conversations(request)
        if conv is None:
            gr.Warning("Open a conversation first, then rename it.")
            return gr.Radio()
        try:
            convs.rename(conv, title)
        except RagChatError as e:
            gr.Warning(escape_html(str(e)))
        return gr.Radio(choices=_choices(convs), value=conv)

    def deleted(self, conv: int | None, request: gr.Request):  # type: ignore[no-untyped-def]
        convs = self.session.conversations(request)
        if conv is not None:
            try:
                convs.delete(conv)
            except RagChatError as e:
                gr.Warning(escape_html(str(e)))
        listed = _choices(convs)
        return gr.Radio(choices=listed, value=None), [], None, "", gr.Button(visible=False)

    def exported_file(self, conv: int | None, request: gr.Request):  # type: ignore[no-untyped-def]
        convs = self.session.conversations(request)
        if conv is None:
            gr.Warning("Open a conversation first, then export it.")
            return gr.File(visible=False)
        folder = Path(self.session.bot.settings.data_dir) / "exports"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"conversation-{conv}.md"
        path.write_text(convs.markdown(conv), encoding="utf-8")
        return gr.File(value=str(path), visible=True)
