"""Files to Documents: one function per format, and the walk over files and folders.

Formats: .txt, .md, .html/.htm, .pdf (pypdf, page offsets kept), .docx (python-docx), and .jsonl
document collections (one `{"id", "title", "text", ...}` object per line). A file that cannot be
read raises UnsupportedDocument with a one-line reason that says what to do; it never yields a
partial document, and no input makes a loader raise anything else (tests/test_loaders_fuzz.py).
Third-party parsers (pypdf, python-docx) are wrapped: whatever they raise on a damaged file
becomes UnsupportedDocument. A .docx is checked before python-docx opens it, so a zip bomb is
refused with bounded memory; HTML is parsed as a stream (lxml's parser with a target, no tree), its
memory bounded by the text it keeps. This module does not chunk, embed or store anything.
"""

from __future__ import annotations

import codecs
import contextlib
import errno
import io
import json
import logging
import math
import os
import re
import stat
import zipfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from rag.errors import UnsupportedDocument
from rag.types import Document, Skipped

log = logging.getLogger(__name__)

TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".text"}
HTML_SUFFIXES = {".html", ".htm"}
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | HTML_SUFFIXES | {".pdf", ".docx", ".jsonl"}


# A .docx is a zip: refuse it before python-docx reads it (python-docx holds every part in memory)
# when its parts would expand past this, or one large part expands suspiciously much.
MAX_DOCX_UNCOMPRESSED = 256 * 1024 * 1024
MAX_DOCX_RATIO = 100  # uncompressed / compressed, for parts over 1 MiB; real documents: 2-20
MAX_DOCX_PARTS = 10_000
# A text file larger than this is read in sections of about SECTION_CHARS characters, each its
# own Document ("<path>#part00001", ...), so memory stays bounded whatever the file's size.
STREAM_BYTES = 32 * 1024 * 1024
# An HTML page is parsed whole (as a stream of tags, its text kept): bounded by its size
MAX_HTML_BYTES = 64 * 1024 * 1024
SECTION_CHARS = 1_000_000
_BINARY = "binary data, not a text file: convert it to text, or leave it out"
_SURROGATES = re.compile("[\ud800-\udfff]")


def display_path(path: str | Path) -> str:
    """A path as printable text: bytes of a name that are not UTF-8 become U+FFFD."""
    try:
        return os.fsencode(path).decode("utf-8", "replace")
    except UnicodeEncodeError:  # a lone surrogate given from Python, not read from the disk
        return _clean(str(path))


def one_line(text: object, limit: int = 200) -> str:
    """An exception's text folded onto one line, shortened to `limit` characters."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _clean(text: str) -> str:
    """Drop what no later stage can store: lone surrogates (from JSON escapes) and NULs."""
    return _SURROGATES.sub("\ufffd", text).replace("\x00", "")


def _utf16_without_bom(data: bytes) -> str | None:
    """UTF-16 text written without a byte-order mark, decoded; None if it is not that."""
    codec = _utf16_order(data)
    return data.decode(codec, "replace") if codec else None


def _utf16_order(data: bytes) -> str | None:
    """The UTF-16 byte order of data with NULs on every other byte ("utf-16-le" or
    "utf-16-be"), else None."""
    sample = data[:4096]
    if len(sample) < 4:
        return None
    even, odd = sample[0::2].count(0), sample[1::2].count(0)
    half = len(sample) // 2
    if odd > 0.3 * half and even < 0.05 * half:
        return "utf-16-le"
    if even > 0.3 * half and odd < 0.05 * half:
        return "utf-16-be"
    return None


def decode_text(data: bytes, path: str) -> str:
    """Bytes to str: UTF-8 (with or without BOM), UTF-16 (with or without BOM), else
    Windows-1252/Latin-1. Binary data raises UnsupportedDocument."""
    utf16 = None if data.startswith(b"\xef\xbb\xbf") else _utf16_without_bom(data)
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = data.decode("utf-16", "replace")  # a damaged last byte costs one character
    elif utf16 is not None:
        text = utf16
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            if b"\x00" in data:
                raise UnsupportedDocument(path, _BINARY) from None
            try:
                text = data.decode("cp1252")
            except UnicodeDecodeError:
                text = data.decode("latin-1")
    _refuse_binary(text, path)
    return _clean(text)


def _refuse_binary(text: str, path: str) -> None:
    head = text[:4096]
    controls = sum(1 for c in head if ord(c) < 32 and c not in "\t\n\r\f")
    if controls > max(8, len(head) // 20) or head.count("\ufffd") > max(8, len(head) // 10):
        raise UnsupportedDocument(path, _BINARY)


def text_encoding(head: bytes, path: str) -> str:
    """The codec of a text file judged from its first bytes, by decode_text's rules."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    utf16 = None if head.startswith(b"\xef\xbb\xbf") else _utf16_order(head)
    if utf16:
        return utf16
    try:
        codecs.getincrementaldecoder("utf-8-sig")().decode(head, final=False)
        return "utf-8-sig"
    except UnicodeDecodeError:
        if b"\x00" in head:
            raise UnsupportedDocument(path, _BINARY) from None
        try:
            head.decode("cp1252")
            return "cp1252"
        except UnicodeDecodeError:
            return "latin-1"


