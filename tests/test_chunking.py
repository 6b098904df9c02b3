from hypothesis import given, settings
from hypothesis import strategies as st

from rag.chunking import chunk_document, split_sentences
from rag.loaders import load_file
from rag.pipeline import SAMPLE_CORPUS
from rag.types import Document


def doc(text: str, **meta: object) -> Document:
    return Document(id="d1", source="/x/d1.txt", text=text, metadata={"title": "D1", **meta})


def test_sentences_respect_abbreviations_and_lines() -> None:
    text = "M. Dupont est venu. Il a vu le Dr. Martin!\nTitre\nFin ? Oui."
    got = [text[s:e] for s, e in split_sentences(text)]
    assert got == ["M. Dupont est venu.", "Il a vu le Dr. Martin!", "Titre", "Fin ?", "Oui."]


def test_chunks_keep_offsets_and_stay_within_size() -> None:
    document = load_file(SAMPLE_CORPUS)[0]
    chunks = chunk_document(document, size=400, overlap=100)
    assert len(chunks) > 3
    for c in chunks:
        assert document.text[c.start : c.end] == c.text
        assert len(c.text) <= 400
        assert c.metadata["title"] and c.metadata["source"] == document.source
    # overlap: some chunk starts before its predecessor ends
    assert any(b.start < a.end for a, b in zip(chunks, chunks[1:]))
    # every sentence of the document is in some chunk
    covered = set()
    for c in chunks:
        covered.update(range(c.start, c.end))
    for s, e in split_sentences(document.text):
        assert {i for i in range(s, e) if not document.text[i].isspace()} <= covered


def test_chunks_end_on_sentence_boundaries() -> None:
    sentences = [f"Sentence number {i} says something." for i in range(40)]
    chunks = chunk_document(doc(" ".join(sentences)), size=200, overlap=60)
    for c in chunks:
        assert c.text.startswith("Sentence") and c.text.endswith(".")


def test_ids_are_stable_and_content_derived() -> None:
    a = chunk_document(doc("One. Two. Three."), 50, 10)
    b = chunk_document(doc("One. Two. Three."), 50, 10)
    c = chunk_document(doc("One. Two. Four."), 50, 10)
    assert [x.id for x in a] == [x.id for x in b]
    assert {x.id for x in a} != {x.id for x in c}
    assert a[0].metadata["doc_hash"] != c[0].metadata["doc_hash"]


def test_page_comes_from_page_offsets() -> None:
    text = "Page one text." + "\n\n" + "Page two text."
    chunks = chunk_document(doc(text, page_starts=[0, 16]), size=50, overlap=0)
    pages = {c.text: c.metadata["page"] for c in chunks}
    assert pages == {"Page one text.": 1, "Page two text.": 2}


def test_long_sentence_is_cut_at_whitespace() -> None:
    text = " ".join(["word"] * 300)
    chunks = chunk_document(doc(text), size=100, overlap=0)
    assert all(len(c.text) <= 100 for c in chunks)
    assert all(not c.text.startswith(" ") and not c.text.endswith(" ") for c in chunks)


@settings(max_examples=150, deadline=None)
@given(st.text(min_size=1, max_size=2000), st.integers(50, 400), st.integers(0, 49))
def test_any_text_chunks_with_exact_offsets(text: str, size: int, overlap: int) -> None:
    for c in chunk_document(doc(text), size=size, overlap=overlap):
        assert text[c.start : c.end] == c.text
        assert 0 < len(c.text) <= size


def test_a_text_a_little_over_size_is_cut_near_its_middle() -> None:
    sentences = [f"Sentence number {i:02d} says something." for i in range(30)]
    text = " ".join(sentences)  # 1,139 characters
    chunks = chunk_document(doc(text), size=1000, overlap=200)
    assert len(chunks) == 2  # as many as packing up to 1,000 characters needs
    lengths = [len(c.text) for c in chunks]
    assert max(lengths) - min(lengths) <= 80, lengths  # not 1,000 and a scrap
    assert chunks[1].start < chunks[0].end  # the overlap is kept
    assert chunks[0].start == 0 and chunks[-1].end == len(text)


def test_a_line_wrapped_mid_sentence_is_one_sentence() -> None:
    """A PDF's text layer breaks every printed line: a break after a character that ends no
    sentence is no boundary when the next line goes on in lower case, or in capitals after a
    line as long as a printed one; a short line (a heading) and a digit still begin anew."""
    wrapped = (
        "il a rencontré Avril Haines, directrice du renseignement national américain, et\n"
        "William Burns, directeur de la CIA (Central Intelligence Agency), puis le\n"
        "directeur du FBI."
    )
    text = f"{wrapped}\nLe lendemain, il est parti.\nSommaire\nIntroduction\nLa part de O\n2 monte."
    assert [text[a:b] for a, b in split_sentences(text)] == [
        wrapped,
        "Le lendemain, il est parti.",
        "Sommaire",
        "Introduction",
        "La part de O",
        "2 monte.",
    ]
