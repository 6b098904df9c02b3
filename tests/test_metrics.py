import math

import pytest

from rag import metrics as m


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The CIA!", "cia"),
        ("L'Agence centrale, les États-Unis", "agence centrale etats unis"),
        ("  Un   chat et des chiens d’Europe. ", "chat et chiens europe"),
        ("«Lutte» contre le terrorisme…", "lutte contre terrorisme"),
    ],
)
def test_normalize_squad_and_french(text: str, expected: str) -> None:
    assert m.normalize(text) == expected


def test_exact_match_any_gold() -> None:
    assert m.exact_match("les États-Unis", ["Etats Unis", "USA"]) == 1.0
    assert m.exact_match("USA today", ["Etats Unis", "USA"]) == 0.0


def test_token_f1_exact_values() -> None:
    # pred tokens: avril haines et william burns (5); gold: avril haines (2); common 2
    # precision 2/5, recall 1 -> F1 = 2 * 0.4 * 1 / 1.4
    assert m.token_f1("Avril Haines et William Burns", ["Avril Haines"]) == pytest.approx(0.8 / 1.4)
    assert m.token_f1("William Burns", ["Christopher Wray", "William Burns"]) == 1.0
    assert m.token_f1("nothing", ["Avril Haines"]) == 0.0
    assert m.token_f1("", [""]) == 1.0


def test_contains_gold_whole_words() -> None:
    assert m.contains_gold("Il a rencontré Avril Haines [1].", ["avril haines"]) == 1.0
    assert m.contains_gold("The year 20201", ["2020"]) == 0.0
    assert m.contains_gold("anything", []) == 0.0


def test_ranks() -> None:
    ids = ["a", "b", "gold", "gold", "c"]
    rank = m.gold_rank(ids, "gold")
    assert rank == 3
    assert [m.hit_at(rank, k) for k in (1, 3, 5)] == [0.0, 1.0, 1.0]
    assert m.reciprocal_rank(rank) == pytest.approx(1 / 3)
    assert m.gold_rank(ids, "missing") is None and m.reciprocal_rank(None) == 0.0
    assert m.reciprocal_rank(11, k=10) == 0.0


def test_citation_precision_and_recall() -> None:
    cited = [("gold", "x"), ("other", "mentions Rabat here"), ("other2", "nothing")]
    assert m.citation_precision(cited, "gold", ["Rabat"]) == pytest.approx(2 / 3)
    assert m.citation_precision([], "gold", ["Rabat"]) is None
    assert m.citation_recall(["gold"], ["x", "gold"], "gold") == 1.0
    assert m.citation_recall(["x"], ["x", "gold"], "gold") == 0.0
    assert m.citation_recall(["x"], ["x"], "gold") is None


def test_bootstrap_interval() -> None:
    mean, low, high = m.bootstrap_ci([1.0] * 10)
    assert (mean, low, high) == (1.0, 1.0, 1.0)
    values = [1.0] * 50 + [0.0] * 50
    mean, low, high = m.bootstrap_ci(values, n_resamples=2000, seed=1)
    assert mean == 0.5
    # the normal approximation: 0.5 +- 1.96 * sqrt(0.25 / 100) = +- 0.098
    assert low == pytest.approx(0.402, abs=0.02) and high == pytest.approx(0.598, abs=0.02)
    assert m.bootstrap_ci(values, seed=1) == m.bootstrap_ci(values, seed=1)  # seeded
    assert all(math.isnan(x) for x in m.bootstrap_ci([]))


def test_percentiles() -> None:
    assert m.percentiles(list(range(1, 101))) == {"p50": 50.5, "p95": pytest.approx(95.05)}