def _require_text(
    text: str, path: str, why: str = "empty file, nothing to ingest: add text to it or leave it out"
) -> str:
    if not text.strip():
        raise UnsupportedDocument(path, why)
    return text


PACKAGE_DATA = Path(__file__).resolve().parent / "data"  # the sample article ships here


def document_id(path: Path) -> str:
    """A file's document id: its absolute path, unique on this machine; a file ragchat ships
    (the sample article) is `ragchat:<name>`, the same wherever the repository was cloned."""
    resolved = path.resolve()
    if resolved.is_relative_to(PACKAGE_DATA):
        return f"ragchat:{resolved.relative_to(PACKAGE_DATA).as_posix()}"
    return display_path(resolved)


def _file_doc(path: Path, text: str, **metadata: object) -> Document:
    resolved = display_path(path.resolve())
    meta = {"title": path.stem, "source": resolved, **{k: v for k, v in metadata.items() if v}}
    with contextlib.suppress(OSError):
        meta["size"] = path.stat().st_size  # the file's bytes (the library lists them)
    meta["title"] = _clean(str(meta["title"]))
    return Document(id=document_id(path), source=resolved, text=_clean(text), metadata=meta)


def load_text(path: Path) -> list[Document]:
    text = _require_text(decode_text(path.read_bytes(), str(path)), str(path))
    title = None
    if path.suffix.lower() in {".md", ".markdown"}:
        title = next(
            (ln.lstrip("#").strip() for ln in text.splitlines() if ln.startswith("# ")), None
        )
    return [_file_doc(path, text, title=title or path.stem)]


