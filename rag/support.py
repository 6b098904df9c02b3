"""Citation checking: which retrieved passages support each sentence of an answer.

A small model cites loosely: every passage at once, the wrong one, or none. After generation the
answer is split into sentences, and each sentence (a claim) is compared with every sentence of
every retrieved passage, across languages:

- meaning: the embedder's cosine similarity between the claim (embedded as a query) and the
  passage sentence (embedded as a passage), the same comparison retrieval makes;
- names and numbers: the claim's capitalised words and numbers, accent-folded, looked up in the
  passage. Names stay as written in any language; a number of the claim that the passage does
  not hold (as digits, or as a word from two to twelve) rules the passage out: invented ages,
  durations and dates are caught here.

A passage (its text and its title, both of which the model read) supports a claim when it holds
the claim's numbers and its best sentence is similar enough on its own, or related and anchored
by the claim's names (or, for a claim without names, its numbers); and when it is about what the
question asks about: a passage that holds none of the question's names, while another retrieved
passage holds one, does not support the answer (a visitor count from a passage about a basilica
is no answer about a castle; a name no passage holds may be written in another language, and is
not asked for). The model's markers are then
checked: a marker of a supporting passage that scores within `Rules.margin` of the best one
stays, any other goes; a supported claim whose markers all went, or that had none, cites its
best supporting passage; a claim no passage supports is marked unsupported and cites nothing.
Each citation's quote is the passage sentence that best supports the claims citing it.

The thresholds (Rules) were chosen on the default model's answers to the sample-article gold set
and 50 piaf_fr_mini and 50 xquad_en_q_es_mini questions, replayed by
bench/calibrate_support.py (docs/results.md, "Answers"); the subject rule by its `strict` mode
on the recorded answers (two stricter rules measured with it and dropped:
bench/results/calibrate_strict.json).
"""

from __future__ import annotations

import difflib
import functools
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

import numpy as np
from text_to_num import alpha2digit

from rag.chunking import split_sentences
from rag.citations import MARKER, clean_markers, marker_numbers
from rag.language import fold
from rag.protocols import Embedder
from rag.types import Citation, Hit, Sentence

_WORD = re.compile(r"\w+", re.UNICODE)
_NUMBER = re.compile(r"\d+(?:[.,\s\u00a0\u202f]\d{3})*(?:[.,]\d+)?")
_NAME = re.compile(r"\b[^\W\d_][\w'’-]*", re.UNICODE)
_END = re.compile(r"([.!?…:;]+[\"'»”)]*)$")
_CACHE_CHUNKS = 512  # passages whose sentence vectors are kept (questions often share passages)


@dataclass(frozen=True, slots=True)
class Rules:
    """When a passage sentence supports a claim (cosines of the default e5 embedder)."""

    similar: float = 0.82  # cosine at which a passage sentence supports a claim by itself
    related: float = 0.78  # cosine at which it supports a claim it anchors (names, numbers)
    names: float = 0.5  # share of the claim's names the passage must hold to anchor it
    margin: float = 0.02  # cited passages scoring this far below the best one are dropped
    # what the question is about: the share of the question's names, among those some
    # retrieved passage holds, that a supporting passage must hold (0: not checked). An answer
    # about the château de Kilkenny drawn from a passage about a basilica is no answer.
    subject: float = 0.01  # 0.01: at least one of them (bench/calibrate_support.py strict)
    # cosine at which a name of the answer is held by a name of a sentence in another
    # language ("Sweden", "Suecia"); above 1: never (bench/translated_names.py)
    translated: float = 0.9


# Rules per embedder, by its exact name (Settings.embedder): cosines are on different scales
# (e5's sit between 0.7 and 1)
_RULES = {"multilingual-e5-small": Rules()}
GENERIC_RULES = Rules(similar=0.65, related=0.45, translated=2.0)  # others: not calibrated


def rules_for(embedder: str) -> Rules:
    """The checking thresholds for an embedder named as in Settings.embedder."""
    return _RULES.get(embedder, GENERIC_RULES)


@dataclass(frozen=True, slots=True)
class Checked:
    """An answer after checking: its text with corrected markers, sentences, citations."""

    text: str
    sentences: tuple[Sentence, ...]
    citations: tuple[Citation, ...]

    @property
    def supported(self) -> bool:
        """Whether any sentence is supported (an answer supported nowhere is refused)."""
        return any(s.supported for s in self.sentences)


@dataclass
class _Claim:
    text: str  # without markers
    cited: list[int]  # the model's markers, in order
    sep: str  # the text between the previous sentence and this one


