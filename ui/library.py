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
from typing import Any

from rag.errors import UnsupportedDocument
from rag.language import fold
from rag.loaders import SUPPORTED_SUFFIXES, display_path
from rag.pipeline import Chatbot

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
    source = str(d.get("source") or "").split("#", 1)[0]
    return Path(source).suffix.lstrip(".").lower() or "text"


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
    path = Path(str(doc.get("source") or "").split("#", 1)[0])
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
