"""Evidence: what the model reads to answer, chosen sentence by sentence.

Five whole passages are 900-1,400 tokens; a 1.5B model on two cores reads them in 15-20 s and
loses the answer among them. The evidence is instead the sentences of the retrieved passages
that bear on the question (its meaning, by the embedder, and its words), with the sentence
before one that opens on a reference to it ("Il", "This"), under a token budget. Sentences keep
their passage: a block per passage, numbered `[n]` as the passage is cited, each sentence with
an id `n.m` (its m-th sentence in the passage) that the model quotes before it answers
(rag/prompts.py). Whole passages are the other form (`Settings.evidence`), and the form a small
collection takes: all of it, in document order, is the same prefix for every question, which
the model's KV cache then holds (models/kvcache.py).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from rag.chunking import split_sentences
from rag.types import Hit

_WORD = re.compile(r"\w+", re.UNICODE)
# a sentence opening on one of these needs the one before it to be understood
_BACK_REFERENCE = re.compile(
    r"^(il|elle|ils|elles|ce|cette|ces|celui|celle|cela|ceci|lui|leur|son|sa|ses|"
    r"he|she|it|they|this|that|these|those|his|her|its|their|"
    r"él|ella|ellos|ellas|este|esta|estos|estas|ese|esa|su|sus|"
    r"er|sie|es|dieser|diese|dieses|sein|seine|ihr|ihre)\b",
    re.IGNORECASE,
)
LEXICAL_WEIGHT = 0.1  # of the share of the question's words a sentence holds, beside its cosine
RANK_PENALTY = 0.05  # per rank of its passage below the first
# closest(): the share of the question's words a sentence and its title hold, and the
# penalty per place of its block (tuned for the first sentence holding the gold answer)
TITLE_WEIGHT = 0.2
CLOSEST_RANK = 0.02
HEADER_TOKENS = 12  # a block's "[n] title" line, about


@dataclass(frozen=True, slots=True)
class Line:
    """One sentence of the evidence: `id` is "n.m", the m-th sentence of passage n."""

    id: str
    start: int  # offsets in the passage's chunk text
    end: int


@dataclass(frozen=True, slots=True)
class Block:
    """The evidence taken from one passage: passage `n` (as cited) and the lines shown."""

    n: int
    hit: Hit
    lines: tuple[Line, ...]
    whole: bool  # every sentence of the passage is shown

    def text(self) -> str:
        """The block as the model reads it: the passage's number and title, then its lines."""
        chunk = self.hit.chunk
        title = " ".join(chunk.title.split())
        rows = [f"[{self.n}] {title}" if title else f"[{self.n}]"]
        rows += [
            f"({line.id}) {_one_line(chunk.text[line.start : line.end])}" for line in self.lines
        ]
        return "\n".join(rows) + "\n\n"


@dataclass(frozen=True, slots=True)
class Evidence:
    blocks: tuple[Block, ...]
    collection: bool = False  # the whole collection, read whole (not retrieved passages)

    @property
    def hits(self) -> tuple[Hit, ...]:
        """The passages shown, ranked as numbered: `hits[n - 1]` is passage [n]."""
        return tuple(b.hit for b in self.blocks)

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(line.id for b in self.blocks for line in b.lines)

    def line(self, line_id: str) -> tuple[Block, Line] | None:
        for block in self.blocks:
            for line in block.lines:
                if line.id == line_id:
                    return block, line
        return None

    def text(self) -> str:
        return "".join(b.text() for b in self.blocks)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _renumbered(hits: Sequence[Hit]) -> list[Hit]:
    return [dataclasses.replace(h, rank=n) for n, h in enumerate(hits, 1)]


def whole(hits: Sequence[Hit]) -> Evidence:
    """Every sentence of each passage, the passages in the order given."""
    blocks = []
    for hit in _renumbered(hits):
        spans = split_sentences(hit.chunk.text) or [(0, len(hit.chunk.text))]
        lines = tuple(Line(f"{hit.rank}.{m}", a, b) for m, (a, b) in enumerate(spans, 1))
        blocks.append(Block(hit.rank, hit, lines, True))
    return Evidence(tuple(blocks))


def document_order(hits: Sequence[Hit]) -> list[Hit]:
    """Hits in a stable order, by document then position: the same passages make the same
    prompt prefix whatever the question."""
    return sorted(hits, key=lambda h: (h.chunk.doc_id, h.chunk.start, h.chunk.id))


