"""Answering: from retrieved passages to a checked, cited Answer, in named stages.

    relevant? -> evidence -> generate -> read the reply -> check it -> refusal policy -> Answer

Three answer forms (`Settings.answer_form`; "auto", the default, takes "extract" when a small
collection is read whole and "quote" otherwise). "quote": the model reads evidence
sentences with ids (rag/evidence.py); its reply begins with the ids that state the answer, then
answers; with llama.cpp a grammar holds it to ids it was shown, or NOT_FOUND (rag/prompts.py).
Who chooses those ids is `Settings.quote_choice`: the model, or the engine (the sentence
closest to the question, which the model still may refuse). Every citation is then a
sentence known to be verbatim in its passage, and the answer is checked against those
sentences alone. "free": the model writes text with `[n]` markers over whole passages,
checked after against every passage (rag/support.py). "extract": the model answers first, in a
few words; the engine then finds the evidence sentences that hold them (its quotes) and refuses
an answer none holds.
Why an answer is refused is recorded as named signals (rag/refusal.py).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from rag import evidence as ev
from rag import prompts, refusal, verify
from rag.chunking import split_sentences
from rag.citations import clean_markers, marker_numbers, parse_citations
from rag.config import Settings
from rag.errors import GenerationError
from rag.language import detect_language
from rag.markup import strip_markup
from rag.protocols import (
    BlockGenerator,
    Embedder,
    Generator,
    GrammarGenerator,
    PreparingGenerator,
    ReportsUsage,
    ScoresFirstToken,
)
from rag.support import (
    SupportChecker,
    after_restatement,
    answers_the_question,
    best_quotes,
    content_stems,
    quotes_support,
    restates_question,
    says_more,
    shown_from,
    with_markers,
)
from rag.types import Answer, Citation, Hit, Sentence


@dataclasses.dataclass
class _Reply:
    """What one generation gave: the reply's text and when its first token came."""

    raw: str = ""
    first_generated: float | None = None  # the model's first token, shown or not


# what reading a reply gives: the answer text, its citations, its sentences, the signals fired
_Read = tuple[str, tuple[Citation, ...], tuple[Sentence, ...], list[str]]


