"""The document library: the documents in the store as a table (title, type, pages, passages,
added, size), searched by title or name; uploads checked and saved; a document removed or
read again. Through the public API only: `Chatbot.documents()`, `delete`, `ingest`.

An upload never replaces a document it did not create (`save_upload`). The files the last
upload skipped, and why, are kept in the data directory and shown until the next upload."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr

from rag.errors import RagChatError, UnsupportedDocument
from rag.language import fold
from rag.loaders import SUPPORTED_SUFFIXES, display_path, source_file
from rag.pipeline import Chatbot
from ui.render import escape, escape_html

if TYPE_CHECKING:
    from ui.app import OnLoad, Session

MAX_UPLOAD_BYTES = 100 * 1024 * 1024  # per file; larger files: `ragchat ingest`
HEADERS = ["title", "type", "pages", "passages", "added", "size", "file"]


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


def _size(n: Any) -> str:
    if not isinstance(n, int):
        return ""
    for unit in ("B", "KB", "MB"):
        if n < 1024 or unit == "MB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n = n / 1024  # type: ignore[assignment]
    return ""


def _type(d: dict[str, Any]) -> str:
    return Path(source_file(str(d.get("source") or ""))).suffix.lstrip(".").lower() or "text"


def rows(documents: list[dict[str, Any]], query: str = "") -> list[list[Any]]:
    """The table's rows: the documents whose title or name holds every word of `query`
    (accents and case aside)."""
    wanted = fold(query).split()
    shown = []
    for d in documents:
        hay = fold(f"{d.get('title', '')} {d.get('name', '')}")
        if all(w in hay for w in wanted):
            added = d.get("added")
            shown.append(
                [
                    str(d.get("title", "")),
                    _type(d),
                    d.get("pages") or "",
                    d.get("chunks", 0),
                    time.strftime("%Y-%m-%d %H:%M", time.localtime(added)) if added else "",
                    _size(d.get("size")),
                    str(d.get("name", "")),
                ]
            )
    return shown


def choices(documents: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The documents as (shown name, doc_id) for the controls that act on one."""
    return [(f"{d['name']} ({d['chunks']} passages)", str(d["doc_id"])) for d in documents]


def reingest(bot: Chatbot, doc_id: str) -> str:
    """Read a document's file again (after it changed on disk); what happened, in words."""
    doc = next((d for d in bot.documents() if d["doc_id"] == doc_id), None)
    if doc is None:
        raise UnsupportedDocument(doc_id, "no such document: it was removed; refresh the list")
    path = Path(source_file(str(doc.get("source") or "")))
    if not path.is_file():
        raise UnsupportedDocument(
            str(doc["name"]), "its file is no longer on this machine: upload it again"
        )
    report = bot.ingest([path])
    if report.skipped:
        return f"Could not read {doc['name']} again: {report.skipped[0].reason}"
    if report.documents:
        return f"Read {doc['name']} again: {report.chunks} passages."
    return f"{doc['name']} is unchanged."


def skipped_path(bot: Chatbot) -> Path:
    return Path(bot.settings.data_dir) / "last-upload-skipped.json"


def keep_skipped(bot: Chatbot, problems: list[tuple[str, str]]) -> None:
    """Keep the last upload's skipped files (name, reason) for the library to show."""
    path = skipped_path(bot)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(
        json.dumps([{"file": Path(p).name, "reason": r} for p, r in problems]), encoding="utf-8"
    )
    os.replace(partial, path)


