"""Fuzzing the loaders and the citation parser: whatever the input, they return a well-formed
result or raise our own error (rag/errors.py), never anything else.

150 examples a test by default (seconds); RAGCHAT_FUZZ_EXAMPLES=5000 searches harder."""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
import zipfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rag.citations import clean_markers, parse_citations
from rag.errors import RagChatError
from rag.loaders import decode_text, find_files, load_file
from rag.types import Chunk, Document, Hit, Skipped
from scripts.make_corpus_bad import GOOD_TEXT, text_pdf

FUZZ = settings(
    max_examples=int(os.environ.get("RAGCHAT_FUZZ_EXAMPLES", "150")),
    deadline=None,
    database=None,  # nothing written to the working directory
    suppress_health_check=[HealthCheck.too_slow],
)
GOOD_PDF = text_pdf([GOOD_TEXT, "Fes is the oldest imperial city of Morocco."])


def good_docx() -> bytes:
    import docx

    out = io.BytesIO()
    d = docx.Document()
    d.add_paragraph(GOOD_TEXT)
    d.save(out)
    return out.getvalue()


GOOD_DOCX = good_docx()


def well_formed(docs: list[Document]) -> None:
    assert docs
    for d in docs:
        assert isinstance(d.text, str) and d.text.strip()
        d.text.encode("utf-8")  # no lone surrogate reaches the store
        d.title.encode("utf-8")
        d.source.encode("utf-8")
        for value in d.metadata.values():
            assert isinstance(value, str | int | float | bool | list)
            if isinstance(value, float):
                assert math.isfinite(value)


def load_bytes(data: bytes, suffix: str) -> None:
    """Write `data` to a file with `suffix` and load it: documents or our error, nothing else."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"fuzz{suffix}"
        path.write_bytes(data)
        problems: list[Skipped] = []
        try:
            docs = load_file(path, problems)
        except RagChatError as e:
            assert "\n" not in str(e) and "fuzz" in str(e)
            return
        well_formed(docs)
        assert all("\n" not in p.reason for p in problems)


def mutate(data: bytes, edits: list[tuple[int, int]], cut: int) -> bytes:
    """`data` with bytes overwritten at (position, value) and the end cut off at `cut`."""
    out = bytearray(data)
    for position, value in edits:
        out[position % len(out)] = value
    return bytes(out[: max(1, cut % (len(out) + 1))])


edits = st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), max_size=12)
suffixes = st.sampled_from([".txt", ".md", ".html", ".pdf", ".docx", ".jsonl"])


@FUZZ
@given(st.binary(max_size=3000))
def test_decode_text_returns_text_or_our_error(data: bytes) -> None:
    try:
        text = decode_text(data, "f.txt")
    except RagChatError:
        return
    text.encode("utf-8")


@FUZZ
@given(st.binary(max_size=3000), suffixes)
def test_any_bytes_under_any_supported_name(data: bytes, suffix: str) -> None:
    load_bytes(data, suffix)


@FUZZ
@given(edits, st.integers(0, 1 << 20))
def test_damaged_pdfs(changes: list[tuple[int, int]], cut: int) -> None:
    load_bytes(mutate(GOOD_PDF, changes, cut), ".pdf")


@FUZZ
@given(edits, st.integers(0, 1 << 20))
def test_damaged_docx_files(changes: list[tuple[int, int]], cut: int) -> None:
    load_bytes(mutate(GOOD_DOCX, changes, cut), ".docx")


@FUZZ
@given(st.text(max_size=500), st.sampled_from(["word/document.xml", "[Content_Types].xml"]))
def test_docx_with_any_xml_in_a_part(xml: str, part: str) -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(GOOD_DOCX)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            dst.writestr(
                info,
                xml.encode("utf-8", "surrogatepass") if info.filename == part else src.read(info),
            )
    load_bytes(out.getvalue(), ".docx")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
records = st.fixed_dictionaries(
    {},
    optional={"id": json_values, "title": json_values, "text": json_values, "lang": json_values},
)
jsonl_lines = st.one_of(
    records.map(json.dumps),
    json_values.map(json.dumps),
    st.text(max_size=80).filter(lambda s: "\n" not in s and "\r" not in s),
    st.just('{"id": "x", "text": "\\ud800 lone surrogate"}'),
    st.just("[" * 100_000),  # nested deeper than the JSON parser's recursion limit
)


@FUZZ
@given(st.lists(jsonl_lines, max_size=8))
def test_jsonl_lines_of_anything(lines: list[str]) -> None:
    load_bytes("\n".join(lines).encode("utf-8", "surrogatepass"), ".jsonl")


path_text = st.lists(
    st.text(st.characters(codec="utf-8"), max_size=20)
    | st.sampled_from(["/", "\x00", ".", "\udce9", "x" * 300, "~", ".txt"]),
    max_size=8,
).map("".join)


@FUZZ
@given(st.lists(path_text, max_size=4))
def test_any_path_is_found_or_reported(names: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "a.txt").write_text("A file that exists.")
        (Path(tmp) / "d").mkdir()
        # inside the temporary folder, or in the home folder of a user that does not exist
        paths = [
            f"~nobody-here{n[1:]}" if n.startswith("~") else f"{tmp}/{n.replace('..', '.')}"
            for n in names
        ]
        files, skipped = find_files(paths)
        assert all(isinstance(s.reason, str) and "\n" not in s.reason for s in skipped)
        for path in files[:3]:
            try:
                load_file(path)
            except RagChatError:
                pass


passages = st.lists(st.text(st.characters(codec="utf-8"), max_size=300), max_size=6)
answers = st.lists(
    st.text(st.characters(codec="utf-8"), max_size=40)
    | st.sampled_from(["[1]", "[2, 3]", "[0]", "[99]", "[", "]", ". ", "\n"]),
    max_size=12,
).map("".join)


@FUZZ
@given(answers, passages)
def test_citations_of_any_answer_over_any_passages(text: str, texts: list[str]) -> None:
    hits = [Hit(Chunk(f"c{i}", f"d{i}", t, 0, len(t), {}), 1.0, i + 1) for i, t in enumerate(texts)]
    cleaned = clean_markers(text, len(hits))
    for c in parse_citations(cleaned, hits):
        assert 1 <= c.n <= len(hits) and c.chunk is hits[c.n - 1].chunk
        assert c.chunk.text[c.start : c.end] == c.quote
