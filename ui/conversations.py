"""The chat's conversations, kept in SQLite in the data directory so a reload or a restart
resumes them: listed newest first, renamed, deleted, exported as Markdown.

A conversation is its turns: each the question asked and the answer's JSON form
(rag/records.py), from which the chat shows it again and a follow-up is rewritten as before.
One connection per call, WAL journal: the chat's worker threads may write at once."""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rag.errors import ConfigError
from rag.records import answer_from_record, answer_record
from rag.refusal import explain
from rag.types import Answer
from ui.render import around_markers

_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    owner TEXT NOT NULL,
    title TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS turns (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    question TEXT NOT NULL,
    answer TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS turns_by_conversation ON turns(conversation, id);
"""
TITLE_CHARS = 80
# what Markdown or HTML would read in a line of the export (a tag, link, image, heading, code)
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#!|~:@&])")


@dataclass(frozen=True, slots=True)
class Conversation:
    id: int
    title: str  # as typed: escape it where it is shown
    created: float
    updated: float


class Conversations:
    """The conversations of one person (`owner`: the signed-in user; "" without a password)
    in one data directory's `conversations.sqlite3`: another person's cannot be read, renamed
    or deleted through it."""

    def __init__(self, path: str | Path, owner: str = "") -> None:
        self.path = Path(path)
        self.owner = owner
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._db() as db:
            db.executescript(_SCHEMA)

    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA foreign_keys=ON")
            with db:  # one transaction: committed, or rolled back on error
                yield db
        finally:
            db.close()

    def create(self, title: str = "New chat") -> Conversation:
        now = time.time()
        with self._db() as db:
            cur = db.execute(
                "INSERT INTO conversations (owner, title, created, updated) VALUES (?, ?, ?, ?)",
                (self.owner, _title(title), now, now),
            )
            return Conversation(int(cur.lastrowid or 0), _title(title), now, now)

    def listed(self) -> list[Conversation]:
        """The owner's conversations, the last one used first."""
        with self._db() as db:
            rows = db.execute(
                "SELECT id, title, created, updated FROM conversations WHERE owner = ? "
                "ORDER BY updated DESC, id DESC",
                (self.owner,),
            ).fetchall()
        return [Conversation(int(i), str(t), float(c), float(u)) for i, t, c, u in rows]

    def get(self, conversation: int) -> Conversation:
        with self._db() as db:
            row = db.execute(
                "SELECT id, title, created, updated FROM conversations WHERE id = ? AND owner = ?",
                (conversation, self.owner),
            ).fetchone()
        if row is None:
            raise ConfigError(
                f"No conversation {conversation}: it was deleted; choose another or start a "
                "new chat."
            )
        return Conversation(int(row[0]), str(row[1]), float(row[2]), float(row[3]))

    def add(self, conversation: int, answer: Answer) -> None:
        """Keep a turn: the question and its answer. The first one names the conversation
        while it still has the default name."""
        self.get(conversation)
        record = json.dumps(answer_record(answer), ensure_ascii=False)
        with self._db() as db:
            first = not db.execute(
                "SELECT 1 FROM turns WHERE conversation = ? LIMIT 1", (conversation,)
            ).fetchone()
            db.execute(
                "INSERT INTO turns (conversation, question, answer) VALUES (?, ?, ?)",
                (conversation, answer.question, record),
            )
            db.execute(
                "UPDATE conversations SET updated = ? WHERE id = ?", (time.time(), conversation)
            )
            if first:
                db.execute(
                    "UPDATE conversations SET title = ? WHERE id = ? AND title = 'New chat'",
                    (_title(answer.question), conversation),
                )

    def answers(self, conversation: int) -> list[Answer]:
        """The conversation's answers, in order (each holds its question)."""
        self.get(conversation)
        with self._db() as db:
            rows = db.execute(
                "SELECT answer FROM turns WHERE conversation = ? ORDER BY id", (conversation,)
            ).fetchall()
        return [answer_from_record(json.loads(row[0])) for row in rows]

    def messages(self, conversation: int) -> list[dict[str, str]]:
        """The conversation as chat messages (questions and answer texts), for a follow-up's
        rewriting (Chatbot.stream_chat)."""
        turns: list[dict[str, str]] = []
        for answer in self.answers(conversation):
            turns += [
                {"role": "user", "content": answer.question},
                {"role": "assistant", "content": answer.text},
            ]
        return turns

    def rename(self, conversation: int, title: str) -> Conversation:
        if not title.strip():
            raise ConfigError("A conversation's name cannot be empty: type a name first.")
        self.get(conversation)
        with self._db() as db:
            db.execute(
                "UPDATE conversations SET title = ? WHERE id = ?", (_title(title), conversation)
            )
        return self.get(conversation)

    def delete(self, conversation: int) -> None:
        self.get(conversation)
        with self._db() as db:
            db.execute("DELETE FROM conversations WHERE id = ?", (conversation,))

    def markdown(self, conversation: int) -> str:
        """The conversation as Markdown: each question, its answer, and under it the cited
        passages with their exact quotes (text from documents is quoted, not rendered)."""
        c = self.get(conversation)
        lines = [f"# {_md_line(c.title)}", ""]
        for answer in self.answers(conversation):
            lines += [f"## {_md_line(answer.question)}", "", _md_block(answer.text), ""]
            if answer.refused and answer.signals:
                lines += [f"_{_md_line(r)}_" for r in explain(answer.signals)] + [""]
            for cite in answer.citations:
                page = f", page {cite.chunk.page}" if cite.chunk.page else ""
                where = f"{_md_line(cite.chunk.title)}{page} ({_md_line(cite.chunk.source)})"
                lines += [
                    f"[{cite.n}] {where}",
                    "",
                    *[f"> {_md_line(q)}" for q in cite.quote.splitlines() if q.strip()],
                    "",
                ]
        return "\n".join(lines).rstrip() + "\n"


def _title(text: str) -> str:
    """A conversation's name: one line, at most TITLE_CHARS characters."""
    line = " ".join(text.split())
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1] + "…"


def _md_line(text: str) -> str:
    """Text from a document or a person, inert in Markdown: no tag, link, image or heading,
    on one line."""
    return _MD_SPECIAL.sub(r"\\\1", re.sub(r"\s+", " ", str(text)))


def _md_block(text: str) -> str:
    """An answer's text for the export: inert like `_md_line`, its `[n]` markers kept."""
    return around_markers(text, _md_line, lambda m: m).strip()
