"""Citation checking (rag/support.py) on hand-made cases, with the real default embedder
(multilingual-e5-small): the thresholds are calibrated for it."""

from __future__ import annotations

from dataclasses import replace

import pytest

from models.embedders import SentenceTransformerEmbedder
from rag.prompts import leaks_instructions
from rag.support import (
    SupportChecker,
    answers_the_question,
    best_quotes,
    names,
    numbers,
    question_names,
    split_claims,
    stopwords,
    with_markers,
)
from rag.types import Chunk, Hit

MEETING = (
    "Accompagné d'une délégation sécuritaire composée de directeurs et de cadres des services "
    "centraux de la DGST, il a effectué des séances de travail avec Avril Haines, directrice du "
    "renseignement national américain, William Burns, directeur de la CIA et Christopher Wray, "
    "directeur du FBI. La visite a eu lieu les 13 et 14 juin."
)
MUSEUM = (
    "Le musée des Tissus de Lyon ouvre ses portes à 10 heures. Il est fermé le lundi. "
    "L'entrée coûte 12 euros."
)
SUMMIT = (
    "Le sommet sur la lutte contre Daech s'est tenu à Marrakech en mai, sous la présidence de "
    "Nasser Bourita et d'Antony Blinken."
)

KILKENNY = (
    "Le château de Kilkenny fut construit au XIIe siècle par les Normands. Il appartint à la "
    "famille Butler jusqu'en 1967, puis fut cédé à la ville."
)
BASILICA = (
    "Près de 20 millions de pèlerins se rendent tous les ans dans la basilique de Guadalupe, "
    "ce qui en fait le monument catholique le plus visité après la cité du Vatican."
)


def hits(*texts: str) -> list[Hit]:
    return [
        Hit(Chunk(f"c{i}", f"d{i}", t, 0, len(t), {"title": f"doc {i}"}), 1.0 / i, i)
        for i, t in enumerate(texts, 1)
    ]


@pytest.fixture(scope="module")
def checker(e5: SentenceTransformerEmbedder) -> SupportChecker:
    return SupportChecker(e5)


def test_a_marker_naming_the_wrong_passage_is_fixed(checker: SupportChecker) -> None:
    checked = checker.check(
        "Hammouchi met Avril Haines, William Burns and Christopher Wray [1].",
        hits(MUSEUM, MEETING, SUMMIT),
        question="Who did Hammouchi meet?",
    )
    assert checked.text == "Hammouchi met Avril Haines, William Burns and Christopher Wray [2]."
    (sentence,) = checked.sentences
    assert sentence.supported and sentence.citations == (2,)
    (citation,) = checked.citations
    assert citation.n == 2 and "Avril Haines" in citation.quote
    assert citation.chunk.text[citation.start : citation.end] == citation.quote


def test_a_supported_sentence_without_a_marker_gets_one(checker: SupportChecker) -> None:
    checked = checker.check(
        "The textile museum opens at 10 a.m.", hits(SUMMIT, MUSEUM), question="When does it open?"
    )
    assert checked.text == "The textile museum opens at 10 a.m [2]."
    assert checked.citations[0].quote == "Le musée des Tissus de Lyon ouvre ses portes à 10 heures."


def test_citing_every_passage_keeps_only_those_that_support(checker: SupportChecker) -> None:
    checked = checker.check(
        "Christopher Wray is the director of the FBI [1][2][3].",
        hits(MUSEUM, MEETING, SUMMIT),
        question="Who is the director of the FBI?",
    )
    assert checked.sentences[0].citations == (2,)
    assert [c.n for c in checked.citations] == [2]


def test_a_sentence_no_passage_supports_is_flagged_and_cites_nothing(
    checker: SupportChecker,
) -> None:
    checked = checker.check(
        "Hammouchi met Avril Haines [2]. Abdellatif Hammouchi is 58 years old [2].",
        hits(MUSEUM, MEETING),
        question="Who did Hammouchi meet?",
    )
    first, second = checked.sentences
    assert first.supported and first.citations == (2,)
    assert not second.supported and second.citations == ()
    assert checked.text == "Hammouchi met Avril Haines [2]. Abdellatif Hammouchi is 58 years old."
    assert checked.supported  # one supported sentence: the answer stands


def test_an_answer_supported_by_no_passage_is_unsupported(checker: SupportChecker) -> None:
    checked = checker.check(
        "The meeting lasted three hours and ended with a dinner at the White House [1].",
        hits(MUSEUM, SUMMIT),
        question="How long did the meeting last?",
    )
    assert not checked.supported and checked.citations == ()