def numbers(text: str) -> set[str]:
    """The numbers of a text, digits only: "10 000", "10,000" and "10000" are one number;
    numbers written as words count too, in English, French, Spanish and German ("three",
    "trois" -> "3"; "vingt-quatre" -> "24", by text2num)."""
    text, found = _scaled(text)
    text, fractions = _fractions(text)
    found |= fractions | _digits(text)
    if _SPELLED.search(text):
        for language in _NUMBER_LANGUAGES:
            found |= _digits(alpha2digit(text, language))
    words = _WORD.findall(fold(text))
    found |= {_NUMBER_WORDS[w] for w in words if w in _NUMBER_WORDS}
    # "five million" read as French is "five 1000000": a scale word alone is no number of
    # the text when a multiple of it is
    return {
        x
        for x in found
        if x not in _SCALES
        or not any(y != x and int(y) % int(x) == 0 for y in found if y.isdigit())
    }


# a fraction's denominator by the word that names it: "un tiers" is "1/3", "two thirds" "2/3"
_FRACTION_WORDS = {
    **dict.fromkeys("half halves moitié moitie mitad hälfte halfte".split(), 2),
    **dict.fromkeys("third thirds tiers tercio tercios drittel".split(), 3),
    **dict.fromkeys("quarter quarters quart quarts viertel".split(), 4),
}
# fraction words that are ordinals too, a fraction only after a numerator ("one third")
_ORDINALS = frozenset({"third", "quarter"})
_ONE = dict.fromkeys("a an one un une uno una ein eine einen".split(), "1")
_FRACTION = re.compile(
    r"(?<![\d/])(\d{1,2})\s*/\s*([2-9]|10)(?![\d/])|"
    r"\b(?:(\d{1,2}|[^\W\d_]+)[\s-]+)?("
    + "|".join(sorted(_FRACTION_WORDS, key=len, reverse=True))
    + r")\b",
    re.IGNORECASE,
)


def _fractions(text: str) -> tuple[str, set[str]]:
    """`text` less its fractions, and the fractions as "1/3": "1/3", "un tiers" and "a third"
    are one number, "deux tiers" and "2/3" another."""
    found: set[str] = set()

    def fraction(m: re.Match[str]) -> str:
        if m.group(1):
            found.add(f"{int(m.group(1))}/{m.group(2)}")
            return " ; "
        before, word = m.group(3) or "", m.group(4).lower()
        numerator = before if before.isdigit() else _NUMBER_WORDS.get(fold(before), "")
        numerator = numerator or _ONE.get(fold(before), "")
        if word in _ORDINALS and not numerator:  # "the third battalion"
            return m.group(0)
        found.add(f"{int(numerator or 1)}/{_FRACTION_WORDS[word]}")
        # a word before that is no number stays a word of the text ("du tiers")
        return " ; " if numerator else f"{before} ; "

    return _FRACTION.sub(fraction, text), found


def _digits(text: str) -> set[str]:
    return {re.sub(r"\D", "", m.group(0)) for m in _NUMBER.finditer(text)}


def _scaled(text: str) -> tuple[str, set[str]]:
    """`text` less its digits followed by a scale word ("5 million", "2,5 millions", "1.2
    billion"), and their amounts ("5000000"), as "cinco millones" or "five million" give
    (read as digits, "5 1000000" would be "5100" and "0000")."""
    found: set[str] = set()

    def amount(m: re.Match[str]) -> str:
        digits = m.group(1)
        if re.fullmatch(r"\d{1,3}(?:[.,]\d{3})+", digits):  # "1,000 million": a separator
            digits = re.sub(r"\D", "", digits)
        value = Decimal(digits.replace(",", ".")) * _SCALE_WORDS[fold(m.group(2))]
        if value == value.to_integral_value():
            found.add(str(int(value)))
        return " ; "

    return _SCALED.sub(amount, text), found


_SCALE_WORDS = {
    **dict.fromkeys("thousand mille mil tausend".split(), 10**3),
    **dict.fromkeys("million millions millon millones millionen mio".split(), 10**6),
    **dict.fromkeys("billion billions milliard milliards milliarde milliarden".split(), 10**9),
}
_SCALED = re.compile(
    r"(\d+(?:[.,]\d+)*)\s+("
    + "|".join(sorted([*_SCALE_WORDS, "millón"], key=len, reverse=True))
    + r")\b",
    re.IGNORECASE,
)


_NUMBER_LANGUAGES = ("en", "fr", "es", "de")
_SCALES = frozenset({"100", "1000", "1000000", "1000000000"})
# a subject pronoun: the sentence's subject is named before it
_PRONOUN = re.compile(
    r"\b(il|elle|ils|elles|he|she|they|él|ella|ellos|ellas|er|sie)\b", re.IGNORECASE
)
# any letter run: a text with no letters has no numbers written as words
_SPELLED = re.compile(r"[^\W\d_]{3,}")


