"""Document -> Chunks: sentence-aware packing with overlap, pure and deterministic.

Sentences are packed into chunks of at most `size` characters, balanced (a text needing two
chunks is cut near its middle, not after `size` characters); each chunk after the first starts
with the last sentences of the previous one, up to `overlap` characters. A sentence longer than
`size` is cut at whitespace. Every chunk keeps its character offsets (`doc.text[start:end] ==
chunk.text`), its page (when the document has page offsets) and a content-derived id, so the
same document always yields the same chunks.
"""

from __future__ import annotations

import bisect
import hashlib
import re

from rag.types import Chunk, Document

# A sentence ends at . ! ? or … (optionally followed by closing quotes/brackets) before
# whitespace and an opening character, or at a line break.
_BOUNDARY = re.compile(r"(?<=[.!?…])[\"'»”)\]]*\s+(?=[\"'«“(\[¿¡]?[\w])|\n+")
_ABBREVIATIONS = {
    "m",
    "mm",
    "mme",
    "mmes",
    "mlle",
    "dr",
    "pr",
    "st",
    "ste",
    "mr",
    "mrs",
    "ms",
    "prof",
    "etc",
    "cf",
    "p",
    "pp",
    "vol",
    "no",
    "n°",
    "fig",
    "e.g",
    "i.e",
    "vs",
    "sr",
    "jr",
    "gen",
}
_WORD_BEFORE = re.compile(r"(\S+)\.$")
WRAPPED_LINE = 60  # characters: a line at least this long that ends mid-sentence was wrapped


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Sentence spans (start, end) covering the non-blank text, whitespace trimmed."""
    spans: list[tuple[int, int]] = []
    start = 0
    for m in _BOUNDARY.finditer(text):
        if m.group(0) == "\n" and _wrapped(text, m.start()):
            continue  # a line wrapped mid-sentence (a PDF's text layer): not a boundary
        if m.group(0).strip() == "" and "\n" not in m.group(0):
            before = _WORD_BEFORE.search(text, max(0, m.start() - 12), m.start())
            word = before.group(1).lower().lstrip("(") if before else ""
            if word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha()):  # "M.", "J. Smith"
                continue
        _add_span(text, start, m.start(), spans)
        start = m.end()
    _add_span(text, start, len(text), spans)
    return spans


def _wrapped(text: str, at: int) -> bool:
    """Whether the line break at `at` wraps a sentence: the line ends on a character that ends
    no sentence, and the next one goes on in lower case, or in capitals after a line as long
    as a printed one (a heading is shorter). Only a letter goes on: a digit may begin a
    numbered line."""
    if at == 0 or text[at - 1] in ".!?…:;" or text[at - 1].isspace() or at + 1 >= len(text):
        return False
    after = text[at + 1]
    if not after.isalpha():
        return False
    return after.islower() or at - (text.rfind("\n", 0, at) + 1) >= WRAPPED_LINE


def _add_span(text: str, start: int, end: int, spans: list[tuple[int, int]]) -> None:
    segment = text[start:end]
    stripped = segment.strip()
    if stripped:
        lead = len(segment) - len(segment.lstrip())
        spans.append((start + lead, start + lead + len(stripped)))


def _cut_long(text: str, span: tuple[int, int], size: int) -> list[tuple[int, int]]:
    """Cut a span longer than `size` at whitespace (hard cut where there is none)."""
    start, end = span
    pieces = []
    while end - start > size:
        cut = text.rfind(" ", start + size // 2, start + size)
        cut = cut if cut > start else start + size
        pieces.append((start, cut))
        start = cut
        while start < end and text[start].isspace():
            start += 1
    pieces.append((start, end))
    return pieces


def chunk_spans(
    text: str, size: int, overlap: int, *, balanced: bool = True
) -> list[tuple[int, int]]:
    """Pack sentences into (start, end) chunk spans: as many chunks as packing up to `size`
    needs, each no longer than that number requires (balanced), so that a text a little over
    `size` becomes two halves rather than a full chunk and a scrap of its last sentences.
    (Scraps are poor search targets; measured in docs/results.md, "Held-out questions".)
    `balanced=False`: plain greedy packing, each chunk filled up to `size`."""
    sentences = [p for s in split_sentences(text) for p in _cut_long(text, s, size)]
    chunks = _pack(sentences, size, overlap)
    if not balanced or len(chunks) < 2:
        return chunks
    # Even chunks of the same count and overlap would be (covered + overlaps) / count long:
    # start there and lengthen until packing needs no more chunks than at `size`. (Searching
    # for the shortest such length instead would find lengths that save chunks by dropping
    # the overlap.)
    covered = sentences[-1][1] - sentences[0][0]
    length = min(size, -(-(covered + (len(chunks) - 1) * overlap) // len(chunks)))
    step = max(1, size // 50)
    while length < size:
        even = _pack(sentences, length, overlap)
        if len(even) <= len(chunks):
            return even
        length += step
    return chunks


def _pack(sentences: list[tuple[int, int]], size: int, overlap: int) -> list[tuple[int, int]]:
    """Greedy packing: each chunk takes sentences while it stays within `size` (a sentence
    longer than that is a chunk of its own), then the next one backs up over the trailing
    sentences that fit in `overlap`."""
    chunks: list[tuple[int, int]] = []
    i = 0
    while i < len(sentences):
        j = i
        while j + 1 < len(sentences) and sentences[j + 1][1] - sentences[i][0] <= size:
            j += 1
        chunks.append((sentences[i][0], sentences[j][1]))
        if j + 1 >= len(sentences):
            break
        k = j + 1
        while k - 1 > i and sentences[j][1] - sentences[k - 1][0] <= overlap:
            k -= 1
        i = k
    return chunks


def chunk_document(doc: Document, size: int = 1000, overlap: int = 200) -> list[Chunk]:
    """Split a document into chunks with offsets, page, source, title and stable ids."""
    doc_hash = content_hash(doc.text)
    page_starts: list[int] = list(doc.metadata.get("page_starts") or [])
    base = {
        k: v
        for k, v in doc.metadata.items()
        if isinstance(v, (str, int, float, bool)) and k != "page_starts"
    }
    base.setdefault("title", doc.id)
    base["source"] = doc.source
    base["doc_hash"] = doc_hash
    # chunks never straddle pages, so each one has a single page to cite
    bounds = [*page_starts, len(doc.text)] if page_starts else [0, len(doc.text)]
    spans = [
        (seg_start + s, seg_start + e)
        for seg_start, seg_end in zip(bounds, bounds[1:])
        for s, e in chunk_spans(doc.text[seg_start:seg_end], size, overlap)
    ]
    chunks = []
    for index, (start, end) in enumerate(spans):
        text = doc.text[start:end]
        page = bisect.bisect_right(page_starts, start) if page_starts else -1
        chunk_id = content_hash(f"{doc.id}\x00{start}\x00{text}")[:32]
        meta = {**base, "page": page, "chunk_index": index}
        chunks.append(Chunk(chunk_id, doc.id, text, start, end, meta))
    return chunks