def test_instructions_copied_into_an_answer_are_dropped(checker: SupportChecker) -> None:
    leaked = "You answer questions using only the numbered passages you are given."
    assert leaks_instructions(leaked)
    checked = checker.check(
        f"{leaked} Christopher Wray is the director of the FBI [1].",
        hits(MEETING),
        question="Who is the director of the FBI?",
        drop=leaks_instructions,
    )
    assert checked.text == "Christopher Wray is the director of the FBI [1]."


def test_markers_after_the_full_stop_belong_to_the_sentence_before() -> None:
    claims = split_claims("Avril Haines. [1] Then William Burns [2][3]. [4]")
    assert [(c.text, c.cited) for c in claims] == [
        ("Avril Haines.", [1]),
        ("Then William Burns.", [2, 3, 4]),
    ]
    assert with_markers("Avril Haines.", [1, 2]) == "Avril Haines [1][2]."
    assert with_markers("Avril Haines", [1]) == "Avril Haines [1]"


def test_a_month_named_in_another_language_is_held_by_the_passage(
    checker: SupportChecker,
) -> None:
    """ "June 2022" over French passages rests on "juin" and "2022"; "July" does not."""
    (hit,) = hits("date 2022-06 Le sommet. Sa tournée (les 13 et 14 juin) aux États-Unis.")
    spans = checker.sentence_vectors(hit)[0]
    lines = [_Line(a, b) for a, b in spans]
    question = "When did the visit take place?"
    found = checker.quote_support(question, "June 2022", [(hit, ln) for ln in lines])
    assert best_quotes(found, *checker.claim_parts(question, "June 2022"), 0.0) is not None
    found = checker.quote_support(question, "July 2022", [(hit, ln) for ln in lines])
    assert best_quotes(found, *checker.claim_parts(question, "July 2022"), 0.0) is None


class _Line:
    def __init__(self, start: int, end: int) -> None:
        self.start, self.end = start, end


def test_numbers_are_compared_whatever_their_separators() -> None:
    assert numbers("20 000 hommes") == numbers("20,000 men") == numbers("20000") == {"20000"}
    assert numbers("6,5 %") == numbers("6.5%") == {"65"}


def test_numbers_written_as_words_are_numbers() -> None:
    """ "24 km" rests on "à vingt-quatre kilomètres"; "dos mil quinientos" is 2500."""
    assert "24" in numbers("implantée à vingt-quatre kilomètres au sud-ouest de Paris")
    assert "2500" in numbers("dos mil quinientos soldados")
    assert "24" in numbers("vierundzwanzig Kilometer")
    assert "24" not in numbers("à vingt kilomètres au sud-ouest de Paris")


def test_a_scale_word_is_no_number_of_its_own() -> None:
    """ "five million" read as French is "five 1000000": it still means 5000000 alone."""
    assert numbers("five million") == {"5", "5000000"}
    assert numbers("1000 soldats") == {"1000"}


def test_digits_before_a_scale_word_are_the_amount() -> None:
    """ "5 million" rests on "los cinco millones de habitantes" (it was read as "5100")."""
    assert numbers("5 million") == {"5000000"} <= numbers("superan los cinco millones de")
    assert numbers("5 millones") == numbers("5 Millionen") == {"5000000"}
    assert numbers("2,5 millions d'habitants") == numbers("2.5 million people") == {"2500000"}
    assert numbers("1,000 million") == numbers("1 milliard") == {"1000000000"}
    assert numbers("un millón de personas") == numbers("1 millón") == {"1000000"}


def test_a_fraction_is_one_number_in_digits_or_words() -> None:
    """ "1/3" rests on "la disparition du tiers de la population"; an ordinal is no fraction."""
    assert numbers("1/3") == numbers("du tiers de la population") == {"1/3"}
    assert numbers("un tiers") == numbers("one third") == numbers("a third") == {"1/3"}
    assert numbers("deux tiers") == numbers("2/3") == numbers("two thirds") == {"2/3"}
    assert numbers("la mitad de los votos") == numbers("half of the votes") == {"1/2"}
    assert "1/3" not in numbers("the third battalion")
    assert numbers("le 12/05/2020") == {"12", "05", "2020"}  # a date, no fraction


def test_a_number_written_as_a_word_is_no_name() -> None:
    """ "Six" (Grammys) rests on "la seis veces ganadora del Grammy": a number, held."""
    assert names("Six", stopwords()) == set()
    assert names("Six Nations", stopwords()) == {"nations"}