# 2..12 as words in the languages of the evaluation sets (1 is too often an article: "un")
_NUMBER_WORDS = {
    w: str(n)
    for n, spellings in {
        2: "two deux dos zwei",
        3: "three trois tres drei",
        4: "four quatre cuatro vier",
        5: "five cinq cinco funf",
        6: "six seis sechs",
        7: "seven sept siete sieben",
        8: "eight huit ocho acht",
        9: "nine neuf nueve neun",
        10: "ten dix diez zehn",
        11: "eleven onze once elf",
        12: "twelve douze doce zwolf",
    }.items()
    for w in spellings.split()
}
_MONTHS_TEXT = """
    january february march april may june july august september october november december
    janvier fevrier mars avril mai juin juillet aout septembre octobre novembre decembre
    enero febrero marzo abril mayo junio julio agosto septiembre octubre noviembre diciembre
    januar februar marz april mai juni juli august september oktober november dezember"""
_MONTHS = set(_MONTHS_TEXT.split())
# a month's name in any of these languages -> one token ("juin", "June" -> "month6"), so that
# an answer's "June" is held by a French passage's "juin"
_MONTH_TOKENS = {
    w: f"month{i % 12 + 1}"
    for line in _MONTHS_TEXT.strip().splitlines()
    for i, w in enumerate(line.split())
}

_MONTH_SET = frozenset(_MONTH_TOKENS.values())


def _words(text: str) -> set[str]:
    """A text's folded words, with the language-independent token of each month it names."""
    found = set(_WORD.findall(fold(text)))
    return found | {_MONTH_TOKENS[w] for w in found if w in _MONTH_TOKENS}


# words that tell a time by an event: "when X happened", "after the war"
_WHEN_WORDS = set(
    """when after before during since until quand lorsque apres avant pendant depuis jusqu
    cuando despues antes durante desde hasta als wenn nachdem bevor wahrend seit bis""".split()
)
# questions whose answer is a quantity, and those whose answer is a time
_ASKS_NUMBER = re.compile(
    r"\b(how (many|much|old|long|far|tall|high|large)|what (percentage|proportion|number)|"
    r"combien|quel (âge|pourcentage|nombre)|quelle (taille|proportion)|cu[áa]nt[oa]s?|"
    r"qu[ée] (edad|porcentaje)|wie (viele?|alt|lange|hoch|gro(ß|ss))|"
    # an amount asked for by name: "Quel était le budget …", "What is the cost of …"
    r"(what|quel|quelle|cu[áa]l) (is|was|were|are|est|était|etait|sont|étaient|es|era|fue) "
    r"(the |le |la |les |l'|el |los |las )?(budget|cost|price|amount|salary|"
    r"coût|cout|montant|salaire|presupuesto|costo|coste|precio|monto|salario))\b",
    re.IGNORECASE,
)
_ASKS_TIME = re.compile(
    r"\b(when|what (year|date|day|month|century)|which (year|date|century)|quand|"
    r"en quelle année|quelle (année|date)|quel (jour|mois|siècle)|cu[áa]ndo|"
    r"en qu[ée] año|qu[ée] (año|fecha|día)|wann|in welchem jahr)\b",
    re.IGNORECASE,
)


def answers_the_question(question: str, answer: str) -> bool:
    """Whether an answer has the kind of content its question asks for: a number for "how
    many", a number or a month for "when". "The delegation was made of directors [1]." is
    supported by its passage, and still no answer to "How many people were in it?". The
    question's own numbers do not count: "in 1808" repeated is no answer to "How many soldiers
    died in 1808?"."""
    given = numbers(question)
    if _ASKS_NUMBER.search(question):
        return bool(numbers(answer) - given)
    if _ASKS_TIME.search(question):
        words = set(_WORD.findall(fold(answer))) - set(_WORD.findall(fold(question)))
        # a date, a month, or a time told by an event ("quand la France redevient royaliste",
        # even to "Quand la dette est-elle dépréciée ?", whose "quand" the answer repeats)
        said = set(_WORD.findall(fold(answer)))
        adds = {w for w in words if w not in stopwords() and len(w) > 1}
        return (
            bool(numbers(answer) - given)
            or bool(words & _MONTHS)
            or bool(said & _WHEN_WORDS and adds)
        )
    return True


def says_more(question: str, text: str) -> bool:
    """Whether a reply begun as `text` already holds a word its question does not (a number, or
    a lower-case word other than a function word), its last, maybe unfinished, word aside: it
    cannot turn out to restate the question (restates_question)."""
    done = re.sub(r"\w+$", "", text)
    asked = _stems(question)
    if set(numbers(done)) - set(numbers(question)):
        return True
    common = stopwords()
    return any(
        not w[0].isupper() and (f := fold(w))[:5] not in asked and f not in common and len(f) > 1
        for w in _NAME.findall(done)
    )


