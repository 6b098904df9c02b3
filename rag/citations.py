"""Parse the `[n]` markers of an answer and resolve them to the retrieved passages.

A marker that names no retrieved passage is removed from the text and never becomes a Citation.
Each Citation carries a quote: the sentence of its passage that shares the most words (names,
numbers) with the answer sentences that cite it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from rag.chunking import split_sentences
from rag.language import fold
from rag.types import Citation, Hit

# [1]  [1, 2]  [1][2]  [1,2,3]
MARKER = re.compile(r"\[\s*(\d{1,3}(?:\s*[,;]\s*\d{1,3})*)\s*\]")
_WORD = re.compile(r"\w+", re.UNICODE)


def _numbers(group: str) -> list[int]:
    return [int(x) for x in re.split(r"\s*[,;]\s*", group.strip()) if x]


def clean_markers(text: str, n_passages: int) -> str:
    """Drop marker numbers outside 1..n_passages; a marker left empty disappears."""

    def fix(m: re.Match[str]) -> str:
        valid = [n for n in _numbers(m.group(1)) if 1 <= n <= n_passages]
        return "".join(f"[{n}]" for n in dict.fromkeys(valid))

    cleaned = MARKER.sub(fix, text)
    cleaned = re.sub(r"[ \t]+([.,;:!?])", r"\1", cleaned)  # space left before punctuation
    return re.sub(r"[ \t]{2,}", " ", cleaned).strip()


def _keywords(text: str) -> set[str]:
    """Lower-cased, accent-folded words of 3+ characters, and every number."""
    return {w for w in _WORD.findall(fold(text)) if len(w) >= 3 or w.isdigit()}


def best_quote(passage: str, claim: str) -> tuple[int, int]:
    """Offsets of the passage sentence sharing the most keywords with `claim`."""
    spans = split_sentences(passage) or [(0, len(passage))]
    words = _keywords(claim)
    best = max(spans, key=lambda s: (len(words & _keywords(passage[s[0] : s[1]])), -s[0]))
    return best


def parse_citations(text: str, hits: Sequence[Hit]) -> list[Citation]:
    """Citations for the valid markers of `text`, in order of first appearance."""
    # A marker's claim is the text since the previous marker group: "A [1]. B [2][3]." gives
    # [1] "A", and [2] and [3] ". B".
    claims: dict[int, list[str]] = {}
    claim, last = "", 0
    for m in MARKER.finditer(text):
        segment = text[last : m.start()]
        if _WORD.search(segment):
            claim = segment
        last = m.end()
        for n in _numbers(m.group(1)):
            if 1 <= n <= len(hits):
                claims.setdefault(n, []).append(claim)
    citations = []
    for n, sentences in claims.items():
        chunk = hits[n - 1].chunk
        start, end = best_quote(chunk.text, " ".join(sentences))
        citations.append(
            Citation(n=n, chunk=chunk, quote=chunk.text[start:end], start=start, end=end)
        )
    return citations


def marker_numbers(text: str) -> list[int]:
    """The passage numbers of every marker in `text`, in order ("[1][2]" -> [1, 2])."""
    return [n for m in MARKER.finditer(text) for n in _numbers(m.group(1))]