class Answerer:
    """Answers one question from given passages; built by Chatbot with its components."""

    def __init__(
        self,
        settings: Settings,
        generator: Generator,
        embedder: Embedder,
        checker: SupportChecker,
        collection: Callable[[], list[Hit] | None] = lambda: None,
    ) -> None:
        self.settings = settings
        self.generator = generator
        self.embedder = embedder
        self.checker = checker
        self.collection = collection  # the whole collection when it is small, else None
        # thresholds of the components in use, by their exact names (an injected embedder
        # or generator is not the one Settings names)
        self.model = refusal.model_calibration(generator.name)
        self.doubt: float | None = None  # P(" none") as the quoted reply's first token
        self.usage: dict[str, Any] = {}  # of the quoted reply's first call (its prompt)
        self.verify_s = 0.0  # the last verification's time
        self.chose_quote = False  # the engine chose the quoted sentences (quote_choice)
        self.doubted = False  # the quoted reply was refused on doubt before its answer
        self._vectors: dict[str, Any] = {}  # the question's embedding, computed once
        self.embedding = refusal.embedder_calibration(embedder.name)

    # -- the stages -----------------------------------------------------------------------------

    def relevant(self, hits: Sequence[Hit]) -> bool:
        """Whether retrieval found anything worth asking the model about: some hit, and the
        best dense similarity at least the relevance threshold (when dense search ran)."""
        if not hits:
            return False
        threshold = self.settings.min_relevance
        if threshold < 0:
            threshold = self.embedding.relevance
        similarities = [h.similarity for h in hits if h.similarity is not None]
        return not similarities or max(similarities) >= threshold

    def evidence(self, query: str, hits: Sequence[Hit]) -> ev.Evidence:
        """What the model reads (Settings.evidence): a small collection whole, in document
        order; else the retrieved passages whole, or their sentences that bear on `query`."""
        form = self.settings.evidence
        if form == "auto":
            collection = self.collection()
            if collection:
                return dataclasses.replace(ev.whole(collection), collection=True)
        if form == "passages":
            return self._fit(ev.whole(hits))
        vector = self._query_vector(query)
        return ev.select(
            vector,
            ev.question_words(query),
            hits,
            self.checker.sentence_vectors,
            self.generator.count_tokens,
            self.settings.evidence_tokens,
        )

    def warm(self) -> int:
        """Compute the fixed start of the prompts before the first question: the system
        prompt, then the whole collection when it is small enough to be read whole (every
        question reads it so, rag/evidence.py `whole`), then the lead of an extracted answer
        in English and in the collection's language. The KV state is kept on disk by the
        generator, so that the next process restores it. Returns the tokens already computed
        (0 when nothing was, or the generator cannot)."""
        generator = self.generator
        form = self.form()
        if form == "free" or not isinstance(generator, PreparingGenerator):
            return 0
        collection = self.collection() if self.settings.evidence == "auto" else None
        blocks = [b.text() for b in ev.whole(collection).blocks] if collection else []
        system = prompts.extract_system() if form == "extract" else prompts.quote_system()
        reused = generator.prepare_blocks(system, blocks)
        if form == "extract" and collection:  # the lead of questions in English and in the
            # collection's language, which every such question then finds computed
            languages = dict.fromkeys(["en", detect_language(collection[0].chunk.text)])
            for language in languages:
                generator.prepare_blocks(system, [*blocks, prompts.extract_lead(language)])
        return reused

    def form(self, evidence: ev.Evidence | None = None) -> str:
        """The answer form in use: Settings.answer_form, or for "auto" "extract" when a small
        collection is read whole (its KV state is computed once, so a reply of a few words is
        nearly all an answer costs: 3.5x faster than quoting on the sample article) and
        "quote" when sentences are selected (more gold answers there; docs/results.md,
        Answers). `evidence`: what the model reads, when it is known already."""
        form = self.settings.answer_form
        if form != "auto":
            return form
        if evidence is not None:
            whole = evidence.collection
        else:
            whole = self.settings.evidence == "auto" and bool(self.collection())
        return "extract" if whole else "quote"

    def _query_vector(self, query: str) -> Any:
        if query not in self._vectors:
            self._vectors[query] = self.embedder.embed_query(query)
        return self._vectors[query]

    def _fit(self, evidence: ev.Evidence) -> ev.Evidence:
        """Whole passages, the last ones left out while they overflow the context."""
        room = self.settings.context_window - prompts.QUOTE_TOKENS - 400  # system, question
        blocks = list(evidence.blocks)
        while len(blocks) > 1 and sum(self.generator.count_tokens(b.text()) for b in blocks) > room:
            blocks.pop()
        return ev.Evidence(tuple(blocks))

    def stream(
        self,
        question: str,
        query: str,
        hits: Sequence[Hit],
        *,
        language: str,
        timings: dict[str, float],
        t0: float,
        rewritten: str | None = None,
    ) -> Iterator[str | Answer]:
        """Yield the answer's text as it is generated, then the final Answer."""
        make = _answer_maker(question, rewritten, language, timings, t0)
        if not self.relevant(hits):
            text = prompts.refusal(language)
            yield text
            timings["first_token"] = time.perf_counter() - t0
            yield make(text, (), hits, True, signals=("no_passage",))
            return
        if self.settings.answer_form == "free":
            yield from self._stream_free(question, query, hits, language, timings, t0, make)
            return
        evidence = self.evidence(query, hits)
        timings["evidence"] = time.perf_counter() - t0 - timings["retrieval"]
        if self.form(evidence) == "extract":
            yield from self._stream_extracted(query, evidence, language, timings, t0, make)
        else:
            yield from self._stream_quoted(query, evidence, language, timings, t0, make)

    # -- quoted answers -------------------------------------------------------------------------

    def _stream_quoted(
        self,
        query: str,
        evidence: ev.Evidence,
        language: str,
        timings: dict[str, float],
        t0: float,
        make: Callable[..., Answer],
    ) -> Iterator[str | Answer]:
        reply = _Reply()
        shown = 0
        # plain: a whole reply; translation: of an answer in its passage's words (source_words)
        parts = {"ids": "", "quote": "", "answer": "", "translation": "", "plain": ""}
        for kind, piece in self._generate_quoted(query, evidence, language):
            if reply.first_generated is None:
                reply.first_generated = time.perf_counter() - t0
            if kind == "retry":  # the answer restated the question: asked again
                reply.raw += "\n(asked again)\n"
                parts = dict.fromkeys(parts, "")
                continue
            if kind == "translation" and not parts[kind]:
                reply.raw += prompts.translation_lead(language)
            reply.raw += piece
            parts[kind] += piece
            visible = _plain_so_far(reply.raw) if kind == "plain" else _with_translation(parts)
            if visible is not None and len(visible.lstrip()) > shown:
                timings.setdefault("first_token", time.perf_counter() - t0)  # words shown
                yield visible.lstrip()[shown:]
                shown = len(visible.lstrip())
        timings["generation"] = time.perf_counter() - t0
        timings["first_generated"] = reply.first_generated or timings["generation"]
        usage = self._evidence_usage(evidence)
        if parts["plain"] and not _quoted_form(reply.raw):
            # a generator that cannot be held to the form, whose reply ignored it: read as
            # free text with [n] markers, checked against the passages
            checked = self._checked(
                lambda: self._read_free(query, reply.raw, evidence.hits, usage), timings, language
            )
        else:
            read = reply.raw if parts["plain"] else f"{parts['ids']}\nAnswer:{parts['answer']}"
            translation = parts["translation"]
            checked = self._checked(
                lambda: self._read_quoted(query, read, evidence, usage, language, translation),
                timings,
                language,
            )
        yield from _closing(checked, shown, evidence, usage, reply, make, timings, t0)

    def _generate_quoted(
        self, query: str, evidence: ev.Evidence, language: str
    ) -> Iterator[tuple[str, str]]:
        """The reply, streamed as (part, text): the ids, held to the shown ones by a grammar;
        unless they are " none", the quoted sentences, written out by the engine; then the
        answer, which the model writes right after its quotes (not when its doubt, read from
        the ids' first token, refuses the reply: it stops there). A generator without blocks
        and grammars gets the plain prompt and writes the whole reply ("plain")."""
        system = prompts.quote_system()
        blocks = [b.text() for b in evidence.blocks]
        hint = self._closest(query, evidence) if self.settings.evidence_hint else ()
        generator = self.generator
        self.doubted = False
        choice = self.settings.quote_choice
        if choice == "auto":  # whole passages: the model's choice measured better
            choice = "model" if all(b.whole for b in evidence.blocks) else "closest"
        chosen = self.chose_quote = choice == "closest"
        keep = self.settings.quote_sentences or (1 if chosen else 2)
        ranked = self._closest(query, evidence, k=len(evidence.ids)) if chosen else []
        allowed = ranked[:keep] if chosen else list(evidence.ids)
        # an answer from a passage in another language: in the passage's words, translated
        # after (Settings.source_words; a generator without blocks cannot go on with it)
        source = None
        if isinstance(generator, BlockGenerator):
            source = self._source_language(evidence, allowed if chosen else (), language)
        tail = prompts.quote_tail(query, source or language, hint)
        if not isinstance(generator, BlockGenerator):
            yield from self._generate_in_one_call(system, blocks, tail, evidence, allowed, chosen)
            return
        for attempt in range(2):
            ids = ""
            grammar = (
                prompts.quote_fixed_grammar(_in_order(allowed, evidence))
                if chosen
                else prompts.quote_grammar(allowed)
            )
            for piece in generator.stream_blocks(
                system,
                blocks,
                tail,
                max_tokens=24,
                grammar=grammar,
                temperature=self.settings.temperature,
                prefill=prompts.QUOTE_PREFILL,
            ):
                ids += piece
                yield "ids", piece
            if attempt == 0:
                self.doubt = self._first_token_probability(prompts.QUOTE_NONE)
                self.usage = last_usage(generator)
            else:
                self._add_completion()
            named = prompts.parse_quoted(ids + f"\n{prompts.QUOTE_ANSWER} -").ids
            if not named:
                return
            # refused whatever it answers: the answer (and its translation) is not written
            if attempt == 0 and self._too_doubtful(self.model.doubt):
                self.doubted = True
                return
            if not chosen:
                named = tuple(self._narrowed(query, evidence, named, keep))
            shown = [found for i in named if (found := evidence.line(i)) is not None]
            quote = prompts.quote_lines(
                [(ln.id, b.hit.chunk.text[ln.start : ln.end]) for b, ln in shown]
            )
            echo = self.settings.quote_echo
            if echo == "on" or (echo == "auto" and not chosen):
                yield "quote", quote
            else:  # the model answers right after its ids, from what it read
                quote = ""
            answer = ""  # held back while it could still only restate the question
            written = ""  # all the model wrote of its answer
            streaming = False
            begun = prompts.QUOTE_PREFILL + ids.rstrip("\n") + "\n" + quote + prompts.QUOTE_ANSWER
            span = None  # Settings.answer_span: the answer copied from the quoted sentences
            if self.settings.answer_span and shown:
                quoted = [b.hit.chunk.text[ln.start : ln.end] for b, ln in shown]
                span = prompts.span_grammar(quoted)
            for piece in generator.stream_blocks(
                system,
                blocks,
                tail,
                max_tokens=prompts.QUOTE_TOKENS,
                grammar=span,
                stop=["\n"],
                temperature=self.settings.temperature,
                prefill=begun,
                resume=True,
            ):
                written += piece
                if streaming:
                    yield "answer", piece
                    continue
                answer += piece
                if says_more(query, answer):
                    streaming = True
                    yield "answer", answer
            self._add_completion()
            # asked again, held to the sentences closest to the question by the embedder that
            # it did not name (a small model often names the sentence that names the subject)
            if not streaming and attempt == 0 and restates_question(query, answer):
                others = ranked if chosen else self._closest(query, evidence)
                allowed = [i for i in others if i not in named][: keep if chosen else None]
            else:
                allowed = []
            if not allowed:
                if not streaming:
                    yield "answer", answer
                read = f"{ids}\n{prompts.QUOTE_ANSWER}{written}"  # as _stream_quoted reads it
                if (
                    source
                    and prompts.worth_translating(written)
                    and self._kept(query, read, evidence, language)
                ):
                    lead = begun + written + prompts.translation_lead(language)
                    for piece in generator.stream_blocks(
                        system,
                        blocks,
                        tail,
                        max_tokens=prompts.TRANSLATION_TOKENS,
                        stop=[")", "\n"],
                        temperature=self.settings.temperature,
                        prefill=lead,
                        resume=True,
                    ):
                        yield "translation", piece
                    self._add_completion()
                return
            self.usage["retried"] = 1
            yield "retry", ""

    def _kept(self, query: str, read: str, evidence: ev.Evidence, language: str) -> bool:
        """Whether a quoted reply as read so far (its ids and answer) passes the checks, so
        that a translation is written only for an answer that will be shown. With
        verification on (a model call of its own) it is not known yet: kept."""
        if self.settings.verify_answers:
            return True
        *_, signals = self._read_quoted(query, read, evidence, dict(self.usage), language)
        return not refusal.refuses(signals)

    def _generate_in_one_call(
        self,
        system: str,
        blocks: Sequence[str],
        tail: str,
        evidence: ev.Evidence,
        allowed: Sequence[str],
        chosen: bool,
    ) -> Iterator[tuple[str, str]]:
        """The whole reply from one chat call, for a generator without blocks: held to the
        allowed ids by a grammar where the generator takes one (a model server), else asked
        for by the prompt alone and read leniently."""
        generator = self.generator
        messages = [
            {"role": "system", "content": system},
            {"role": "user", "content": "".join(blocks) + tail},
        ]
        if isinstance(generator, GrammarGenerator) and generator.holds_grammar:
            ids = _in_order(allowed, evidence) if chosen else list(allowed)
            pieces = generator.stream_grammar(
                messages,
                grammar=prompts.quote_reply_grammar(ids, fixed=chosen),
                max_tokens=2 * prompts.QUOTE_TOKENS,  # the model may copy its sentences out
                stop=["\n\n"],
                temperature=self.settings.temperature,
            )
        else:
            self.chose_quote = False  # the model names its ids, as the prompt asks
            pieces = generator.stream(
                messages,
                max_tokens=prompts.QUOTE_TOKENS,
                stop=["\n\n"],
                temperature=self.settings.temperature,
            )
        for piece in pieces:
            yield "plain", piece
        if getattr(generator, "last_usage", {}).get("grammar") == 0:
            self.chose_quote = False  # the server refused the grammar: the model named them

    def _source_language(
        self, evidence: ev.Evidence, quoted: Sequence[str], language: str
    ) -> str | None:
        """The language the answer is asked in when it should keep its passage's own words
        (Settings.source_words): that of the quoted sentences (`quoted`, chosen by the
        engine) or else of every evidence passage, when it is not the answer's `language`;
        None otherwise."""
        if self.settings.source_words == "off" or not evidence.blocks:
            return None
        blocks = (
            [b for b in evidence.blocks if any(ln.id in quoted for ln in b.lines)]
            if quoted
            else list(evidence.blocks)
        )
        found = {str(b.hit.chunk.metadata.get("lang") or "") for b in blocks}
        if len(found) != 1:
            return None
        source = found.pop()
        return source if source and source != language else None

    def _narrowed(
        self, query: str, evidence: ev.Evidence, named: Sequence[str], keep: int
    ) -> list[str]:
        """Of the named ids, the `keep` closest to the question, in their order:
        a small model that names a heading and its neighbours beside the sentence that
        answers reads the answer's sentence less well among them."""
        if len(named) <= keep:
            return list(named)
        ranked = self._closest(query, evidence, k=len(evidence.ids))
        order = {i: r for r, i in enumerate(ranked)}
        best = set(sorted(named, key=lambda i: order.get(i, len(order)))[:keep])
        return [i for i in named if i in best]

    def _closest(self, query: str, evidence: ev.Evidence, k: int = 3) -> list[str]:
        """The ids of the k evidence sentences closest to the question (rag/evidence.py)."""
        return list(
            ev.closest(
                evidence,
                self._query_vector(query),
                ev.question_words(query),
                self.checker.sentence_vectors,
                k=k,
            )
        )

    def _add_completion(self) -> None:
        """Count the last call's completion tokens into the reply's usage."""
        last = last_usage(self.generator)
        self.usage["completion_tokens"] = self.usage.get("completion_tokens", 0) + last.get(
            "completion_tokens", 0
        )

    def _read_quoted(
        self,
        query: str,
        raw: str,
        evidence: ev.Evidence,
        usage: dict[str, Any],
        language: str,
        translation: str = "",
    ) -> _Read:
        """The reply read and checked: the answer text with its markers, one citation per run
        of quoted sentences, its sentences, and the signals that fired. An answer in its
        passage's words is checked as written, then shown with its `translation` after it."""
        signals = self._doubted(usage, self.model.doubt)
        if self.doubted:  # stopped after its ids: no answer to read
            return "", (), (), signals
        quoted = prompts.parse_quoted(raw)
        if quoted.answer is None:
            return "", (), (), [*signals, "not_found"]
        named = [found for i in quoted.ids if (found := evidence.line(i)) is not None]
        answer = _cleaned(quoted.answer, evidence, language, usage, signals)
        if not answer or prompts.leaks_instructions(answer):
            return "", (), (), [*signals, "empty"]
        if refusal.declines(answer):
            return "", (), (), [*signals, "not_found"]
        lines, similarity, moved = self._check_quotes(query, answer, evidence, named)
        usage["quote_support"] = round(similarity, 4)
        if moved:
            signals.append("quote_moved")
        if not lines:
            signals.append("unsupported" if named else "no_quote")
        if not answers_the_question(query, answer):
            signals.append("wrong_kind")
        if restates_question(query, answer):
            signals.append("restates")
        if usage.get("retried"):
            signals.append("retried")
        # the translation is the model's too: what the passages do not hold goes from it as well
        if translation:
            translation = _cleaned(translation, evidence, language, usage, signals)
        if prompts.leaks_instructions(translation):
            translation = ""
        answer = prompts.with_translation(answer, translation)
        return self._cited(query, answer, lines, similarity, evidence, usage, signals)

    def _check_quotes(
        self,
        query: str,
        answer: str,
        evidence: ev.Evidence,
        quoted: list[tuple[ev.Block, ev.Line]],
    ) -> tuple[list[tuple[ev.Block, ev.Line]], float, bool]:
        """The sentences the answer rests on, their best cosine to it, and whether they are
        not the ones the model named. The named ones when they hold the answer's numbers and
        names (rag/support.py: quotes_support); else, when the model named them, the fewest
        shown sentences that do (a small model often names the sentence next to the right
        one); else none."""
        shown = [(b, line) for b in evidence.blocks for line in b.lines]
        found = self.checker.quote_support(query, answer, [(b.hit, ln) for b, ln in shown])
        wanted_numbers, wanted_names = self.checker.claim_parts(query, answer)
        similar = self.embedding.quote
        index = {ln.id: i for i, (_, ln) in enumerate(shown)}
        named = [index[ln.id] for _, ln in quoted if ln.id in index]
        if named and quotes_support(
            [found[i] for i in named], wanted_numbers, wanted_names, similar
        ):
            return [shown[i] for i in named], max(found[i].similarity for i in named), False
        # the engine chose the quote as the one closest to the question: an answer it does
        # not hold was not read there (moved, none of 14 such answers held the gold answer
        # on piaf_fr_mini and xquad_en_q_es_mini, docs/results.md)
        if self.chose_quote:
            return [], max((found[i].similarity for i in named), default=0.0), False
        better = best_quotes(found, wanted_numbers, wanted_names, similar)
        if better is None:
            return [], max((found[i].similarity for i in named), default=0.0), False
        return [shown[i] for i in better], max(found[i].similarity for i in better), True

    def _checked(
        self, read: Callable[[], _Read], timings: dict[str, float], language: str
    ) -> tuple[str, tuple[Citation, ...], tuple[Sentence, ...], list[str], bool]:
        """`read()` (the reply read and checked), timed as `check` and `verify`, then the
        refusal policy: a refused answer's text is the refusal, with no citations."""
        t_check, self.verify_s = time.perf_counter(), 0.0
        text, citations, sentences, signals = read()
        if self.verify_s:
            timings["verify"] = self.verify_s
        timings["check"] = time.perf_counter() - t_check - self.verify_s
        refused = refusal.refuses(signals)
        if refused:
            text, citations, sentences = prompts.refusal(language), (), ()
        return text, citations, sentences, signals, refused

    def _first_token_probability(self, text: str) -> float | None:
        """The model's probability of having begun its last reply with `text`, when it
        records its first token's distribution (LlamaCppGenerator)."""
        generator = self.generator
        return (
            generator.first_token_probability(text)
            if isinstance(generator, ScoresFirstToken)
            else None
        )

    def _evidence_usage(self, evidence: ev.Evidence) -> dict[str, Any]:
        """The reply's token usage (of its first call), with what the evidence held."""
        usage = self.usage or last_usage(self.generator)
        usage.update(
            evidence_tokens=sum(self.generator.count_tokens(b.text()) for b in evidence.blocks),
            evidence_sentences=len(evidence.ids),
            evidence_whole=int(all(b.whole for b in evidence.blocks)),
        )
        return usage

    def _doubted(self, usage: dict[str, Any], calibrated: float) -> list[str]:
        """The signals of the model's doubt (`self.doubt`, its probability of having replied
        none), recorded in `usage`: "doubt" when it reaches Settings.max_doubt, or for -1 the
        model's `calibrated` threshold."""
        if self.doubt is None:
            return []
        usage["not_found_probability"] = round(self.doubt, 4)
        return ["doubt"] if self._too_doubtful(calibrated) else []

    def _too_doubtful(self, calibrated: float) -> bool:
        """Whether the model's doubt reaches Settings.max_doubt (for -1, `calibrated`)."""
        threshold = self.settings.max_doubt
        threshold = calibrated if threshold < 0 else threshold
        return self.doubt is not None and threshold > 0 and self.doubt >= threshold

    def _cited(
        self,
        query: str,
        answer: str,
        lines: Sequence[tuple[ev.Block, ev.Line]],
        similarity: float,
        evidence: ev.Evidence,
        usage: dict[str, Any],
        signals: list[str],
    ) -> _Read:
        """The answer with the markers of the passages its quoted `lines` come from, one
        citation per run of them, its sentences, and the signals (verified when asked)."""
        cited = tuple(dict.fromkeys(b.n for b, _ in sorted(lines, key=lambda x: x[0].n)))
        if self.settings.verify_answers and not refusal.refuses(signals):
            self._verify(query, answer, [evidence.blocks[n - 1].hit for n in cited], usage, signals)
        parts = [answer[a:b] for a, b in split_sentences(answer)] or [answer]
        text = " ".join(with_markers(p, cited) for p in parts)
        sentences = tuple(Sentence(p, cited, bool(cited), round(similarity, 4)) for p in parts)
        return text, _quote_citations(lines), sentences, signals

    # -- extracted answers -----------------------------------------------------------------------

    def _stream_extracted(
        self,
        query: str,
        evidence: ev.Evidence,
        language: str,
        timings: dict[str, float],
        t0: float,
        make: Callable[..., Answer],
    ) -> Iterator[str | Answer]:
        """Settings.answer_form "extract": the model reads the evidence and answers in a few
        words, first; the engine then finds the evidence sentences that hold the answer (its
        quotes) and refuses an answer no sentence holds."""
        reply = _Reply()
        shown = 0
        start = None  # where the reply is shown from: after an opening restating the question
        for piece in self._generate_extracted(query, evidence, language):
            if reply.first_generated is None:
                reply.first_generated = time.perf_counter() - t0
            reply.raw += piece
            visible = _extracted_so_far(reply.raw)
            if visible is not None and start is None:
                start = shown_from(query, visible)
            if visible is not None and start is not None and len(visible) - start > shown:
                timings.setdefault("first_token", time.perf_counter() - t0)  # words shown
                yield visible[start + shown :]
                shown = len(visible) - start
        timings["generation"] = time.perf_counter() - t0
        timings["first_generated"] = reply.first_generated or timings["generation"]
        usage = self._evidence_usage(evidence)
        # a generator that cannot be begun with "Answer:" (a model server) whose model wrote
        # text with [n] markers instead: read as free text, checked sentence by sentence
        free = not isinstance(self.generator, BlockGenerator) and bool(marker_numbers(reply.raw))

        def read() -> _Read:
            if free:
                return self._read_free(query, reply.raw, evidence.hits, usage)
            return self._read_extracted(query, reply.raw, evidence, usage, language)

        checked = self._checked(read, timings, language)
        yield from _closing(checked, shown, evidence, usage, reply, make, timings, t0)

    def _generate_extracted(
        self, query: str, evidence: ev.Evidence, language: str
    ) -> Iterator[str]:
        """The model's reply, a few words on one line: with blocks (llama.cpp) begun by
        "Answer:" and the KV state of the system prompt and each block reused; else from one
        chat call, read leniently (rag/prompts.py `parse_extracted`)."""
        system = prompts.extract_system()
        blocks = [b.text() for b in evidence.blocks] + [prompts.extract_lead(language)]
        tail = prompts.extract_tail(query)
        generator = self.generator
        self.doubt, self.usage = None, {}
        if isinstance(generator, BlockGenerator):
            yield from generator.stream_blocks(
                system,
                blocks,
                tail,
                max_tokens=prompts.EXTRACT_TOKENS,
                stop=["\n"],
                temperature=self.settings.temperature,
                prefill=prompts.EXTRACT_PREFILL,
            )
            self.doubt = self._first_token_probability(prompts.EXTRACT_NONE)
            self.usage = last_usage(generator)
            return
        messages = [
            {"role": "system", "content": system},
            {"role": "user", "content": "".join(blocks) + tail},
        ]
        yield from generator.stream(
            messages,
            max_tokens=prompts.EXTRACT_TOKENS,
            stop=["\n\n"],
            temperature=self.settings.temperature,
        )

    def _read_extracted(
        self, query: str, raw: str, evidence: ev.Evidence, usage: dict[str, Any], language: str
    ) -> _Read:
        """An extracted reply read and checked: the answer with the markers of the passages
        whose sentences hold it, one citation per run of those sentences, the signals."""
        signals = self._doubted(usage, self.model.extract_doubt)
        answer = prompts.parse_extracted(raw)
        if answer is None:
            return "", (), (), [*signals, "not_found"]
        # the engine adds the markers of the sentences that hold the answer: the model's own
        # "[1]" are no numbers of it
        answer = _cleaned(clean_markers(answer, 0), evidence, language, usage, signals)
        answer = after_restatement(query, answer)  # "Hammouchi met with" cut
        if not answer or prompts.leaks_instructions(answer):
            return "", (), (), [*signals, "empty"]
        if refusal.declines(answer):
            return "", (), (), [*signals, "not_found"]
        lines, similarity = self._located(query, answer, evidence)
        usage["quote_support"] = round(similarity, 4)
        if not lines:
            signals.append("unsupported")
        if not answers_the_question(query, answer):
            signals.append("wrong_kind")
        if restates_question(query, answer):
            signals.append("restates")
        return self._cited(query, answer, lines, similarity, evidence, usage, signals)

    def _located(
        self, query: str, answer: str, evidence: ev.Evidence
    ) -> tuple[list[tuple[ev.Block, ev.Line]], float]:
        """The evidence sentences an extracted answer rests on, and their best cosine to it:
        the sentence holding most of the answer's own words (the model copies them), when it
        holds at least half of them and the answer's numbers and names; else the fewest
        sentences that hold its numbers and names, or are close enough to it in meaning (an
        answer in another language than its sentence; rag/support.py `best_quotes`)."""
        shown = [(b, line) for b in evidence.blocks for line in b.lines]
        if not shown:
            return [], 0.0
        found = self.checker.quote_support(query, answer, [(b.hit, ln) for b, ln in shown])
        wanted_numbers, wanted_names = self.checker.claim_parts(query, answer)
        own = content_stems(answer)
        if own:
            shares = [len(own & {w[:5] for w in ln.words}) / len(own) for ln in found]
            best = max(range(len(found)), key=lambda i: (shares[i], found[i].similarity))
            if shares[best] >= 0.5 and quotes_support(
                [found[best]], wanted_numbers, wanted_names, 0.0
            ):
                return [shown[best]], found[best].similarity
        chosen = best_quotes(found, wanted_numbers, wanted_names, self.embedding.quote)
        if chosen is None:
            return [], max(ln.similarity for ln in found)
        return [shown[i] for i in chosen], max(found[i].similarity for i in chosen)

    # -- free-text answers ----------------------------------------------------------------------

    def _stream_free(
        self,
        question: str,
        query: str,
        hits: Sequence[Hit],
        language: str,
        timings: dict[str, float],
        t0: float,
        make: Callable[..., Answer],
    ) -> Iterator[str | Answer]:
        generator = self.generator
        budget = self.settings.context_window - self.settings.max_tokens
        packed, prompt_size = prompts.pack(query, hits, language, generator.count_tokens, budget)
        if not packed:
            raise GenerationError(
                f"No passage fits the model's context ({self.settings.context_window} tokens, "
                f"{self.settings.max_tokens} kept for the answer). Raise context_window or "
                "lower max_tokens."
            )
        messages = prompts.build_messages(query, packed, language)
        reply = _Reply()
        held: str | None = ""  # text held back while it could still be the NOT_FOUND sentinel
        for piece in generator.stream(
            messages, max_tokens=self.settings.max_tokens, temperature=self.settings.temperature
        ):
            if reply.first_generated is None:
                reply.first_generated = time.perf_counter() - t0
            reply.raw += piece
            if held is not None:
                held += piece
                if prompts.NOT_FOUND.startswith(held.strip()):
                    continue
                piece, held = held, None
            timings.setdefault("first_token", time.perf_counter() - t0)  # words shown
            yield piece
        timings["generation"] = time.perf_counter() - t0
        timings["first_generated"] = reply.first_generated or timings["generation"]
        usage = last_usage(generator)
        usage.update(prompt_budget=budget, prompt_estimate=prompt_size, passages=len(packed))
        text, citations, sentences, signals, refused = self._checked(
            lambda: self._read_free(query, reply.raw, packed, usage), timings, language
        )
        if refused:
            if held is not None:
                yield text
        elif held:
            yield held
        yield make(
            text,
            citations,
            packed,
            refused,
            usage=usage,
            sentences=sentences,
            raw=reply.raw,
            signals=tuple(signals),
        )

    def _read_free(
        self, query: str, raw: str, packed: Sequence[Hit], usage: dict[str, Any]
    ) -> _Read:
        signals: list[str] = []
        if refusal.free_text_refusal(raw, len(packed), prompts.NOT_FOUND):
            signals.append("not_found")
        doubt = self._first_token_probability(prompts.NOT_FOUND)
        if doubt is not None:
            usage["not_found_probability"] = doubt
            threshold = self.settings.max_doubt
            if threshold < 0:
                threshold = self.model.free_doubt
            if threshold > 0 and doubt >= threshold:
                signals.append("doubt")
        if refusal.refuses(signals):
            return "", (), (), signals
        # markup a document made the model write (an image that would fetch a web address, a
        # link) is no part of an answer (rag/markup.py)
        stripped = strip_markup(clean_markers(raw, len(packed)), [h.chunk.text for h in packed])
        cleaned = stripped.text
        if stripped.removed:
            signals.append("markup_removed")
            usage["markup_removed"] = len(stripped.removed)
        if not self.settings.check_citations:
            return cleaned, tuple(parse_citations(cleaned, packed)), (), signals
        checked = self.checker.check(
            cleaned, packed, question=query, drop=prompts.leaks_instructions
        )
        supported = " ".join(s.text for s in checked.sentences if s.supported)
        if not supported:
            signals.append("unsupported" if checked.sentences else "empty")
        elif not answers_the_question(query, supported):
            # "how many?" answered without a number
            signals.append("wrong_kind")
        elif self.settings.verify_answers:
            cited = sorted({c.n for c in checked.citations})
            self._verify(query, supported, [packed[n - 1] for n in cited], usage, signals)
        return checked.text, checked.citations, checked.sentences, signals

    def _verify(
        self,
        query: str,
        answer: str,
        cited: Sequence[Hit],
        usage: dict[str, Any],
        signals: list[str],
    ) -> None:
        """Settings.verify_answers: ask the model whether the cited passages state `answer`."""
        t0 = time.perf_counter()
        probability = verify.support_probability(self.generator, query, answer, cited)
        self.verify_s = time.perf_counter() - t0
        usage["verified"] = probability
        if probability is not None and probability < self.settings.verify_threshold:
            signals.append("not_verified")