def _stems(text: str) -> set[str]:
    """A text's folded words cut to five letters: "offered" is the question's "offer"."""
    return {w[:5] for w in _WORD.findall(fold(text))}


def content_stems(text: str) -> set[str]:
    """A text's words but function words and single letters, folded and cut to five letters
    ("protestante" is "Protestant")."""
    common = stopwords()
    return {w[:5] for w in _WORD.findall(fold(text)) if len(w) > 1 and w not in common}


def restates_question(question: str, answer: str) -> bool:
    """Whether an answer says nothing its question does not: "Abdellatif Hammouchi" to "Who
    did Hammouchi meet?". Every word of it, function words aside, is the question's, or part of
    a name (a run of capitalised words) of which the question holds a word other than the
    answer's first, capitalised only as it opens the answer, or a name ("L'île Amsterdam"
    does not restate "Quelle île est proche de l'île saint paul ?"). A number the question
    lacks is always something said ("6 kilomètres"). Words are compared by their first five
    letters: "Avril Haines offered Morocco help" restates "What did Avril Haines offer
    Morocco?"."""
    answer = clean_markers(answer, 0)  # "[5]" is no number of the answer
    asked = set(_WORD.findall(fold(question)))
    stems = _stems(question)
    common = stopwords()
    asked_names = question_names(question, common)
    # the question's words that name something: its names, or all its words when it has none
    # (typed in lower case); "Town" of "Manakin Town" is no name of "What town was granted to
    # the Huguenots?", and "Hammouchi" of "Abdellatif Hammouchi" is one of "who did hammouchi
    # meet?"
    naming = asked_names or asked
    words = list(_NAME.finditer(answer))
    left: set[str] = set()
    i = 0
    while i < len(words):
        j = i
        while j < len(words) and words[j].group(0)[0].isupper():
            j += 1
        span = words[i : max(j, i + 1)]
        folded = {p for w in span for p in _WORD.findall(fold(w.group(0)))}
        inner = {p for w in span if w.start() > 0 for p in _WORD.findall(fold(w.group(0)))}
        if j == i or not (inner & naming or folded & asked_names):  # a lower-case word, or a
            # name the question does not hold
            left |= folded - asked
        i = max(j, i + 1)
    if numbers(answer) - numbers(question):
        return False
    return not {w for w in left if w not in common and len(w) > 1 and w[:5] not in stems}


def after_restatement(question: str, answer: str) -> str:
    """What an answer of a few words adds after an opening that restates its question:
    "Avril Haines, William Burns, and Christopher Wray" of "Hammouchi metted with Avril Haines,
    William Burns, and Christopher Wray" to "Who did Hammouchi meet?". The opening is the
    question's words (by their first five letters), function words and at most one other
    word in lower case after the first of the question's (its verb, as the model conjugates
    it), then at most one function word ("with"); it is cut when what follows is names or
    numbers (every word but function words capitalised or a number; a number alone only after
    a function word, "in 1965"). Else the answer as it is."""
    cut = _opening_end(question, answer)
    if not cut:
        return answer
    rest = answer[cut:]
    if not all(
        w[0].isupper() or w.isdigit() or fold(w) in stopwords() for w in _WORD.findall(rest)
    ):
        return answer
    return rest


def shown_from(question: str, text: str) -> int | None:
    """Where a reply begun as `text` is shown from while it is written: after an opening that
    restates the question (as `after_restatement` cuts it) once the first word after it
    begins, else 0; None while every finished word could still belong to such an opening
    (its last word may be unfinished: it counts only when it begins a name that no word of the
    question or function word begins, "Christ" of "Christopher" to "Qui dirige le FBI ?")."""
    done = text
    last = re.search(r"\w+$", text)
    if last:  # unfinished: it counts when it begins a name no word of the question begins
        word = fold(last.group(0))
        asked = _stems(question) | stopwords()
        if not (last.group(0)[0].isupper() or word.isdigit()) or any(
            w.startswith(word[:5]) for w in asked
        ):
            done = text[: last.start()]
    return _opening_end(question, done, finished=False)


