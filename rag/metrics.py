"""Evaluation metrics, pure functions: answer normalisation, exact match, token F1, retrieval
ranks, citation precision and recall, bootstrap confidence intervals, percentiles.

Normalisation is SQuAD's (lower case, no punctuation, no English articles, single spaces),
extended for French: accents folded, and the articles le/la/les/l'/un/une/des/du/d' removed.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

from rag.language import fold

_ARTICLES = re.compile(r"\b(a|an|the|le|la|les|un|une|des|du|l|d)\b")
_ELISION = re.compile(r"\b([ld])['’]")
_PUNCT = set(string.punctuation) | set("«»“”‘’–—…¿¡")


def normalize(text: str) -> str:
    """Lower case, accents folded, punctuation and articles removed, whitespace collapsed."""
    text = fold(text)
    text = _ELISION.sub(r"\1 ", text)
    text = "".join(" " if c in _PUNCT else c for c in text)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, golds: Sequence[str]) -> float:
    p = normalize(prediction)
    return float(any(p == normalize(g) for g in golds))


def token_f1(prediction: str, golds: Sequence[str]) -> float:
    """Best SQuAD token F1 of the prediction against any gold answer."""
    pred = normalize(prediction).split()
    best = 0.0
    for gold in golds:
        ref = normalize(gold).split()
        if not pred or not ref:
            best = max(best, float(pred == ref))
            continue
        common = sum((Counter(pred) & Counter(ref)).values())
        if common:
            precision, recall = common / len(pred), common / len(ref)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


def contains_gold(prediction: str, golds: Sequence[str]) -> float:
    """1 if a normalised gold answer appears in the normalised prediction (as whole words)."""
    p = f" {normalize(prediction)} "
    return float(any(normalize(g) and f" {normalize(g)} " in p for g in golds))


def gold_rank(retrieved_doc_ids: Sequence[str], gold_doc_id: str) -> int | None:
    """1-based rank of the first hit from the gold document, None if not retrieved."""
    for rank, doc_id in enumerate(retrieved_doc_ids, 1):
        if doc_id == gold_doc_id:
            return rank
    return None


def hit_at(rank: int | None, k: int) -> float:
    return float(rank is not None and rank <= k)


def reciprocal_rank(rank: int | None, k: int = 10) -> float:
    return 1.0 / rank if rank is not None and rank <= k else 0.0


def citation_precision(
    cited: Sequence[tuple[str, str]], gold_doc_id: str | None, golds: Sequence[str]
) -> float | None:
    """Share of cited passages (doc_id, text) that are the gold passage or contain a gold
    answer; None when nothing was cited."""
    if not cited:
        return None
    good = sum(
        1
        for doc_id, text in cited
        if (gold_doc_id is not None and doc_id == gold_doc_id) or contains_gold(text, golds)
    )
    return good / len(cited)


def citation_recall(
    cited_doc_ids: Iterable[str], retrieved_doc_ids: Sequence[str], gold_doc_id: str | None
) -> float | None:
    """1 if the gold passage is cited, 0 if it was retrieved but not cited, None if it was not
    retrieved (the model could not have cited it)."""
    if gold_doc_id is None or gold_doc_id not in retrieved_doc_ids:
        return None
    return float(gold_doc_id in set(cited_doc_ids))


def bootstrap_ci(
    values: Sequence[float], *, n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """(mean, low, high): the percentile bootstrap interval of the mean."""
    data = np.asarray([v for v in values if v is not None], dtype=float)
    if data.size == 0:
        return (float("nan"), float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(n_resamples, data.size))].mean(axis=1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return float(data.mean()), float(low), float(high)


def percentiles(values: Sequence[float], qs: Sequence[float] = (50, 95)) -> dict[str, float]:
    data = np.asarray([v for v in values if v is not None], dtype=float)
    if data.size == 0:
        return {f"p{int(q)}": float("nan") for q in qs}
    return {f"p{int(q)}": float(np.percentile(data, q)) for q in qs}