def _answer_maker(
    question: str,
    rewritten: str | None,
    language: str,
    timings: dict[str, float],
    t0: float,
) -> Callable[..., Answer]:
    def make(
        text: str,
        citations: Sequence[Citation],
        hits: Sequence[Hit],
        refused: bool,
        **extra: Any,
    ) -> Answer:
        timings["total"] = time.perf_counter() - t0
        timings.setdefault("first_token", timings["total"])
        return Answer(
            question=question,
            text=text,
            citations=tuple(citations),
            hits=tuple(hits),
            refused=refused,
            timings=timings,
            rewritten=rewritten,
            language=language,
            **extra,
        )

    return make


def _cleaned(
    answer: str, evidence: ev.Evidence, language: str, usage: dict[str, Any], signals: list[str]
) -> str:
    """An answer without the sentence ids the model copied into it and the markup the
    passages do not hold (noted in `signals` and `usage`), a bare list of names joined."""
    passages = [b.hit.chunk.text for b in evidence.blocks]
    stripped = strip_markup(prompts.drop_ids(answer, evidence.ids), passages)
    if stripped.removed:
        if "markup_removed" not in signals:
            signals.append("markup_removed")
        usage["markup_removed"] = usage.get("markup_removed", 0) + len(stripped.removed)
    return prompts.join_list(stripped.text.strip(), language)


