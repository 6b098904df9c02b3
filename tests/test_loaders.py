import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rag import Chatbot
from rag.chunking import chunk_document
from rag.errors import UnsupportedDocument
from rag.loaders import MAX_HTML_BYTES, find_files, is_section, load_file, stream_text
from rag.types import Skipped

REPO = Path(__file__).resolve().parents[1]


def write_pdf(path: Path, pages: list[str]) -> Path:
    """A real PDF with a text layer, one page per string (matplotlib's PDF backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    with PdfPages(path) as pdf:
        for text in pages:
            fig = plt.figure(figsize=(8.5, 11))
            fig.text(0.1, 0.5, text)
            pdf.savefig(fig)
            plt.close(fig)
    return path


def test_txt_utf8_and_latin1(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("Bonjour à tous.", encoding="utf-8")
    (tmp_path / "b.txt").write_bytes("Déjà vu, garçon.".encode("latin-1"))
    (tmp_path / "c.txt").write_text("Über alles.", encoding="utf-16")
    assert load_file(tmp_path / "a.txt")[0].text == "Bonjour à tous."
    assert load_file(tmp_path / "b.txt")[0].text == "Déjà vu, garçon."
    assert load_file(tmp_path / "c.txt")[0].text == "Über alles."


def test_markdown_title_and_ids(tmp_path: Path) -> None:
    path = tmp_path / "notes.md"
    path.write_text("# My notes\n\nSome text.")
    d = load_file(path)[0]
    assert d.title == "My notes"
    assert d.id == str(path.resolve()) and d.source == d.id


def test_html_drops_scripts_keeps_title(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_text(
        "<html><head><title>T</title><style>x{}</style></head><body><h1>Head</h1>"
        "<p>Para one.</p><script>alert(1)</script></body></html>"
    )
    d = load_file(path)[0]
    assert d.title == "T"
    assert d.text == "Head\nPara one."


def test_pdf_keeps_page_offsets(tmp_path: Path) -> None:
    path = write_pdf(
        tmp_path / "two.pdf", ["First page about Avril Haines.", "Second page about William Burns."]
    )
    d = load_file(path)[0]
    starts = d.metadata["page_starts"]
    assert len(starts) == 2
    assert "Avril Haines" in d.text[starts[0] : starts[1]]
    assert "William Burns" in d.text[starts[1] :]


def test_encrypted_and_corrupt_pdf_are_refused(tmp_path: Path) -> None:
    from pypdf import PdfReader, PdfWriter

    src = write_pdf(tmp_path / "src.pdf", ["Secret text."])
    writer = PdfWriter()
    for page in PdfReader(src).pages:
        writer.add_page(page)
    writer.encrypt("password")
    with open(tmp_path / "locked.pdf", "wb") as f:
        writer.write(f)
    with pytest.raises(UnsupportedDocument, match="encrypted"):
        load_file(tmp_path / "locked.pdf")
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4\n1 0 obj garbage")
    with pytest.raises(UnsupportedDocument, match="broken.pdf"):
        load_file(tmp_path / "broken.pdf")


def test_docx_paragraphs_and_tables(tmp_path: Path) -> None:
    import docx

    d = docx.Document()
    d.core_properties.title = "Visit"
    d.add_paragraph("Hammouchi met Christopher Wray.")
    table = d.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text = "FBI"
    table.rows[0].cells[1].text = "Wray"
    d.save(str(tmp_path / "v.docx"))
    got = load_file(tmp_path / "v.docx")[0]
    assert got.title == "Visit"
    assert "Hammouchi met Christopher Wray." in got.text and "FBI | Wray" in got.text
    (tmp_path / "fake.docx").write_text("not a zip")
    with pytest.raises(UnsupportedDocument, match="not a zip archive"):
        load_file(tmp_path / "fake.docx")


def test_jsonl_keeps_ids_and_reports_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "docs.jsonl"
    lines = [
        json.dumps({"id": "p1", "title": "One", "text": "Alpha.", "lang": "fr"}),
        "{not json",
        json.dumps({"id": "p2", "text": "Beta."}),
        json.dumps({"id": "p3"}),
    ]
    path.write_text("\n".join(lines))
    problems: list[Skipped] = []
    docs = load_file(path, problems)
    # a record's id is scoped to its file: no record can replace another file's document
    assert [d.metadata["record_id"] for d in docs] == ["p1", "p2"]
    assert [d.id for d in docs] == [f"{path.resolve()}#p1", f"{path.resolve()}#p2"]
    assert docs[0].title == "One" and docs[0].metadata["lang"] == "fr"
    assert docs[0].source == docs[0].id
    assert [p.path.rsplit(":", 1)[1] for p in problems] == ["2", "4"]


def test_jsonl_reserved_metadata_is_ignored_with_a_message(tmp_path: Path) -> None:
    """A record cannot set what ragchat writes itself: `"page_starts": "ab"` once crashed
    ingestion with a TypeError, and `source` or `generation` would corrupt the store."""
    path = tmp_path / "docs.jsonl"
    record = {"id": "r", "text": "Rabat is the capital.", "page_starts": "ab"}
    record.update(source="/etc/passwd", generation=9, doc_hash="x", author="Ann")
    path.write_text(json.dumps(record) + "\n")
    problems: list[Skipped] = []
    (doc,) = load_file(path, problems)
    assert doc.metadata["author"] == "Ann" and doc.source.endswith("docs.jsonl#r")
    for key in ("page_starts", "generation", "doc_hash"):
        assert key not in doc.metadata
    (problem,) = problems
    assert "doc_hash, generation, page_starts, source were ignored" in problem.reason
    chunks = chunk_document(doc)
    assert chunks[0].page is None and chunks[0].source == doc.source


def test_html_memory_stays_bounded(tmp_path: Path) -> None:
    """A crafted 24 MiB page (a tag per few bytes) once took 3.4 GiB as a BeautifulSoup tree;
    parsed as a stream, the process stays within a few times the file's size."""
    path = tmp_path / "crafted.html"
    with path.open("w") as f:
        f.write("<html><head><title>Crafted</title></head><body>")
        for _ in range(25):
            f.write("<p><b>x</b><i a='1'>y</i><span><em>z</em></span></p>" * 20_000)
        f.write("</body></html>")
    assert path.stat().st_size > 24 * 2**20
    code = (
        "import resource, sys; from pathlib import Path; from rag.loaders import load_html; "
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; "
        f"(doc,) = load_html(Path({str(path)!r})); "
        "print(doc.title, len(doc.text), "
        "(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) // 1024)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    ).stdout.split()
    assert out[0] == "Crafted" and int(out[1]) > 1_000_000
    assert int(out[2]) < 400, f"{out[2]} MiB for a 24 MiB page"


def test_html_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.html"
    with path.open("wb") as f:
        f.write(b"<p>")
        f.truncate(MAX_HTML_BYTES + 1)  # refused by its size, before a byte is parsed
    with pytest.raises(UnsupportedDocument, match="HTML page too large .* save it as text"):
        load_file(path)


def test_empty_binary_and_unknown_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_text("  \n")
    (tmp_path / "junk.txt").write_bytes(bytes(range(256)) * 20)
    (tmp_path / "x.xyz").write_text("hello")
    for name, reason in [("empty.txt", "empty"), ("junk.txt", "binary"), ("x.xyz", "unsupported")]:
        with pytest.raises(UnsupportedDocument, match=reason) as e:
            load_file(tmp_path / name)
        assert name in str(e.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "secret.txt"
    path.write_text("x")
    path.chmod(0)
    with pytest.raises(UnsupportedDocument, match="permission denied"):
        load_file(path)


def test_find_files_walks_folders_and_reports_missing(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.md").write_text("a")
    (tmp_path / "b.txt").write_text("b")
    (tmp_path / ".hidden.txt").write_text("h")
    (tmp_path / "c.bin").write_text("c")
    (tmp_path / "dangling.txt").symlink_to(tmp_path / "nowhere")
    files, skipped = find_files([tmp_path, tmp_path / "missing.txt"])
    assert sorted(f.name for f in files) == ["a.md", "b.txt"]
    assert sorted((Path(s.path).name, s.reason) for s in skipped) == [
        ("dangling.txt", "broken symbolic link: its target does not exist"),
        ("missing.txt", "no such file or folder: check the path"),
    ]


def test_a_large_text_file_streams_in_sections_that_rebuild_it(tmp_path: Path) -> None:
    paragraphs = [f"Paragraph {i}: " + "word " * (i % 40 + 5) + "end." for i in range(400)]
    text = "\n\n".join(paragraphs) + "\n"
    path = tmp_path / "long.txt"
    for encoding in ("utf-8", "utf-16"):
        path.write_text(text.replace("word", "mot été"), encoding=encoding)
        sections = list(stream_text(path, section_chars=2000))
        assert len(sections) > 10
        assert "".join(d.text for d in sections) == text.replace("word", "mot été")
        assert all(len(d.text) <= 2000 for d in sections)
        assert all(d.text.endswith("\n\n") for d in sections[:-1])  # cut at paragraph ends
        assert [d.metadata["part"] for d in sections] == list(range(1, len(sections) + 1))
        assert sections[0].id.endswith("long.txt#part00001") and is_section(sections[-1].id)
        assert sections[2].metadata["title"] == "long (part 3)"


def test_streaming_refuses_binary_and_empty_files(tmp_path: Path) -> None:
    junk = tmp_path / "junk.txt"
    junk.write_bytes(bytes(range(256)) * 100)
    with pytest.raises(UnsupportedDocument, match="binary data"):
        list(stream_text(junk, section_chars=1000))
    blank = tmp_path / "blank.txt"
    blank.write_text("   \n\n  ")
    with pytest.raises(UnsupportedDocument, match="empty file"):
        list(stream_text(blank, section_chars=1000))


def test_a_file_that_shrinks_or_stops_being_streamed_leaves_no_stale_sections(
    bot: Chatbot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rag.loaders

    monkeypatch.setattr(rag.loaders, "STREAM_BYTES", 3000)  # the loader's size threshold
    monkeypatch.setattr(rag.loaders, "SECTION_CHARS", 1500)
    path = tmp_path / "notes.txt"
    path.write_text("\n\n".join(f"Note {i} about the harbour survey." for i in range(300)))
    first = bot.ingest([path])
    sections = {d["doc_id"] for d in bot.documents()}
    assert first.documents == len(sections) > 3 and all(is_section(d) for d in sections)
    path.write_text("\n\n".join(f"Note {i} about the harbour survey." for i in range(150)))
    bot.ingest([path])
    fewer = {d["doc_id"] for d in bot.documents()}
    assert fewer < sections  # the sections past the new end are gone
    path.write_text("Only one short note now.")
    bot.ingest([path])
    assert [d["doc_id"] for d in bot.documents()] == [str(path.resolve())]
    assert bot.keyword.count() == bot.store.count()