def _opening_end(question: str, text: str, finished: bool = True) -> int | None:
    """The offset of the first word after an opening of `text` that restates the question
    (see `after_restatement`) and is followed by a name or a number; 0 when there is none;
    with `finished` False, None while all of `text` could still be such an opening."""
    stems = _stems(question)
    common = stopwords()
    asked = other = between = 0  # between: function words since the last other word
    for m in _WORD.finditer(text):
        word = fold(m.group(0))
        if word in common:
            between += 1
            continue
        if word[:5] in stems and not word.isdigit():
            asked += 1
        elif not other and asked and m.group(0).islower():
            other = 1  # the verb, after the subject the question names
        else:
            opening = text[: m.start()]
            if not asked or len(_WORD.findall(opening)) < 2 or between > 1:
                return 0  # "said that the FBI ..." goes on with a clause, not a name
            if m.group(0)[0].isupper() or (word.isdigit() and between):
                return m.start()  # "118" of "Route nationale 118" is no answer alone
            return 0
        between = 0
    return 0 if finished else None


def names(text: str, stopwords: frozenset[str]) -> set[str]:
    """The capitalised words of a text (names, acronyms), folded, minus function words."""
    found = set()
    for m in _NAME.finditer(text):
        word = m.group(0)
        if word[0].isupper() and len(word) > 1:
            for part in _WORD.findall(fold(word)):
                # a number written as a word ("Six") is checked as a number, not a name
                if len(part) > 1 and part not in stopwords and part not in _NUMBER_WORDS:
                    found.add(_MONTH_TOKENS.get(part, part))
    return found


# a run of capitalised words, with the small words names hold ("Corte Suprema de los Estados
# Unidos", "Bank of England")
_RUN = re.compile(
    r"[^\W\d_a-z][\w'’-]*(?:\s+(?:(?:de|del|la|las|los|le|des|du|of|the|von|der)\s+)*"
    r"[^\W\d_a-z][\w'’-]*)*",
    re.UNICODE,
)


def _name_runs(text: str) -> list[str]:
    """The runs of capitalised words of a text, each once."""
    runs = []
    for m in _RUN.finditer(text):
        run = _LEADING_ARTICLE.sub("", m.group(0))
        if run[:1].isupper():
            runs.append(run)
    return list(dict.fromkeys(runs))


_LEADING_ARTICLE = re.compile(r"^(?:The|La|Las|Los|El|Le|Les|Der|Die|Das)\s+(?=\S)")


def question_names(question: str, stopwords: frozenset[str]) -> set[str]:
    """The names of a question: its capitalised words but the first ("Quel", "Which")."""
    first = _NAME.search(question)
    return names(question[first.end() :] if first else question, stopwords)


def _holds(words: set[str], name: str) -> bool:
    """Whether a passage's words hold a name, allowing the small differences of a name written
    in another language: "Daesh" holds "Daech"; "Morocco" does not hold "Maroc"."""
    if name in words:
        return True
    if len(name) < 5 or name in _MONTH_SET:
        return False
    return any(
        abs(len(w) - len(name)) <= 2
        and w[:2] == name[:2]
        and difflib.SequenceMatcher(None, w, name).ratio() >= 0.8
        for w in words
    )


def split_claims(text: str) -> list[_Claim]:
    """The sentences of an answer with the markers each carries. Markers that open a
    sentence ("Wray. [1] He …") belong to the sentence before."""
    claims: list[_Claim] = []
    last = 0
    for start, end in split_sentences(text):
        segment = text[start:end]
        sep = text[last:start]
        last = end
        lead = re.match(rf"(?:\s*{MARKER.pattern})+", segment)
        if lead and claims:
            claims[-1].cited += marker_numbers(lead.group(0))
            segment = segment[lead.end() :]
        cited = marker_numbers(segment)
        plain = clean_markers(segment, 0)  # every marker removed
        if not _WORD.search(plain):  # markers or punctuation alone
            if claims:
                claims[-1].cited += cited
            continue
        claims.append(_Claim(plain, cited, sep if claims else ""))
    return claims


def with_markers(sentence: str, cited: Sequence[int]) -> str:
    """`sentence` with `[n]` markers before its final punctuation: "… Wray [1]."."""
    if not cited:
        return sentence
    marks = "".join(f"[{n}]" for n in cited)
    m = _END.search(sentence)
    if m:
        return f"{sentence[: m.start()].rstrip()} {marks}{m.group(1)}"
    return f"{sentence} {marks}"


