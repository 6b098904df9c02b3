"""Files to Documents: one function per format, and the walk over files and folders.

Formats: .txt, .md, .html/.htm, .pdf (pypdf, page offsets kept), .docx (python-docx), and .jsonl
document collections (one `{"id", "title", "text", ...}` object per line). A file that cannot be
read raises UnsupportedDocument with the reason; it never yields a partial document. This module
does not chunk, embed or store anything.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from rag.errors import UnsupportedDocument
from rag.types import Document, Skipped

log = logging.getLogger(__name__)

TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".text"}
HTML_SUFFIXES = {".html", ".htm"}
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | HTML_SUFFIXES | {".pdf", ".docx", ".jsonl"}


def decode_text(data: bytes, path: str) -> str:
    """Bytes to str: UTF-8 (with or without BOM), UTF-16 with BOM, else Windows-1252/Latin-1."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        if b"\x00" in data:
            raise UnsupportedDocument(path, "binary data, not a text file") from None
        try:
            text = data.decode("cp1252")
        except UnicodeDecodeError:
            text = data.decode("latin-1")
    controls = sum(1 for c in text[:4096] if ord(c) < 32 and c not in "\t\n\r\f")
    if controls > max(8, len(text[:4096]) // 20):
        raise UnsupportedDocument(path, "binary data, not a text file")
    return text


def _require_text(text: str, path: str, why: str = "empty file, nothing to ingest") -> str:
    if not text.strip():
        raise UnsupportedDocument(path, why)
    return text


def _file_doc(path: Path, text: str, **metadata: object) -> Document:
    resolved = str(path.resolve())
    meta = {"title": path.stem, "source": resolved, **{k: v for k, v in metadata.items() if v}}
    return Document(id=resolved, source=resolved, text=text, metadata=meta)


def load_text(path: Path) -> list[Document]:
    text = _require_text(decode_text(path.read_bytes(), str(path)), str(path))
    title = None
    if path.suffix.lower() in {".md", ".markdown"}:
        title = next(
            (ln.lstrip("#").strip() for ln in text.splitlines() if ln.startswith("# ")), None
        )
    return [_file_doc(path, text, title=title or path.stem)]


def load_html(path: Path) -> list[Document]:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(decode_text(path.read_bytes(), str(path)), "html.parser")
    title = soup.title.get_text(strip=True) if soup.title else None
    for tag in soup(["script", "style", "noscript", "template", "head"]):
        tag.decompose()
    body = soup.body or soup
    lines = (ln.strip() for ln in body.get_text("\n").splitlines())
    text = _require_text("\n".join(ln for ln in lines if ln), str(path))
    return [_file_doc(path, text, title=title or path.stem)]


def load_pdf(path: Path) -> list[Document]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(str(path))
        if reader.is_encrypted and not reader.decrypt(""):
            raise UnsupportedDocument(path.as_posix(), "encrypted PDF: decrypt it first")
        parts: list[str] = []
        page_starts: list[int] = []
        offset = 0
        for page in reader.pages:
            page_text = (page.extract_text() or "").strip()
            page_starts.append(offset)
            parts.append(page_text)
            offset += len(page_text) + 2
        title = (reader.metadata.title if reader.metadata else None) or path.stem
    except UnsupportedDocument:
        raise
    except (PdfReadError, ValueError, KeyError, OSError, TypeError, AttributeError) as e:
        raise UnsupportedDocument(str(path), f"not a readable PDF ({e})") from e
    text = "\n\n".join(parts)
    _require_text(text, str(path), "PDF has no extractable text (scanned? run OCR first)")
    return [_file_doc(path, text, title=str(title), page_starts=page_starts)]


def load_docx(path: Path) -> list[Document]:
    import docx
    from docx.opc.exceptions import PackageNotFoundError

    try:
        d = docx.Document(str(path))
    except (PackageNotFoundError, KeyError, ValueError, OSError) as e:
        raise UnsupportedDocument(str(path), f"not a readable .docx ({e})") from e
    except Exception as e:  # zipfile.BadZipFile and lxml errors
        raise UnsupportedDocument(str(path), f"not a readable .docx ({e})") from e
    blocks = [p.text for p in d.paragraphs if p.text.strip()]
    for table in d.tables:
        for row in table.rows:
            cells = [c.text.strip() for c in row.cells if c.text.strip()]
            if cells:
                blocks.append(" | ".join(cells))
    text = _require_text("\n\n".join(blocks), str(path))
    return [_file_doc(path, text, title=d.core_properties.title or path.stem)]


def load_jsonl(path: Path, problems: list[Skipped] | None = None) -> list[Document]:
    """One Document per line; a malformed line is reported in `problems` and the rest kept."""
    problems = problems if problems is not None else []
    source = str(path.resolve())
    docs: list[Document] = []
    seen: set[str] = set()
    text = decode_text(path.read_bytes(), str(path))
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            problems.append(Skipped(where, f"malformed JSON line ({e.msg})"))
            continue
        if not isinstance(record, dict) or not str(record.get("text") or "").strip():
            problems.append(Skipped(where, 'line has no "text" field'))
            continue
        doc_id = str(record.get("id") or f"{path.name}:{lineno}")
        if doc_id in seen:
            problems.append(Skipped(where, f"duplicate id {doc_id!r}, line ignored"))
            continue
        seen.add(doc_id)
        meta: dict[str, object] = {
            k: v
            for k, v in record.items()
            if k not in {"id", "text"} and isinstance(v, (str, int, float, bool))
        }
        meta["title"] = str(record.get("title") or doc_id)
        meta["source"] = doc_source = f"{source}#{doc_id}"
        docs.append(Document(id=doc_id, source=doc_source, text=record["text"], metadata=meta))
    if not docs:
        reason = "no valid lines" if problems else "empty file, nothing to ingest"
        raise UnsupportedDocument(str(path), reason)
    return docs


LOADERS: dict[str, Callable[[Path], list[Document]]] = {
    **{s: load_text for s in TEXT_SUFFIXES},
    **{s: load_html for s in HTML_SUFFIXES},
    ".pdf": load_pdf,
    ".docx": load_docx,
    ".jsonl": load_jsonl,
}


def load_file(path: str | Path, problems: list[Skipped] | None = None) -> list[Document]:
    """Read one file into Documents, or raise UnsupportedDocument saying why."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in LOADERS:
        supported = ", ".join(sorted(SUPPORTED_SUFFIXES))
        raise UnsupportedDocument(
            str(p), f"unsupported file type {suffix or '(none)'}; supported: {supported}"
        )
    try:
        if suffix == ".jsonl":
            return load_jsonl(p, problems)
        return LOADERS[suffix](p)
    except UnsupportedDocument:
        raise
    except PermissionError as e:
        raise UnsupportedDocument(str(p), "permission denied: cannot read the file") from e
    except OSError as e:
        raise UnsupportedDocument(str(p), f"cannot read the file ({e.strerror or e})") from e


def find_files(paths: Iterable[str | Path]) -> tuple[list[Path], list[Skipped]]:
    """Expand files and folders (recursively, hidden entries skipped) into supported files."""
    files: list[Path] = []
    skipped: list[Skipped] = []
    for raw in paths:
        p = Path(raw).expanduser()
        if p.is_dir():
            files.extend(_walk(p, skipped))
        elif p.is_file():
            files.append(p)
        elif p.is_symlink():
            skipped.append(Skipped(str(p), "broken symbolic link"))
        else:
            skipped.append(Skipped(str(p), "no such file or folder"))
    unique = list(dict.fromkeys(f.resolve() for f in files))
    return unique, skipped


def _walk(root: Path, skipped: list[Skipped]) -> Iterator[Path]:
    def onerror(e: OSError) -> None:
        skipped.append(Skipped(str(e.filename), f"cannot list folder ({e.strerror})"))

    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            if path.suffix.lower() not in SUPPORTED_SUFFIXES:
                continue
            if path.is_file():
                yield path
            else:
                skipped.append(Skipped(str(path), "broken symbolic link or not a regular file"))