def test_a_name_written_in_the_question_language_is_held_by_its_translation(
    checker: SupportChecker,
) -> None:
    """ "Sweden" rests on "Suecia", "United States" on "Estados Unidos"; a name the sentence
    does not hold in any language, or an acronym, does not."""
    text = (
        "La empresa Energiprojekt AB en Suecia ha progresado en el uso de materiales modernos. "
        "Sigue siendo legal en Estados Unidos según una decisión del Tribunal Supremo."
    )
    (hit,) = hits(text)
    lines = [(hit, _Line(a, b)) for a, b in checker.sentence_vectors(hit)[0]]
    for question, answer, held in (
        ("Where is Energiprojekt AB based?", "Sweden", True),
        ("Where is Energiprojekt AB based?", "Karim Benzema", False),
        ("In what Western country is corporal punishment still legal?", "United States", True),
        ("In what Western country is corporal punishment still legal?", "NFL", False),
    ):
        found = checker.quote_support(question, answer, lines)
        parts = checker.claim_parts(question, answer)
        assert (best_quotes(found, *parts, 0.0) is not None) is held, answer


def test_a_sentence_about_him_is_read_with_the_name_before_it(checker: SupportChecker) -> None:
    """ "Yoweri Museveni" to "Who gave up his Marxist principles in 1987?" rests on "Dès 1987,
    il abandonne ..." in the article titled Yoweri Museveni; a sentence without a pronoun does
    not lend its title's names."""
    text = "Le pays est pauvre. Dès 1987, il abandonne ses principes marxistes."
    hit = Hit(Chunk("c1", "d1", text, 0, len(text), {"title": "Yoweri Museveni"}), 1.0, 1)
    spans = checker.sentence_vectors(hit)[0]
    question = "Qui abandonne ses principes marxistes en 1987 ?"
    parts = checker.claim_parts(question, "Yoweri Museveni")
    found = checker.quote_support(question, "Yoweri Museveni", [(hit, _Line(*spans[1]))])
    assert best_quotes(found, *parts, 0.0) is not None
    found = checker.quote_support(question, "Yoweri Museveni", [(hit, _Line(*spans[0]))])
    assert best_quotes(found, *parts, 0.0) is None


def test_an_answer_from_a_passage_about_something_else_is_unsupported(
    checker: SupportChecker,
) -> None:
    """The question is about Kilkenny Castle; the number comes from a passage about a basilica,
    which never names it, while another retrieved passage does."""
    question = "Combien de visiteurs le château de Kilkenny reçoit-il chaque année ?"
    answer = "Le château de Kilkenny reçoit environ 20 millions de pèlerins chaque année [2]."
    passages = hits(KILKENNY, BASILICA)
    assert not checker.check(answer, passages, question=question).supported
    # without the subject rule the basilica's sentence is close enough to support it
    lenient = SupportChecker(checker.embedder, replace(checker.rules, subject=0.0))
    assert lenient.check(answer, passages, question=question).sentences[0].citations == (2,)


def test_a_subject_named_in_another_language_is_not_required(checker: SupportChecker) -> None:
    """No passage holds "Warsaw" (the passage says "Varsovia"): the subject rule does not
    apply, and the answer stands on its meaning and number."""
    checked = checker.check(
        "Warsaw has about 1.7 million inhabitants [1].",
        hits("Varsovia tiene cerca de 1,7 millones de habitantes y es la capital de Polonia."),
        question="How many people live in Warsaw?",
    )
    assert checked.supported and checked.citations[0].n == 1


def test_the_names_of_a_question_leave_out_its_first_word() -> None:
    assert question_names("Quel acteur interprète Chang dans Moonraker ?", frozenset()) == {
        "chang",
        "moonraker",
    }
    assert question_names("Who did Hammouchi meet?", frozenset()) == {"hammouchi"}


def test_an_amount_asked_for_by_name_needs_a_number() -> None:
    question = "Quel était le budget du projet de l'UNESCO dans la vallée de Marbial ?"
    assert not answers_the_question(question, "Le projet a été suivi par d'autres missions.")
    assert answers_the_question(question, "Le budget était de 40 000 dollars.")
    assert answers_the_question("What is the name of the project?", "Marbial.")


def test_the_numbers_of_the_question_are_no_answer() -> None:
    question = "How many soldiers died when Napoleon entered Madrid in 1808?"
    assert not answers_the_question(question, "Napoleon entered Madrid in 1808.")
    assert answers_the_question(question, "About 400 soldiers died in 1808.")
    assert not answers_the_question("When did he leave Paris in May?", "He left Paris in May.")
    assert answers_the_question("When did he leave Paris?", "He left Paris in May.")
    # a time told by an event, with the question's own "quand"
    question = "Quand la dette est-elle dépréciée ?"
    assert answers_the_question(question, "Elle est dépréciée quand la France redevient royaliste.")
    assert not answers_the_question(question, "La dette est dépréciée quand.")