class SupportChecker:
    """Checks answers against their passages with an embedder (see the module docstring)."""

    def __init__(self, embedder: Embedder, rules: Rules | None = None) -> None:
        self.embedder = embedder
        self.rules = rules or Rules()
        self._cache: OrderedDict[str, tuple[list[tuple[int, int]], np.ndarray]] = OrderedDict()
        self._names: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._stopwords = stopwords()

    def check(
        self,
        text: str,
        hits: Sequence[Hit],
        *,
        question: str = "",
        drop: Callable[[str], bool] | None = None,
    ) -> Checked:
        """Check `text`'s sentences, the answer to `question`, against `hits` (numbered 1..n
        as in the prompt). Sentences for which `drop` is true are removed first (copies of
        the instructions)."""
        claims = split_claims(text)
        if drop is not None:
            claims = [c for c in claims if not drop(c.text)]
            if claims:
                claims[0].sep = ""
        if not claims or not hits:
            sentences = tuple(Sentence(c.text, (), False, 0.0) for c in claims)
            return Checked(_join(claims, [()] * len(claims)), sentences, ())
        scores = self.scores([c.text for c in claims], hits, question)
        decided = decide(scores, [c.cited for c in claims], self.rules)
        best = scores.ranking().max(axis=1)
        sentences = tuple(
            Sentence(c.text, cited, bool(cited), round(float(b), 4))
            for c, cited, b in zip(claims, decided, best)
        )
        citations = self._citations(decided, hits, scores)
        return Checked(_join(claims, decided), sentences, tuple(citations))

    def quote_support(
        self, question: str, answer: str, lines: Sequence[tuple[Hit, Any]]
    ) -> list[LineSupport]:
        """How each evidence sentence (`(hit, line)`, a line's `start` and `end` in its
        passage) relates to an answer: its cosine to the answer (embedded after its question),
        its numbers and words."""
        claim = self.embedder.embed_query(f"{question} {answer}".strip())
        found = []
        for hit, line in lines:
            spans, vectors = self.sentence_vectors(hit)
            try:
                vector = vectors[spans.index((line.start, line.end))]
            except ValueError:  # not a sentence as split here: embed it as it is
                text = hit.chunk.text[line.start : line.end]
                vector = np.asarray(self.embedder.embed_documents([text]))[0]
            read = hit.chunk.text[line.start : line.end]  # not the title: the claim rests on
            # the sentence (a title's "Washington" is no answer to "where was the summit?")
            words = _words(read)
            if _PRONOUN.search(read):  # "Dès 1987, il abandonne ...": whom "il" names is in
                # the sentence before it or, in an article about a person, its title
                before = [a for a, b in spans if b <= line.start]
                context = hit.chunk.text[before[-1] : line.start] if before else ""
                words |= _words(f"{hit.chunk.title} {context}")
            found.append(LineSupport(float(vector @ claim), numbers(read), words))
        return self._translated(question, answer, lines, found)

    def _translated(
        self,
        question: str,
        answer: str,
        lines: Sequence[tuple[Hit, Any]],
        found: list[LineSupport],
    ) -> list[LineSupport]:
        """`found` with the names of the answer that no sentence holds as written but one of
        the three most similar holds in another language: the cosine of the answer's name
        ("United States") to one of the sentence's ("Estados Unidos") is at least
        `rules.translated`. Acronyms must be written as they are ("MLB" is close to "NFL")."""
        _, wanted = self.claim_parts(question, answer)
        every = set().union(set(), *(ln.words for ln in found))
        missing = {n for n in wanted if not _holds(every, n)}
        runs = [r for r in _name_runs(answer) if set(_WORD.findall(fold(r))) & missing]
        runs = [r for r in runs if not (r.isupper() and len(r) <= 5)]
        if not runs or self.rules.translated > 1:
            return found
        top = sorted(range(len(found)), key=lambda i: -found[i].similarity)[:3]
        wanted_vectors = [self._name_vector(r) for r in runs]
        for i in top:
            hit, line = lines[i]
            theirs = [
                self._name_vector(r) for r in _name_runs(hit.chunk.text[line.start : line.end])
            ]
            held = frozenset(
                part
                for run, vector in zip(runs, wanted_vectors)
                if any(float(vector @ other) >= self.rules.translated for other in theirs)
                for part in _WORD.findall(fold(run))
                if part in missing
            )
            if held:
                found[i] = replace(found[i], translated=held)
        return found

    def _name_vector(self, name: str) -> np.ndarray:
        """A name's embedding (as a query: names are compared with names), cached."""
        with self._lock:
            if name in self._names:
                return self._names[name]
        vector = np.asarray(self.embedder.embed_query(name))
        with self._lock:
            self._names[name] = vector
            while len(self._names) > 4096:
                self._names.popitem(last=False)
        return vector

    def claim_parts(self, question: str, answer: str) -> tuple[set[str], set[str]]:
        """The numbers and names an answer adds to its question: what its quotes must hold."""
        wanted = {x for x in numbers(answer) - numbers(question) if x}
        asked = names(question, self._stopwords)
        return wanted, names(answer, self._stopwords) - asked

    def _citations(
        self, decided: Sequence[tuple[int, ...]], hits: Sequence[Hit], scores: Scores
    ) -> list[Citation]:
        """One Citation per cited passage, in order of first citation; its quote is the
        passage sentence most similar to the claims that cite it."""
        order = list(dict.fromkeys(n for cited in decided for n in cited))
        citations = []
        for n in order:
            claim_ids = [c for c, cited in enumerate(decided) if n in cited]
            sims = scores.sentence_sims[n - 1][claim_ids]  # claims x passage sentences
            best = int(np.argmax(sims.max(axis=0)))
            start, end = scores.spans[n - 1][best]
            chunk = hits[n - 1].chunk
            citations.append(Citation(n, chunk, chunk.text[start:end], start, end))
        return citations

    def scores(self, claims: Sequence[str], hits: Sequence[Hit], question: str = "") -> Scores:
        """Similarity, names and numbers of every claim against every passage, and how much
        each passage is about the question's subject. A claim is embedded after the question
        it answers: "Christopher Wray." alone means little."""
        claim_vectors = np.stack(
            [self.embedder.embed_query(f"{question} {c}".strip()) for c in claims]
        )
        spans, sims = [], []
        for hit in hits:
            passage_spans, vectors = self.sentence_vectors(hit)
            spans.append(passage_spans)
            sims.append(claim_vectors @ vectors.T)  # claims x sentences
        sim = np.array([[s[c].max() for s in sims] for c in range(len(claims))])
        # the title is part of what the model read (`<passage title="…">`)
        read = [f"{h.chunk.title}\n{h.chunk.text}" for h in hits]
        passage_words = [_words(t) for t in read]
        passage_numbers = [numbers(t) for t in read]
        name_share = np.ones_like(sim)
        has_names = np.zeros(len(claims), dtype=bool)
        claim_numbers = []
        for c, claim in enumerate(claims):
            found = names(claim, self._stopwords)
            has_names[c] = bool(found)
            for i in range(len(hits)):
                if found:
                    held = sum(_holds(passage_words[i], name) for name in found)
                    name_share[c, i] = held / len(found)
            claim_numbers.append({x for x in numbers(claim) if x})
        numbers_ok = np.array(
            [[nums <= p for p in passage_numbers] for nums in claim_numbers], dtype=bool
        )
        has_numbers = np.array([bool(nums) for nums in claim_numbers])
        # the question's names that some passage holds: a passage holding none of them is
        # about something else (names no passage holds may be written in another language)
        asked = sorted(question_names(question, self._stopwords))
        holds = np.array([[_holds(w, n) for n in asked] for w in passage_words], dtype=bool)
        holds = holds.reshape(len(hits), len(asked))
        known = holds[:, holds.any(axis=0)]  # passages x the names some passage holds
        subject = known.mean(axis=1) if known.size else np.ones(len(hits))
        return Scores(sim, name_share, has_names, has_numbers, numbers_ok, spans, sims, subject)

    def sentence_vectors(self, hit: Hit) -> tuple[list[tuple[int, int]], np.ndarray]:
        """A passage's sentence spans and their vectors, cached by chunk id."""
        key = hit.chunk.id + ":" + str(len(hit.chunk.text))
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        text = hit.chunk.text
        spans = split_sentences(text) or [(0, len(text))]
        vectors = np.asarray(self.embedder.embed_documents([text[a:b] for a, b in spans]))
        with self._lock:
            self._cache[key] = (spans, vectors)
            while len(self._cache) > _CACHE_CHUNKS:
                self._cache.popitem(last=False)
        return spans, vectors


