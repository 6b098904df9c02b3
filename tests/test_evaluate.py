import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rag import Chatbot, ConfigError
from rag.cli import app
from rag.evaluate import EvalQuestion, compare_runs, evaluate, load_questions, select, summarize
from tests.conftest import ScriptedGenerator

ROOT = Path(__file__).resolve().parents[1]
GOLD_DOCS = ROOT / "eval" / "hammouchi" / "documents.jsonl"
GOLD_QUESTIONS = ROOT / "eval" / "hammouchi" / "questions.jsonl"


def test_gold_set_shape() -> None:
    qs = load_questions(GOLD_QUESTIONS)
    assert len(qs) >= 20 and sum(q.unanswerable for q in qs) >= 5
    doc_ids = {json.loads(line)["id"] for line in GOLD_DOCS.read_text().splitlines()}
    assert all(q.context_id in doc_ids for q in qs if not q.unanswerable)
    langs = {json.loads(line)["question_lang"] for line in GOLD_QUESTIONS.read_text().splitlines()}
    assert langs == {"en", "fr"}


def test_bad_test_sets_say_where(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text('{"id": "a", "question": "x", "answers": []}\n{"id": "b"}\n')
    with pytest.raises(ConfigError, match="q.jsonl:2"):
        load_questions(path)


def test_sample_is_seeded_and_keeps_order() -> None:
    qs = [EvalQuestion(str(i), "q", (), None, False) for i in range(50)]
    a, b = select(qs, sample=10, seed=3), select(qs, sample=10, seed=3)
    assert a == b and len(a) == 10 and [q.id for q in a] == sorted((q.id for q in a), key=int)
    assert select(qs, sample=10, seed=4) != a
    assert len(select(qs, limit=5)) == 5


def test_summary_of_hand_made_rows() -> None:
    rows = [
        {
            "outcome": "correct",
            "hit@1": 1.0,
            "contains": 1.0,
            "citation_precision": 1.0,
            "total_s": 2.0,
        },
        {
            "outcome": "wrong",
            "hit@1": 0.0,
            "contains": 0.0,
            "citation_precision": 0.5,
            "total_s": 4.0,
        },
        {"outcome": "refused_rightly", "refused_unanswerable": 1.0, "total_s": 6.0},
    ]
    s = summarize(rows)
    assert s["metrics"]["hit@1"]["mean"] == 0.5 and s["metrics"]["hit@1"]["n"] == 2
    assert s["metrics"]["citation_precision"]["mean"] == 0.75
    assert s["metrics"]["refused_unanswerable"]["mean"] == 1.0
    assert s["costs"]["total_s"]["p50"] == 4.0
    assert s["outcomes"] == {"correct": 1, "wrong": 1, "refused_rightly": 1}


def test_scripted_answers_give_exact_metrics(settings, e5, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    gen = ScriptedGenerator()
    bot = Chatbot(settings, embedder=e5, generator=gen)
    bot.ingest([GOLD_DOCS])
    q1 = EvalQuestion(
        "q1", "Who is the director of the CIA?", ("William Burns",), "hammouchi-p3", False
    )
    q2 = EvalQuestion("q2", "What is the budget of the DGST?", (), None, True)
    gold_n = next(
        i for i, h in enumerate(bot.search(q1.question), 1) if h.chunk.record_id == "hammouchi-p3"
    )
    gen.enqueue(f"The director of the CIA is William Burns [{gold_n}].")
    gen.enqueue("NOT_FOUND")
    result = evaluate([q1, q2], bot, out_dir=tmp_path / "run")
    m = result.summary["metrics"]
    assert m["contains"]["mean"] == 1.0 and m["citation_precision"]["mean"] == 1.0
    assert m["citation_recall"]["mean"] == 1.0 and m["refused_unanswerable"]["mean"] == 1.0
    assert m["refused_answerable"]["mean"] == 0.0 and m["has_citation"]["n"] == 1
    assert [r["outcome"] for r in result.rows] == ["correct", "refused_rightly"]
    assert result.complete
    first = result.rows[0]
    assert first["language_ok"] == 1.0 and first["answer_lang"] == "en"
    assert first["sentences"][0]["supported"] and first["raw"].startswith("The director")
    assert m["language_ok"]["mean"] == 1.0 and m["supported_share"]["mean"] == 1.0


def test_eval_command_end_to_end_with_small_model(
    tmp_path: Path, models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAGCHAT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("RAGCHAT_MODELS", str(models_dir))
    monkeypatch.setenv("RAGCHAT_LLM", "smollm2-135m-instruct")
    run = tmp_path / "run"
    runner = CliRunner()
    args = [
        "eval",
        str(GOLD_QUESTIONS),
        "--docs",
        str(GOLD_DOCS),
        "--limit",
        "3",
        "--out",
        str(run),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.stderr
    rows = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["h01", "h02", "h03"]
    assert all("answer" in r and "retrieved" in r and "first_token_s" in r for r in rows)
    summary = json.loads((run / "summary.json").read_text())
    assert {"hit@1", "mrr@10", "contains", "f1"} <= set(summary["metrics"])
    assert summary["run"]["models"]["llm"]["sha256"]
    assert summary["run"]["models"]["embedder"]["sha256"]
    assert summary["run"]["versions"]["chromadb"] and summary["run"]["machine"]["cpus"]
    report = (run / "report.html").read_text()
    assert "Metrics" in report and report.count("data:image/png;base64,") >= 3
    assert "Content-Security-Policy\" content=\"default-src 'none'; img-src data:;" in report

    # an existing run is not overwritten; --resume continues it to 5 questions
    assert runner.invoke(app, args).exit_code == 1
    resumed = runner.invoke(
        app, [*args[:-4], "--limit", "5", "--out", str(run), "--resume", "--retrieval-only"]
    )
    assert resumed.exit_code == 0, resumed.stderr
    assert len((run / "results.jsonl").read_text().splitlines()) == 5

    other = tmp_path / "run-b"
    assert (
        runner.invoke(
            app,
            [
                "eval",
                str(GOLD_QUESTIONS),
                "--docs",
                str(GOLD_DOCS),
                "--limit",
                "5",
                "--retrieval-only",
                "--out",
                str(other),
            ],
        ).exit_code
        == 0
    )
    compared = runner.invoke(app, ["eval", "compare", str(run), str(other)])
    assert compared.exit_code == 0 and "5 questions in both runs" in compared.stdout
    assert compare_runs(run, other)["metrics"]["hit@1"]["n"] == 5


def test_package_level_evaluate_is_the_function() -> None:
    import rag

    assert rag.evaluate is evaluate and callable(rag.evaluate)


def test_interrupted_run_keeps_finished_questions_and_resumes(
    settings,
    minilm,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    bot = Chatbot(settings, embedder=minilm, generator=ScriptedGenerator())
    bot.ingest([GOLD_DOCS])
    run = tmp_path / "run"

    def stop_after_two(done: int, total: int, shown: dict[str, float]) -> None:
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        evaluate(
            GOLD_QUESTIONS, bot, retrieval_only=True, out_dir=run, limit=5, progress=stop_after_two
        )
    assert len((run / "results.jsonl").read_text().splitlines()) == 2
    summary = json.loads((run / "summary.json").read_text())
    assert summary["run"]["complete"] is False and summary["questions"] == 2
    result = evaluate(GOLD_QUESTIONS, bot, retrieval_only=True, out_dir=run, limit=5, resume=True)
    assert result.complete and [r["id"] for r in result.rows] == ["h01", "h02", "h03", "h04", "h05"]
    assert len((run / "results.jsonl").read_text().splitlines()) == 5


def test_an_answers_language_is_measured_on_its_own_words() -> None:
    """Quotes and names stay as written in the source (issue 5): the answer's language is
    measured without them, and a bare name or date has none."""
    from rag.evaluate import own_words
    from rag.language import detect_language

    assert own_words("Christopher Wray") == "" and own_words("13-14 June 2022") == ""
    quoted = own_words(
        'The passage mentions "volcanisme récurrent et ponctuel" and « laves basaltiques '
        "fluides » as signs of volcanic activity."
    )
    assert "volcanisme" not in quoted and detect_language(quoted) == "en"
    french = own_words("Abdellatif Hammouchi a rencontré la directrice du renseignement national.")
    assert "Hammouchi" not in french and detect_language(french) == "fr"