def _closing(
    checked: tuple[str, tuple[Citation, ...], tuple[Sentence, ...], list[str], bool],
    shown: int,
    evidence: ev.Evidence,
    usage: dict[str, Any],
    reply: _Reply,
    make: Callable[..., Answer],
    timings: dict[str, float],
    t0: float,
) -> Iterator[str | Answer]:
    """The end of a streamed answer: the refusal (after what was shown) or the whole text
    when nothing was shown yet, then the Answer."""
    text, citations, sentences, signals, refused = checked
    timings.setdefault("first_token", time.perf_counter() - t0)  # nothing shown before
    if refused:
        yield ("" if not shown else "\n\n") + text
    elif not shown:
        yield text
    yield make(
        text,
        citations,
        evidence.hits,
        refused,
        usage=usage,
        sentences=sentences,
        raw=reply.raw,
        signals=tuple(signals),
    )


def _with_translation(parts: dict[str, str]) -> str:
    """What can be shown of a quoted answer being written: the answer, and once it is
    being written its translation (Settings.source_words), in brackets."""
    if not parts["translation"].strip():
        return parts["answer"]
    return f"{parts['answer'].rstrip()} ({parts['translation'].strip()}"


def _plain_so_far(raw: str) -> str | None:
    """What can be shown of a plain reply being generated: its answer part in the quoted
    form, the text itself otherwise; nothing while it could still be either (or NOT_FOUND)."""
    if len(raw.strip()) < len(prompts.NOT_FOUND) or _quoted_form(raw):
        return _answer_so_far(raw)
    return raw.lstrip()