@dataclass(frozen=True, slots=True)
class LineSupport:
    """What one evidence sentence offers an answer (SupportChecker.quote_support)."""

    similarity: float  # cosine between the answer and the sentence
    numbers: set[str]
    words: set[str]  # folded
    translated: frozenset[str] = frozenset()  # the answer's names it holds in translation


def quotes_support(
    lines: Sequence[LineSupport],
    wanted_numbers: set[str],
    wanted_names: set[str],
    similar: float,
    share: float = 0.5,
) -> bool:
    """Whether sentences support an answer together: they hold its numbers, at least `share`
    of its names when it has names, and, when it has neither, one of them is at least
    `similar` to it (0: not checked)."""
    if not lines:
        return False
    held_numbers = set().union(*(ln.numbers for ln in lines))
    words = set().union(*(ln.words for ln in lines))
    if not wanted_numbers <= held_numbers:
        return False
    if wanted_names:
        translated = set().union(*(ln.translated for ln in lines))
        held = sum(n in translated or _holds(words, n) for n in wanted_names)
        return held / len(wanted_names) >= share
    return bool(wanted_numbers) or max(ln.similarity for ln in lines) >= similar


def best_quotes(
    lines: Sequence[LineSupport],
    wanted_numbers: set[str],
    wanted_names: set[str],
    similar: float,
    most: int = 3,
) -> list[int] | None:
    """The fewest sentences (at most `most`, by index into `lines`) that support an answer
    together, taken greedily: each adds most of what is still missing (numbers, then names),
    the more similar first; None when no such set is found."""
    order = sorted(range(len(lines)), key=lambda i: -lines[i].similarity)
    chosen: list[int] = []
    for _ in range(most):
        picked = [lines[i] for i in chosen]
        if chosen and quotes_support(picked, wanted_numbers, wanted_names, similar):
            return chosen
        missing_numbers = wanted_numbers - set().union(set(), *(ln.numbers for ln in picked))
        held_words = set().union(set(), *(ln.words for ln in picked))
        translated = set().union(set(), *(ln.translated for ln in picked))
        missing_names = {
            n for n in wanted_names if n not in translated and not _holds(held_words, n)
        }

        def gain(i: int, numbers: set[str] = missing_numbers, names: set[str] = missing_names
                 ) -> tuple[int, int, float]:  # fmt: skip
            ln = lines[i]
            return (
                len(numbers & ln.numbers),
                sum(n in ln.translated or _holds(ln.words, n) for n in names),
                ln.similarity,
            )

        rest = [i for i in order if i not in chosen]
        if not rest:
            break
        best = max(rest, key=gain)
        if chosen and gain(best)[:2] == (0, 0):
            break
        chosen.append(best)
    picked = [lines[i] for i in chosen]
    return chosen if quotes_support(picked, wanted_numbers, wanted_names, similar) else None


