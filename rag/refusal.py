"""The refusal policy: every reason ragchat has to say "not in your documents", in one place.

Each reason is a named signal. The engine (rag/answering.py) records the signals that fired on
`Answer.signals`; an answer is refused when one of the REFUSING signals fired. Thresholds come
from one calibration table, keyed by the exact name of the model or embedder they were measured
with (`Settings.llm`, `Settings.embedder`): a model not in the table gets no threshold for that
signal rather than another model's. How each was measured: docs/results.md, "Answers", and
bench/calibrate_support.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rag.citations import marker_numbers

# signals that refuse the answer, and what each tells the person asking
REASONS = {
    "no_passage": "No passage of your documents is close enough to the question.",
    "not_found": "The model found no sentence of the passages that answers the question, "
    "or said they do not tell.",
    "doubt": "The model was unsure the passages answer the question (it nearly replied NOT_FOUND).",
    "no_quote": "The model's reply named no sentence of the passages it rests on.",
    "unsupported": "The answer says something its quoted sentences do not say.",
    "restates": "The answer only repeated the question's own words, twice.",
    "wrong_kind": "The answer is not the kind of answer the question asks for (a number, a date).",
    "not_verified": "Asked to check, the model did not confirm that the passages state the answer.",
    "empty": "Nothing was left of the reply once markup and copied instructions were removed.",
}
# signals that change an answer without refusing it
NOTES = {
    "markup_removed": "Images, links or HTML that a document made the model write were removed.",
    "retried": "The model's first answer only repeated the question; it was asked again, "
    "from the next sentences closest to the question.",
    "quote_moved": "The sentences the model named did not state the answer; the ones that do "
    "are cited instead.",
}
REFUSING = frozenset(REASONS)


@dataclass(frozen=True, slots=True)
class ModelCalibration:
    """Thresholds measured for one answer model, used when Settings.max_doubt is -1."""

    # quoted answers: refuse when the model's probability of having begun its reply with
    # " none" (no sentence states the answer) is at least this; 0 = never
    doubt: float = 0.0
    # free-text answers: the same for NOT_FOUND; 0 = never
    free_doubt: float = 0.0
    # extracted answers (answer_form "extract"): the same for " none"
    extract_doubt: float = 0.0


@dataclass(frozen=True, slots=True)
class EmbedderCalibration:
    """Thresholds measured for one embedder's cosines."""

    # the best question-passage cosine under which no passage is relevant; 0 = never
    relevance: float = 0.0
    # the cosine between an answer and its quoted sentences under which the quote does not
    # support it (unless the answer's names are in the quote); 0 = not checked
    quote: float = 0.0


MODELS = {
    # doubt 0.07: the lowest hundredth above the doubt of every answer holding the gold on the
    # tuning runs of the quote form over selected sentences (piaf_fr_mini, xquad_en_q_es_mini,
    # English over French; bench/calibrate_doubt.py): it refuses none of them, and on the
    # unanswerable design sets refuses 2 + 1 more of 24 (docs/results.md, Answers).
    # free_doubt: 0.1 was calibrated (bench/replay_verify.py doubt, at most 5 % of answerable
    # questions more refused) but refused 9 of 50 answerable English-over-Spanish ones: unused
    "qwen2.5-coder-1.5b-instruct": ModelCalibration(doubt=0.07),
}
EMBEDDERS = {
    # 0.74: below every one of the 1,206 answerable *_mini questions (lowest 0.749, en->es)
    "multilingual-e5-small": EmbedderCalibration(relevance=0.74, quote=0.78),
}


def model_calibration(llm: str) -> ModelCalibration:
    return MODELS.get(llm, ModelCalibration())


def embedder_calibration(embedder: str) -> EmbedderCalibration:
    return EMBEDDERS.get(embedder, EmbedderCalibration())


def refuses(signals: tuple[str, ...] | list[str]) -> bool:
    return any(s in REFUSING for s in signals)


def explain(signals: tuple[str, ...] | list[str]) -> list[str]:
    """What each fired signal means, refusing ones first, in words for the person asking."""
    return [REASONS[s] for s in signals if s in REASONS] + [NOTES[s] for s in signals if s in NOTES]


_FREE_REFUSAL = re.compile(
    r"(cannot|can't|could not|couldn't|unable to)\s+(find|answer|determine)|"
    r"(do|does) not (contain|mention|provide|say|specify)|no information|(don't|do not) know|"
    r"(is|are) not (\w+ly )?(mentioned|stated|specified|provided|given)|"
    r"ne (contient|mentionne|précise|dit) pas|pas (d'|de )information|je ne sais pas|"
    r"n'est pas (\w+ment )?(mentionné|indiqué|précisé)|"
    r"no (se )?(menciona|especifica|proporciona|indica)|no hay (datos|información)|"
    r"(nicht|keine) (erwähnt|angegeben|genannt|Information|Angabe)",
    re.IGNORECASE,
)


def declines(answer: str) -> bool:
    """Whether a quoted answer is the model saying the passages do not tell ("The budget is
    not provided in the given text"), after naming sentences all the same."""
    return bool(_FREE_REFUSAL.search(answer))


def free_text_refusal(raw: str, n_passages: int, not_found: str) -> bool:
    """Whether a free-text reply (Settings.answer_form "free") is the model declining: empty,
    NOT_FOUND, or a sentence saying so without citing any passage."""
    text = raw.strip()
    if not text or text.startswith(not_found):
        return True
    has_citation = any(1 <= n <= n_passages for n in marker_numbers(text))
    return not has_citation and bool(_FREE_REFUSAL.search(text))
