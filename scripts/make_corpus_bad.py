"""Build the bad-input corpus: every kind of file ragchat must refuse with a clear message,
beside good files that must still be ingested in the same batch.

    python scripts/make_corpus_bad.py [DIR]      # default: tests/corpus_bad
    ragchat ingest tests/corpus_bad tests/corpus_bad/does-not-exist.txt tests/corpus_bad/notes.xyz

Everything is generated here (no binary is committed): PDFs are written object by object, the
encrypted one with pypdf, the .docx files with python-docx and zipfile. The tests build the corpus
into a temporary folder (tests/test_bad_input.py); CASES is the table of what each file is and
what must happen to it, which docs/results.md reproduces.
"""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

INGESTED = "ingested"


@dataclass(frozen=True)
class Case:
    name: str  # the file's name in the corpus
    what: str  # the bad (or good) input, in words
    expect: str  # INGESTED, or a phrase the one-line skip message must contain
    passed: bool = False  # named on the command line: a folder walk leaves it out or lacks it


CASES = [
    Case("good.txt", "plain UTF-8 text (control)", INGESTED),
    Case("good.md", "Markdown (control)", INGESTED),
    Case("good.html", "HTML (control)", INGESTED),
    Case("good.pdf", "PDF with a text layer (control)", INGESTED),
    Case("good.docx", "Word document (control)", INGESTED),
    Case("latin1.txt", "Latin-1 text with accents", INGESTED),
    Case("utf16.txt", "UTF-16 text with a byte-order mark", INGESTED),
    Case("utf16-nobom.txt", "UTF-16LE text without a byte-order mark", INGESTED),
    Case("caf\udce9.txt", "file name that is not UTF-8 (Latin-1 bytes)", INGESTED),
    Case("empty.txt", "empty file (0 bytes)", "empty file"),
    Case("blank.md", "only whitespace", "empty file"),
    Case("junk.txt", "binary junk with a .txt name", "binary data, not a text file"),
    Case("truncated.pdf", "truncated PDF (first half of a good one)", "truncated or corrupt PDF"),
    Case("encrypted.pdf", "PDF encrypted with a password", "encrypted PDF"),
    Case("scanned.pdf", "PDF with no text layer (a blank page)", "no extractable text"),
    Case("bomb.docx", "zip bomb named .docx (300 MiB in 0.8 MB)", "zip bomb"),
    Case("notzip.docx", ".docx that is not a zip", "not a zip archive"),
    Case("loop.txt", "symbolic link to itself", "symbolic link loop"),
    Case("dangling.md", "symbolic link to a missing file", "broken symbolic link"),
    Case("pipe.txt", "named pipe (FIFO) with a .txt name", "not a regular file"),
    Case("locked.txt", "file without read permission (mode 000)", "permission denied"),
    Case("docs.jsonl", "JSONL: 2 good lines around a malformed line 2", "line 2 skipped"),
    Case("does-not-exist.txt", "path that does not exist", "no such file", passed=True),
    Case("notes.xyz", "unsupported file type", "unsupported file type", passed=True),
]

GOOD_TEXT = (
    "Rabat is the capital of Morocco. The city lies on the Atlantic coast, at the mouth of the "
    "Bou Regreg river, facing Salé."
)


def text_pdf(pages: list[str]) -> bytes:
    """A small PDF with a real text layer (Helvetica), one page per string, built by hand."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>"]
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(len(pages)))
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode())
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    for i, text in enumerate(pages):
        shown = " T* ".join(
            "(" + ln.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ") Tj"
            for ln in text.splitlines()
        )
        stream = f"BT /F1 12 Tf 14 TL 72 720 Td {shown} ET".encode("latin-1")
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % (5 + 2 * i)
        )
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def encrypted_pdf(pdf: bytes, password: str) -> bytes:
    from pypdf import PdfWriter

    writer = PdfWriter(clone_from=io.BytesIO(pdf))
    writer.encrypt(password)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def blank_pdf() -> bytes:
    """A page with no text layer at all, as a scanner without OCR would leave it."""
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(width=612, height=792)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def good_docx(path: Path) -> None:
    import docx

    d = docx.Document()
    d.core_properties.title = "Rabat"
    d.add_paragraph(GOOD_TEXT)
    d.save(str(path))


def bomb_docx(path: Path, template: Path, mib: int = 300) -> None:
    """The .docx `template` with a document.xml that expands to `mib` MiB (0.8 MB on disk)."""
    with zipfile.ZipFile(template) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            if info.filename != "word/document.xml":
                dst.writestr(info, src.read(info))
        block = (b"<w:p><w:r><w:t>" + b"A" * 1000 + b"</w:t></w:r></w:p>") * 1000
        with dst.open("word/document.xml", "w", force_zip64=True) as part:
            for _ in range(mib * (1 << 20) // len(block) + 1):
                part.write(block)


def build(root: Path) -> list[Case]:
    """Write the corpus into `root` (emptied first) and return CASES."""
    if root.exists():
        for p in root.iterdir():
            if p.name == ".gitignore":
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
    root.mkdir(parents=True, exist_ok=True)
    pdf = text_pdf([GOOD_TEXT, "Fes is the oldest imperial city of Morocco."])
    files: dict[str, bytes] = {
        "good.txt": GOOD_TEXT.encode(),
        "good.md": f"# Rabat\n\n{GOOD_TEXT}\n".encode(),
        "good.html": (
            f"<html><head><title>Rabat</title></head><body><p>{GOOD_TEXT}</p></body></html>"
        ).encode(),
        "good.pdf": pdf,
        "latin1.txt": "Déjà vu à Salé : garçon, façade, élève.".encode("latin-1"),
        "utf16.txt": "Über Rabat: Straßen, Gärten, Türme.".encode("utf-16"),
        "utf16-nobom.txt": "Über Rabat: Straßen, Gärten, Türme.".encode("utf-16-le"),
        "caf\udce9.txt": "Un café à Rabat.".encode(),
        "empty.txt": b"",
        "blank.md": b"  \n\t\n",
        "junk.txt": random.Random(7).randbytes(8192),
        "truncated.pdf": pdf[: len(pdf) // 2],
        "encrypted.pdf": encrypted_pdf(pdf, "secret"),
        "scanned.pdf": blank_pdf(),
        "notzip.docx": b"This is plain text saved with a .docx name.\n",
        "notes.xyz": b"A file type ragchat does not read.\n",
        "locked.txt": b"Readable only by its owner, and not even by them.",
        "docs.jsonl": "\n".join(
            [
                json.dumps({"id": "r1", "title": "Rabat", "text": GOOD_TEXT}),
                '{"id": "r2", "title": "Broken", "text": "no closing brace"',
                json.dumps({"id": "r3", "title": "Fes", "text": "Fes has a famous medina."}),
            ]
        ).encode(),
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
    good_docx(root / "good.docx")
    bomb_docx(root / "bomb.docx", template=root / "good.docx")
    (root / "loop.txt").symlink_to("loop.txt")
    (root / "dangling.md").symlink_to("nowhere.md")
    os.mkfifo(root / "pipe.txt")
    (root / "locked.txt").chmod(0)
    return CASES


def main() -> None:
    default = Path(__file__).resolve().parents[1] / "tests" / "corpus_bad"
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else default
    for case in build(root):
        name = os.fsencode(case.name).decode("utf-8", "replace")
        how = " (name it: a folder walk leaves it out)" if case.passed else ""
        print(f"{name}\t{case.what}{how}\t-> {case.expect}")


if __name__ == "__main__":
    main()