@dataclass
class Scores:
    """How each claim (row) relates to each passage (column)."""

    sim: np.ndarray  # best cosine between the claim and a sentence of the passage
    name_share: np.ndarray  # share of the claim's names the passage holds (1 without names)
    has_names: np.ndarray  # per claim: whether it has names
    has_numbers: np.ndarray  # per claim: whether it has numbers
    numbers_ok: np.ndarray  # the passage holds the claim's numbers
    spans: list[list[tuple[int, int]]]  # per passage: its sentence spans
    sentence_sims: list[np.ndarray]  # per passage: claims x its sentences
    subject: np.ndarray  # per passage: share of the question's names it holds (1: none known)

    def supports(self, rules: Rules) -> np.ndarray:
        """A passage supports a claim when it holds the claim's numbers and its best sentence
        is similar enough, or related and anchored: holding the claim's names (or, for a
        claim without names, its numbers); and, with `rules.subject`, when it is about what
        the question asks about."""
        named = self.has_names[:, None] & (self.name_share >= rules.names)
        counted = ~self.has_names[:, None] & self.has_numbers[:, None]
        anchored = named | counted
        ok = self.numbers_ok & (
            (self.sim >= rules.similar) | ((self.sim >= rules.related) & anchored)
        )
        if rules.subject > 0:
            ok &= (self.subject >= rules.subject)[None, :]
        return ok

    def ranking(self) -> np.ndarray:
        """Which supporting passage is best: similarity, names a little, numbers a veto."""
        return self.sim + 0.05 * self.name_share - 1.0 * ~self.numbers_ok


def decide(scores: Scores, cited: Sequence[Sequence[int]], rules: Rules) -> list[tuple[int, ...]]:
    """The passage numbers each claim cites after checking (see the module docstring):
    the model's markers of supporting passages that score within `rules.margin` of the best,
    else the best supporting passage, else nothing."""
    supports, ranking = scores.supports(rules), scores.ranking()
    n_hits = supports.shape[1]
    decided = []
    for c, marks in enumerate(cited):
        supporting = [i for i in range(n_hits) if supports[c, i]]
        keep: list[int] = []
        if supporting:
            best = max(ranking[c, i] for i in supporting)
            good = {i for i in supporting if ranking[c, i] >= best - rules.margin}
            keep = [n for n in dict.fromkeys(marks) if 1 <= n <= n_hits and n - 1 in good]
            if not keep:  # the model cited none of them (or nothing): cite the best
                keep = [1 + max(good, key=lambda i: ranking[c, i])]
        decided.append(tuple(keep))
    return decided


def _join(claims: Sequence[_Claim], decided: Sequence[Sequence[int]]) -> str:
    return "".join(c.sep + with_markers(c.text, cited) for c, cited in zip(claims, decided))


@functools.cache
def stopwords() -> frozenset[str]:
    """Function words of the languages bm25s knows, folded: "The", "Il", "Der" are no names."""
    import bm25s.stopwords as sw

    words: set[str] = set()
    for name in dir(sw):
        if name.startswith("STOPWORDS_"):
            words |= {fold(w) for w in getattr(sw, name)}
    return frozenset(words)