class _HtmlText:
    """The visible text and the title of an HTML page, as an lxml parser target: the page is
    parsed as a stream of events and no tree is built, so memory holds the text only (a crafted
    24 MiB page took 3.4 GiB as a BeautifulSoup tree)."""

    HIDDEN = frozenset({"script", "style", "noscript", "template", "head", "svg", "math"})
    BLOCKS = frozenset(
        {
            "p",
            "div",
            "br",
            "li",
            "tr",
            "td",
            "th",
            "h1",
            "h2",
            "h3",
            "h4",
            "h5",
            "h6",
            "section",
            "article",
            "header",
            "footer",
            "blockquote",
            "pre",
            "table",
            "ul",
            "ol",
            "dd",
            "dt",
            "hr",
            "main",
            "nav",
            "aside",
            "figure",
            "figcaption",
            "title",
            "body",
        }
    )

    def __init__(self) -> None:
        self.text = io.StringIO()
        self.title: list[str] = []
        self.hidden = 0  # depth inside elements whose text is not shown
        self.in_title = False

    def start(self, tag: str, attrib: object) -> None:
        if tag == "title":
            self.in_title = True
        elif tag in self.HIDDEN:
            self.hidden += 1
        if tag in self.BLOCKS:
            self.text.write("\n")

    def end(self, tag: str) -> None:
        if tag == "title":
            self.in_title = False
        elif tag in self.HIDDEN:
            self.hidden = max(0, self.hidden - 1)
        if tag in self.BLOCKS:
            self.text.write("\n")

    def data(self, data: str) -> None:
        if self.in_title:
            if sum(map(len, self.title)) < 1000:
                self.title.append(data)
        elif not self.hidden:
            self.text.write(data)

    def comment(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


def load_html(path: Path) -> list[Document]:
    size = path.stat().st_size
    if size > MAX_HTML_BYTES:
        raise UnsupportedDocument(
            str(path),
            f"HTML page too large ({size / 2**20:.0f} MiB, the limit is "
            f"{MAX_HTML_BYTES / 2**20:.0f} MiB): save it as text (.txt) and add that",
        )
    from lxml import etree

    markup = decode_text(path.read_bytes(), str(path))
    page = _HtmlText()
    try:
        parser = etree.HTMLParser(target=page, recover=True, no_network=True)
        for i in range(0, len(markup), 1 << 20):
            parser.feed(markup[i : i + (1 << 20)])
        parser.close()
    except (
        Exception
    ) as e:  # the parser recovers from most damage; what it still raises is a bad file
        raise UnsupportedDocument(str(path), f"not readable HTML ({one_line(e)})") from e
    del markup
    title = " ".join("".join(page.title).split()) or None
    lines = (ln.strip() for ln in page.text.getvalue().splitlines())
    text = _require_text("\n".join(ln for ln in lines if ln), str(path))
    return [_file_doc(path, text, title=title or path.stem)]


def load_pdf(path: Path) -> list[Document]:
    from pypdf import PdfReader

    try:
        reader = PdfReader(str(path))
        if reader.is_encrypted and not reader.decrypt(""):
            raise UnsupportedDocument(
                str(path), "encrypted PDF: save a copy without a password, then add that"
            )
        parts: list[str] = []
        page_starts: list[int] = []
        offset = 0
        for page in reader.pages:
            page_text = _clean(page.extract_text() or "").strip()
            page_starts.append(offset)
            parts.append(page_text)
            offset += len(page_text) + 2
        title = (reader.metadata.title if reader.metadata else None) or path.stem
    except UnsupportedDocument:
        raise
    except OSError:
        raise  # unreadable file: load_file says why
    except Exception as e:  # pypdf raises many kinds of error on damaged files
        raise UnsupportedDocument(
            str(path),
            f"truncated or corrupt PDF ({one_line(e) or type(e).__name__}): "
            "export or download it again",
        ) from e
    text = "\n\n".join(parts)
    _require_text(text, str(path), "PDF has no extractable text (scanned? run OCR on it first)")
    return [_file_doc(path, text, title=str(title), page_starts=page_starts)]


def check_docx_zip(path: Path) -> None:
    """Refuse a .docx that is not a zip, is damaged, or would expand too much (a zip bomb),
    reading at most 1 MiB at a time; only then may python-docx read it whole."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            if len(infos) > MAX_DOCX_PARTS:
                raise UnsupportedDocument(
                    str(path), f"not a document: a zip of {len(infos)} files; leave it out"
                )
            total = 0
            for info in infos:
                if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                    raise UnsupportedDocument(
                        str(path), "not a .docx: its zip uses a compression Word never writes"
                    )
                total += info.file_size
                ratio = info.file_size / max(info.compress_size, 1)
                if total > MAX_DOCX_UNCOMPRESSED or (
                    info.file_size > 1 << 20 and ratio > MAX_DOCX_RATIO
                ):
                    raise UnsupportedDocument(
                        str(path),
                        f"refused as a zip bomb: {info.filename} expands {ratio:.0f} times, "
                        f"to {info.file_size // (1 << 20)} MiB; leave it out",
                    )
            for info in infos:  # zipfile never yields more than the declared size
                with zf.open(info) as part:
                    while part.read(1 << 20):
                        pass
    except UnsupportedDocument:
        raise
    except OSError:
        raise
    except zipfile.BadZipFile as e:
        reason = "not a .docx (not a zip archive)" if "not a zip" in str(e) else "damaged .docx"
        raise UnsupportedDocument(
            str(path), f"{reason}: save it again as .docx from your word processor"
        ) from e
    except Exception as e:  # zlib.error, EOFError, NotImplementedError, ... from a damaged zip
        raise UnsupportedDocument(
            str(path), f"damaged .docx ({one_line(e)}): save it again from your word processor"
        ) from e


def load_docx(path: Path) -> list[Document]:
    check_docx_zip(path)
    import docx

    try:
        d = docx.Document(str(path))
        blocks = [p.text for p in d.paragraphs if p.text.strip()]
        for table in d.tables:
            for row in table.rows:
                cells = [c.text.strip() for c in row.cells if c.text.strip()]
                if cells:
                    blocks.append(" | ".join(cells))
        title = d.core_properties.title
    except OSError:
        raise
    except Exception as e:  # python-docx and lxml errors on a zip that is not a Word document
        raise UnsupportedDocument(
            str(path),
            f"not a readable .docx ({one_line(e) or type(e).__name__}): "
            "save it again from your word processor",
        ) from e
    text = _require_text("\n\n".join(blocks), str(path))
    return [_file_doc(path, text, title=title or path.stem)]


def _jsonl_record(line: str) -> tuple[dict[str, object] | None, str]:
    """One line parsed: (record, "") or (None, why the line is refused)."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        return None, f"malformed JSON ({e.msg} at column {e.colno})"
    except RecursionError:
        return None, "malformed JSON (nested too deeply)"
    if not isinstance(record, dict) or not isinstance(record.get("text"), str):
        return None, 'no "text" string in the object'
    if not record["text"].strip():
        return None, 'the "text" field is empty'
    return record, ""


def _storable(value: object) -> bool:
    """A metadata value the store accepts: a string, a bool, a 64-bit int or a finite float."""
    if isinstance(value, bool | str):
        return True
    if isinstance(value, int):
        return -(2**63) <= value < 2**63
    return isinstance(value, float) and math.isfinite(value)


# metadata keys ragchat writes itself (chunking, the store, crash repair): a record's own value
# would corrupt them, so a .jsonl record's are ignored, with a message
RESERVED_KEYS = frozenset(
    {
        "source",
        "doc_id",
        "record_id",
        "doc_hash",
        "page",
        "page_starts",
        "chunk_index",
        "start",
        "end",
        "generation",
        "doc_chunks",
        "_bare",
    }
)


def load_jsonl(path: Path, problems: list[Skipped] | None = None) -> list[Document]:
    """One Document per line; a malformed line is reported in `problems` (as `path:line`, with
    the line number in the reason too) and the other lines kept.

    A record's id is scoped to its file: the Document id is `<file>#<id>` (the record's own id is
    kept as `record_id` metadata, which evaluation matches `context_id` against), so a record
    can never replace a document of another file. Reserved metadata keys are ignored."""
    problems = problems if problems is not None else []
    source = display_path(path.resolve())
    docs: list[Document] = []
    seen: set[str] = set()
    text = decode_text(path.read_bytes(), str(path))
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{display_path(path)}:{lineno}"
        record, why = _jsonl_record(line)
        if record is None:
            problems.append(Skipped(where, f"line {lineno} skipped: {why}; fix or remove it"))
            continue
        record_id = _clean(str(record.get("id") or f"{path.name}:{lineno}"))
        if record_id in seen:
            problems.append(Skipped(where, f"line {lineno} skipped: duplicate id {record_id!r}"))
            continue
        seen.add(record_id)
        reserved = sorted(k for k in record if k in RESERVED_KEYS)
        if reserved:
            problems.append(
                Skipped(
                    where,
                    f"line {lineno} kept, but its keys {', '.join(reserved)} were ignored: "
                    "ragchat sets them itself; rename them to keep their values",
                )
            )
        meta: dict[str, object] = {
            k: _clean(v) if isinstance(v, str) else v
            for k, v in record.items()
            if k not in {"id", "text"} and k not in RESERVED_KEYS and _storable(v)
        }
        meta["title"] = _clean(str(record.get("title") or record_id))
        meta["record_id"] = record_id
        doc_id = meta["source"] = f"{source}#{record_id}"
        body = _clean(str(record["text"]))
        docs.append(Document(id=doc_id, source=doc_id, text=body, metadata=meta))
    if not docs:
        reason = "no valid lines (see the lines above)" if problems else None
        raise UnsupportedDocument(
            str(path), reason or "empty file, nothing to ingest: add lines or leave it out"
        )
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
    return list(iter_file(path, problems))


def iter_file(path: str | Path, problems: list[Skipped] | None = None) -> Iterator[Document]:
    """The Documents of one file, read lazily: a text file over STREAM_BYTES comes in
    sections (see `stream_text`), anything else whole. Raises UnsupportedDocument saying why."""
    p = Path(path)
    shown = display_path(p)
    suffix = p.suffix.lower()
    if suffix not in LOADERS:
        supported = ", ".join(sorted(SUPPORTED_SUFFIXES))
        raise UnsupportedDocument(
            shown, f"unsupported file type {suffix or '(none)'}; supported: {supported}"
        )
    kind = _classify(p)
    if kind != "file":  # a pipe would block the read; a folder or a loop cannot be read
        raise UnsupportedDocument(shown, "a folder, not a file" if kind == "dir" else kind)
    try:
        if suffix == ".jsonl":
            yield from load_jsonl(p, problems)
        elif suffix in TEXT_SUFFIXES and p.stat().st_size > STREAM_BYTES:
            yield from stream_text(p)
        else:
            yield from LOADERS[suffix](p)
    except UnsupportedDocument as e:
        if e.path == shown:
            raise
        raise UnsupportedDocument(shown, e.reason) from e
    except PermissionError as e:
        raise UnsupportedDocument(
            shown, "permission denied: make the file readable (chmod u+r) or leave it out"
        ) from e
    except OSError as e:
        raise UnsupportedDocument(shown, _os_reason(e)) from e


def source_file(source: str) -> str:
    """The file a document's source names: "notes.jsonl#r1" and "big.txt#part00002" are records
    or sections of one file."""
    return source.split("#", 1)[0]


def is_section(doc_id: str) -> bool:
    """Whether a document id names a section of a streamed file."""
    return re.search(r"#part\d{5}$", doc_id) is not None


def stream_text(path: Path, section_chars: int | None = None) -> Iterator[Document]:
    """A large text file as consecutive sections of about `section_chars` characters, cut at
    a paragraph, line or sentence end; memory holds one section at a time. Ids are
    "<path>#part00001", ...; titles "<name> (part 1)". Bytes that are not valid in the
    encoding judged from the file's start become U+FFFD."""
    section_chars = section_chars or SECTION_CHARS
    resolved = display_path(path.resolve())
    with path.open("rb") as raw:
        encoding = text_encoding(raw.read(65536), str(path))
        raw.seek(0)
        reader = io.TextIOWrapper(raw, encoding=encoding, errors="replace", newline="")
        buffer, part = "", 0
        while True:
            block = reader.read(section_chars)
            if part == 0 and not buffer:
                _refuse_binary(block, str(path))
            buffer += block
            while len(buffer) >= section_chars or (buffer and not block):
                full = len(buffer) >= section_chars
                cut = _section_end(buffer, section_chars) if full else len(buffer)
                section, buffer = buffer[:cut], buffer[cut:]
                if section.strip():
                    part += 1
                    yield Document(
                        id=f"{resolved}#part{part:05d}",
                        source=resolved,
                        text=_clean(section),
                        metadata={
                            "title": _clean(f"{path.stem} (part {part})"),
                            "source": resolved,
                            "part": part,
                        },
                    )
            if not block:
                break
    if part == 0:
        raise UnsupportedDocument(
            str(path), "empty file, nothing to ingest: add text to it or leave it out"
        )


def _section_end(text: str, size: int) -> int:
    """Where to end a section of `text`: the last paragraph, line or sentence end after half
    of `size`, else `size` (text longer than that is carried into the next section)."""
    for mark in ("\n\n", "\n", ". "):
        at = text.rfind(mark, size // 2, size)
        if at != -1:
            return at + len(mark)
    return min(size, len(text))


def _os_reason(e: OSError) -> str:
    if e.errno == errno.ELOOP:
        return "symbolic link loop: fix or remove the link"
    if e.errno in (errno.ENOENT, errno.ENOTDIR):
        return "no such file or folder: check the path"
    if e.errno in (errno.EACCES, errno.EPERM):
        return "permission denied: make it readable or leave it out"
    return f"cannot read it ({one_line(e.strerror or e)})"


def _classify(p: Path) -> str:
    """Return "file", "dir", or why `p` cannot be read as either."""
    try:
        mode = os.stat(p).st_mode
    except OSError as e:
        if e.errno == errno.ENOENT and os.path.islink(p):
            return "broken symbolic link: its target does not exist"
        return _os_reason(e)
    except ValueError:  # a NUL in the path
        return "no such file or folder: check the path"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISREG(mode):
        return "file"
    return "not a regular file (a device, pipe or socket): leave it out"


def display_names(paths: Iterable[str | Path], files: Iterable[Path]) -> dict[Path, str]:
    """How each of `files` (resolved, from find_files) is shown: its path relative to the
    folder of `paths` it was found in, or its name when it was given itself."""
    roots = []
    for raw in paths:
        try:
            roots.append(Path(os.path.expanduser(raw)).resolve())
        except (ValueError, OSError):
            continue
    names = {}
    for f in files:
        within = [r for r in roots if r != f and f.is_relative_to(r)]
        root = max(within, key=lambda r: len(r.parts), default=None)
        names[f] = display_path(f.relative_to(root).as_posix() if root else f.name)
    return names


def find_files(paths: Iterable[str | Path]) -> tuple[list[Path], list[Skipped]]:
    """Expand files and folders (recursively, hidden entries skipped) into supported files;
    each path that cannot be read is reported in the second list with the reason."""
    files: list[Path] = []
    skipped: list[Skipped] = []
    for raw in paths:
        try:
            p = Path(os.path.expanduser(raw))  # an unknown ~user stays as written
        except ValueError:  # a NUL in the path
            skipped.append(Skipped(display_path(str(raw)), "no such file or folder: check it"))
            continue
        kind = _classify(p)
        if kind == "dir":
            files.extend(_walk(p, skipped))
        elif kind == "file":
            files.append(p)
        else:
            skipped.append(Skipped(display_path(p), kind))
    unique = list(dict.fromkeys(f.resolve() for f in files))
    return unique, skipped


def _walk(root: Path, skipped: list[Skipped]) -> Iterator[Path]:
    def onerror(e: OSError) -> None:
        where = display_path(e.filename or root)
        skipped.append(Skipped(where, f"cannot list folder: {_os_reason(e)}"))

    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            if path.suffix.lower() not in SUPPORTED_SUFFIXES:
                continue
            kind = _classify(path)
            if kind == "file":
                yield path
            elif kind != "dir":  # a link to a folder inside the walk is not followed
                skipped.append(Skipped(display_path(path), kind))