def test_an_answer_made_of_the_questions_own_words_restates_it() -> None:
    from rag.support import restates_question

    question = "Who did Hammouchi meet in Washington?"
    assert restates_question(question, "Abdellatif Hammouchi")  # a name the question holds
    assert restates_question("Qui Abdellatif Hammouchi a-t-il rencontré ?", "Abdellatif Hammouchi")
    assert not restates_question(question, "Avril Haines, William Burns and Christopher Wray")
    assert not restates_question(question, "Hammouchi met the director of the CIA.")
    assert not restates_question("Where was the summit held?", "Marrakech")
    assert not restates_question("Quel âge a Hammouchi ?", "Hammouchi a 54 ans")  # a new number
    assert not restates_question("A combien de kilomètres de Palaiseau ?", "6 kilomètres")
    # "île" is capitalised only as it opens the answer: "Amsterdam" is what it says
    assert not restates_question("Quelle île est proche de l'île saint paul ?", "L'île Amsterdam")
    assert restates_question("who did hammouchi meet?", "Abdellatif Hammouchi")
    # a name that holds one of the question's common nouns says something new
    assert not restates_question(
        "What town was actually granted to the Huguenots on arrival?", "Manakin Town"
    )
    assert not restates_question(
        "Into what language did Marlee Matlin translate the national anthem?",
        "American Sign Language",
    )
    assert restates_question(  # the question's words, inflected
        "What did Avril Haines offer Morocco in exchange for its cooperation?",
        "Avril Haines offered Morocco in exchange for its cooperation [5].",
    )


def test_an_opening_that_restates_the_question_is_cut_from_a_short_answer() -> None:
    from rag.support import after_restatement

    question = "Who did Hammouchi meet?"
    names = "Avril Haines, William Burns, and Christopher Wray."
    assert after_restatement(question, f"Hammouchi metted with {names}") == names
    assert after_restatement(question, f"Hammouchi met {names}") == names
    assert after_restatement(question, names) == names  # nothing restated
    assert (
        after_restatement(  # the question's words, then a place
            "Where will the African Lion military exercise take place?",
            "African Lion military exercise will take place in Washington, D.C.",
        )
        == "Washington, D.C."
    )
    assert after_restatement("When was Hammouchi born?", "Hammouchi was born in 1966") == "1966"
    # what follows is no name: the answer says it in a sentence, kept whole
    sentence = "Christopher Wray said that the FBI works with the CIA."
    assert after_restatement("What did Christopher Wray say?", sentence) == sentence
    # a number that is part of a name, not what follows a restated clause
    road = "Route nationale 118"
    assert after_restatement("Au bord de quelle route se trouve le quartier ?", road) == road
    # a name the question does not hold is the answer, not an opening
    assert after_restatement("Who chaired the summit?", "Nasser Bourita") == "Nasser Bourita"


def test_a_reply_is_shown_from_after_a_restated_opening_once_a_name_begins() -> None:
    from rag.support import shown_from

    question = "Who did Hammouchi meet?"
    assert shown_from(question, "Hammouchi") is None  # the last word may be unfinished
    assert shown_from(question, "Hammouchi metted with ") is None  # may still restate
    assert shown_from(question, "Hammouchi metted with Av") is None  # "Av" may be "Avoir"
    assert shown_from(question, "Hammouchi metted with Avril Ha") == len("Hammouchi metted with ")
    assert shown_from(question, "Avril Ha") == 0  # a name the question does not hold
    assert shown_from("Qui dirige le FBI ?", "Christ") == 0  # shown as soon as it begins
    assert shown_from(question, "Ham") is None  # it may be "Hammouchi"
    # a clause after the verb, not a name: shown whole
    said = "Christopher Wray said that the FBI wo"
    assert shown_from("What did Christopher Wray say?", said) == 0
    assert shown_from("Quelles menaces ?", "Les groupes terr") == 0  # no word of the question
    assert shown_from(question, "Hammouchi metted the director of") == 0  # a second other word


def test_a_reply_says_more_once_a_finished_word_is_not_the_questions() -> None:
    from rag.support import says_more

    question = "Who did Hammouchi meet?"
    assert not says_more(question, "Abdellatif Hammou")  # names only: it may still restate
    assert not says_more(question, "Hammouchi dire")  # the last word may be unfinished
    assert says_more(question, "Hammouchi directed ")
    assert says_more("When was it?", "In 2021 ")
