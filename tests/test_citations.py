from hypothesis import given
from hypothesis import strategies as st

from rag.citations import clean_markers, parse_citations
from rag.types import Chunk, Hit

PASSAGE = (
    "Accompagné d'une délégation, il a effectué des séances de travail avec Avril Haines, "
    "directrice du renseignement national, William Burns, directeur de la CIA et Christopher "
    "Wray, directeur du FBI. Les discussions ont porté sur le Sahel."
)


def hits(*texts: str) -> list[Hit]:
    return [
        Hit(Chunk(f"c{i}", f"d{i}", t, 0, len(t), {}), 1.0 - i / 10, i + 1)
        for i, t in enumerate(texts)
    ]


def test_valid_markers_become_citations_in_order() -> None:
    hs = hits("Other passage.", PASSAGE)
    text = "He met Avril Haines, William Burns and Christopher Wray [2]. See also [1]."
    cites = parse_citations(text, hs)
    assert [c.n for c in cites] == [2, 1]
    assert cites[0].chunk.id == "c1"
    assert "Avril Haines" in cites[0].quote
    assert cites[0].chunk.text[cites[0].start : cites[0].end] == cites[0].quote


def test_quote_is_the_best_supporting_sentence() -> None:
    cite = parse_citations("The talks were about the Sahel [1].", hits(PASSAGE))[0]
    assert cite.quote == "Les discussions ont porté sur le Sahel."


def test_out_of_range_markers_are_dropped_from_text_and_citations() -> None:
    hs = hits(PASSAGE)
    text = clean_markers("Avril Haines [1][7]. Wray [0, 1, 9]. Burns [4].", len(hs))
    assert text == "Avril Haines [1]. Wray [1]. Burns."
    assert [c.n for c in parse_citations(text, hs)] == [1]


def test_grouped_markers_and_marker_after_full_stop() -> None:
    hs = hits(PASSAGE, "Second passage about Marrakech.")
    assert clean_markers("X [1, 2].", 2) == "X [1][2]."
    cites = parse_citations("Burns heads the CIA. [1]", hs)
    assert [c.n for c in cites] == [1] and "William Burns" in cites[0].quote


@given(st.text(max_size=300), st.integers(0, 6))
def test_parsing_any_text_never_fails_and_cites_only_retrieved(text: str, n: int) -> None:
    hs = hits(*[f"Passage {i}." for i in range(n)])
    cleaned = clean_markers(text, n)
    for c in parse_citations(cleaned, hs):
        assert 1 <= c.n <= n and c.chunk is hs[c.n - 1].chunk