def _extracted_so_far(raw: str) -> str | None:
    """What can be shown of an extracted reply being generated: its first line, without an
    "Answer:" the model may write itself; nothing while it could still be "none"."""
    text = raw.lstrip()
    if prompts.EXTRACT_PREFILL.lower().startswith(text.lower()):  # "Answer:" being written
        return None
    if text.lower().startswith(prompts.EXTRACT_PREFILL.lower()):
        text = text[len(prompts.EXTRACT_PREFILL) :].lstrip()
    text = text.split("\n", 1)[0]
    bare = text.strip().lower()
    if any(w.startswith(bare) for w in ("none", prompts.NOT_FOUND.lower())) or bare == "none.":
        return None
    return text.rstrip()


def _quoted_form(raw: str) -> bool:
    """Whether a plain reply is in the quoted form (or declines the way it asks)."""
    head = raw.lstrip().lower()
    return head.startswith(("evidence", "answer:", "none", prompts.NOT_FOUND.lower()))


def _answer_so_far(raw: str) -> str | None:
    """The answer part of a quoted reply being generated: what follows "Answer:" on its
    line; None while the ids are still being written (or the reply is NOT_FOUND)."""
    at = raw.find("Answer:")
    if at < 0:
        return None
    return raw[at + len("Answer:") :].lstrip(" ").split("\n", 1)[0]