def last_skipped(bot: Chatbot) -> list[dict[str, str]]:
    try:
        return list(json.loads(skipped_path(bot).read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return []


class LibraryPanel:
    """The Library tab: search, the table, remove (confirmed), read again, add; its handlers
    call the public API of the Session's Chatbot."""

    def __init__(self, session: Session, max_upload_bytes: int = MAX_UPLOAD_BYTES) -> None:
        self.bot = session.bot
        self.max_upload_bytes = max_upload_bytes

    def build(self) -> OnLoad:
        """Lay the tab out and wire its events; what to run when the page loads."""
        search = gr.Textbox(
            label="Search documents", placeholder="title or file name", elem_id="doc-search"
        )
        docs = gr.Dataframe(
            headers=HEADERS, label="Documents", interactive=False, elem_id="documents", wrap=False
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
        listed = [docs, chosen, skipped]
        search.change(self.listing, [search], listed, queue=False)
        add.click(
            self.ingest_uploads,
            [files],
            [*listed, files, status],
            concurrency_limit=1,
            concurrency_id="ingest",
        )
        remove.click(lambda: gr.Button(visible=True), None, [sure])
        sure.click(self.removed, [chosen, search], [*listed, status, sure], concurrency_id="ingest")
        again.click(self.read_again, [chosen, search], [*listed, status], concurrency_id="ingest")
        return (lambda: self.listing("")), listed

    # -- handlers ---------------------------------------------------------------------------

    def listing(self, query: str = "") -> tuple[Any, Any, str]:
        """The table for `query`, the documents to choose from, the last upload's skipped."""
        try:
            documents = self.bot.documents()
        except RagChatError as e:
            gr.Warning(escape_html(str(e)))
            documents = []
        problems = last_skipped(self.bot)
        kept = ""
        if problems:
            kept = "**Skipped in the last upload:**\n\n" + "\n".join(
                f"- {escape(p['file'])}: {escape(p['reason'])}" for p in problems
            )
        return (
            rows(documents, query or ""),
            gr.Dropdown(choices=choices(documents), value=None),
            kept,
        )

    def ingest_uploads(self, paths: list[str] | None, progress: gr.Progress = gr.Progress()):  # type: ignore[no-untyped-def]  # noqa: B008
        """Save the uploads (checked), ingest them with per-file progress, say what happened."""
        if not paths:
            gr.Warning("Choose files to add first.")
            return *self.listing(), None, ""
        saved: list[Path] = []
        refused: list[UnsupportedDocument] = []
        for f in paths:
            try:
                saved.append(save_upload(f, upload_dir(self.bot), self.max_upload_bytes))
            except UnsupportedDocument as e:
                refused.append(e)
        try:
            report = self.bot.ingest(saved, **_progress_reports(progress))
        except RagChatError as e:
            gr.Warning(escape_html(str(e)))
            return *self.listing(), None, ""
        problems = [(e.path, e.reason) for e in refused] + [
            (s.path, s.reason) for s in report.skipped
        ]
        keep_skipped(self.bot, problems)
        line = (
            f"Added {report.documents} documents ({report.chunks} passages); "
            f"{report.unchanged} unchanged; {len(problems)} skipped."
        )
        return *self.listing(), None, escape(line)  # the whole list: the new ones show

    def removed(self, doc_id: str | None, query: str):  # type: ignore[no-untyped-def]
        """The explicit way to replace a document: remove it, then add the new version."""
        if not doc_id:
            gr.Warning("Choose a document to remove first.")
            return *self.listing(query), "", gr.Button(visible=False)
        try:
            n = self.bot.delete(doc_id)
            done = f"Removed {n} passages of {escape(doc_id)}."
        except RagChatError as e:
            gr.Warning(escape_html(str(e)))
            done = ""
        return *self.listing(query), done, gr.Button(visible=False)

    def read_again(self, doc_id: str | None, query: str):  # type: ignore[no-untyped-def]
        if not doc_id:
            gr.Warning("Choose a document to read again first.")
            return *self.listing(query), ""
        try:
            done = reingest(self.bot, doc_id)
        except RagChatError as e:
            gr.Warning(escape_html(str(e)))
            done = ""
        return *self.listing(query), escape(done)


def _progress_reports(progress: gr.Progress) -> dict[str, Any]:
    """Chatbot.ingest's progress callbacks, shown on Gradio's `progress` bar: the file being
    read, then (most of the time) the passages being embedded."""
    read = {"done": 0, "total": 0}

    def reading(done: int, total: int, path: str) -> None:
        read.update(done=done, total=total)
        progress((done, total), desc=f"Reading {Path(path).name} ({done}/{total} files)")

    def embedding(done: int, total: int) -> None:
        progress(
            (done, total),
            desc=f"Embedding passages ({read['done']}/{read['total']} files read)",
            unit="passages",
        )

    return {"progress": reading, "embedding": embedding}