def select(
    question_vector: np.ndarray,
    question_words: set[str],
    hits: Sequence[Hit],
    sentence_vectors: Callable[[Hit], tuple[list[tuple[int, int]], np.ndarray]],
    count_tokens: Callable[[str], int],
    budget: int,
    *,
    lexical_weight: float = LEXICAL_WEIGHT,
    rank_penalty: float = RANK_PENALTY,
) -> Evidence:
    """The sentences of `hits` that bear most on the question, under `budget` tokens.

    Each sentence scores its cosine to the question plus `lexical_weight` times the share of
    the question's words (folded, see `words`) it holds, less `rank_penalty` per rank of its
    passage.
    Sentences are taken best first, each with the sentence before it when it opens on a
    reference back ("Il a ..."), while they fit; the best one is always taken. A passage
    comes before another when its best sentence does; its sentences keep their order; a
    passage none of whose sentences is taken is left out."""
    candidates = []  # (score, hit index, sentence index)
    spans_of = []
    for i, hit in enumerate(hits):
        spans, vectors = sentence_vectors(hit)
        spans_of.append(spans)
        sims = np.asarray(vectors) @ np.asarray(question_vector)
        for m, (a, b) in enumerate(spans):
            held = words(hit.chunk.text[a:b])
            lexical = _share(question_words, held)
            candidates.append((float(sims[m]) + lexical_weight * lexical - rank_penalty * i, i, m))
    candidates.sort(key=lambda c: -c[0])
    chosen: set[tuple[int, int]] = set()
    shown: set[int] = set()  # passages with a sentence taken
    used = 0
    for _, i, m in candidates:
        text = hits[i].chunk.text
        wanted = (
            [m - 1, m] if m > 0 and _BACK_REFERENCE.match(text[slice(*spans_of[i][m])]) else [m]
        )
        new = [k for k in wanted if (i, k) not in chosen]
        cost = sum(count_tokens(_one_line(text[slice(*spans_of[i][k])])) + 6 for k in new)
        cost += 0 if i in shown else HEADER_TOKENS
        if chosen and used + cost > budget:
            continue
        chosen.update((i, k) for k in new)
        shown.add(i)
        used += cost
        if used >= budget:
            break
    # passages in the order of their best sentence: a small model reads the first ones best
    best: dict[int, int] = {}
    for place, (_, i, m) in enumerate(candidates):
        if (i, m) in chosen:
            best.setdefault(i, place)
    order = sorted(best, key=best.__getitem__)
    blocks = []
    for n, i in enumerate(order, 1):
        hit = dataclasses.replace(hits[i], rank=n)
        lines = tuple(
            Line(f"{n}.{m + 1}", *spans_of[i][m])
            for m in range(len(spans_of[i]))
            if (i, m) in chosen
        )
        blocks.append(Block(n, hit, lines, len(lines) == len(spans_of[i])))
    return Evidence(tuple(blocks))


def closest(
    evidence: Evidence,
    question_vector: np.ndarray,
    question_words: set[str],
    sentence_vectors: Callable[[Hit], tuple[list[tuple[int, int]], np.ndarray]],
    k: int = 3,
) -> list[str]:
    """The ids of the k evidence sentences that score best for the question: the sentences
    `quote_choice` "closest" quotes, and the hint the prompt may give after the question.
    Each scores as in `select`, plus TITLE_WEIGHT times the share of the question's words
    that it and its passage's title hold together, less CLOSEST_RANK per place of its block
    (bench/tune_closest.py)."""
    scored = []
    for block in evidence.blocks:
        spans, vectors = sentence_vectors(block.hit)
        where = {span: m for m, span in enumerate(spans)}
        title = words(block.hit.chunk.title or "")
        for line in block.lines:
            m = where.get((line.start, line.end))
            if m is None:
                continue
            held = words(block.hit.chunk.text[line.start : line.end])
            score = float(np.asarray(vectors[m]) @ np.asarray(question_vector))
            score += LEXICAL_WEIGHT * _share(question_words, held)
            score += TITLE_WEIGHT * _share(question_words, held | title)
            scored.append((score - CLOSEST_RANK * (block.n - 1), line.id))
    return [i for _, i in sorted(scored, key=lambda x: -x[0])[:k]]


def words(text: str) -> set[str]:
    """A text's words for matching across inflections: folded, their first five letters,
    words of three letters or more and numbers."""
    from rag.language import fold

    return {w[:5] for w in _WORD.findall(fold(text)) if len(w) >= 3 or w.isdigit()}


def question_words(question: str) -> set[str]:
    """The words of a question that a sentence answering it may hold: `words` less the
    function words ("quel", "what", "est")."""
    from rag.language import fold
    from rag.support import stopwords

    common = stopwords()
    return words(" ".join(w for w in _WORD.findall(fold(question)) if w not in common))


def _share(asked: set[str], held: set[str]) -> float:
    return len(asked & held) / len(asked) if asked else 0.0