def _quote_citations(lines: Sequence[tuple[ev.Block, ev.Line]]) -> tuple[Citation, ...]:
    """One Citation per run of consecutive quoted sentences of a passage, in passage order:
    `chunk.text[start:end]` is exactly what the model was shown and named."""
    unique = {line.id: (block, line) for block, line in lines}
    ordered = sorted(unique.values(), key=lambda x: (x[0].n, x[1].start))
    citations: list[Citation] = []
    previous: ev.Line | None = None
    for block, line in ordered:
        chunk = block.hit.chunk
        last = citations[-1] if citations else None
        if (
            last is not None
            and previous is not None
            and last.n == block.n
            and _follows(previous, line)
        ):
            start = last.start
            citations[-1] = Citation(block.n, chunk, chunk.text[start : line.end], start, line.end)
        else:
            citations.append(
                Citation(block.n, chunk, chunk.text[line.start : line.end], line.start, line.end)
            )
        previous = line
    return tuple(citations)


def _in_order(ids: Sequence[str], evidence: ev.Evidence) -> list[str]:
    """`ids` in the order the evidence shows them."""
    order = {i: n for n, i in enumerate(evidence.ids)}
    return sorted(ids, key=lambda i: order[i])


def _follows(a: ev.Line, b: ev.Line) -> bool:
    """Whether sentence `b` comes right after sentence `a` in their passage."""
    return int(b.id.split(".")[1]) == int(a.id.split(".")[1]) + 1


def last_usage(generator: Generator) -> dict[str, Any]:
    """The generator's last call's token counts, when it records them."""
    return dict(generator.last_usage) if isinstance(generator, ReportsUsage) else {}
