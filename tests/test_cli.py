import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rag import SAMPLE_CORPUS
from rag.cli import app
from rag.refusal import NOTES, REASONS
from tests.conftest import SAMPLE_ID


@pytest.fixture
def env(tmp_path: Path, models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {
        "RAGCHAT_DATA_DIR": str(tmp_path / "data"),
        "RAGCHAT_MODELS": str(models_dir),
        "RAGCHAT_LLM": "smollm2-135m-instruct",
    }
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    return values


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_ingest_list_search_ask_delete(env: dict[str, str], tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    (tmp_path / "empty.txt").write_text("")
    code, out, err = run(
        "ingest", str(SAMPLE_CORPUS), str(tmp_path / "empty.txt"), "--store", store
    )
    assert code == 0, err
    assert "1 documents added" in out and "skipped" in err and "empty.txt" in err

    code, out, _ = run("list", "--store", store, "--json")
    docs = json.loads(out)
    assert [d["doc_id"] for d in docs] == [SAMPLE_ID]
    assert [d["name"] for d in docs] == [SAMPLE_CORPUS.name]

    code, out, _ = run("search", "Who did Hammouchi meet?", "-k", "2", "--store", store, "--json")
    hits = json.loads(out)
    assert code == 0 and len(hits) == 2 and {"doc_id", "score", "text"} <= set(hits[0])
    for mode in ("keyword", "dense"):
        code, out, _ = run(
            "search", "Christopher Wray", "--retrieval", mode, "--store", store, "--json"
        )
        assert code == 0 and "Christopher Wray" in json.loads(out)[0]["text"], mode
    code, _, err = run("search", "x", "--retrieval", "fuzzy", "--store", store)
    assert code == 1 and "hybrid, dense or keyword" in err

    code, out, err = run("ask", "Who did Hammouchi meet?", "--store", store, "--json")
    assert code == 0, err
    answer = json.loads(out)
    assert {"answer", "refused", "citations", "hits", "timings"} <= set(answer)
    assert set(answer["timings"]) >= {"retrieval", "first_token", "total"}
    assert all({"n", "doc_id", "source", "text"} <= set(c) for c in answer["citations"])

    code, out, _ = run("delete", str(SAMPLE_CORPUS), "--store", store)
    assert code == 0 and "Deleted" in out
    code, out, _ = run("list", "--store", store)
    assert "empty" in out


def test_errors_are_one_line_with_exit_code_1(env: dict[str, str], tmp_path: Path) -> None:
    code, _, err = run("ask", "Who?", "--store", str(tmp_path / "nothing"))
    assert code == 1 and err.startswith("Error: The document store is empty")
    assert "Traceback" not in err
    code, _, err = run("delete", "nope", "--store", str(tmp_path / "nothing"))
    assert code == 1 and "ragchat list" in err


def test_console_script_is_installed() -> None:
    exe = Path(sys.executable).parent / "ragchat"
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    for command in ["ingest", "ask", "search", "list", "delete", "chat"]:
        assert command in out.stdout


def test_help_texts_render_as_written() -> None:
    """`[1]` once vanished as Rich markup; each command shows an example."""
    code, out, _ = run("--help")
    assert code == 0 and "citing passages as [1], [2]." in out
    for command in ["ingest", "ask", "search", "list", "delete", "chat", "eval"]:
        code, out, _ = run(command, "--help")
        assert code == 0 and f"Example: ragchat {command}" in out, command
    code, out, _ = run("ask", "--help")
    assert 'ragchat ask "Who did Hammouchi meet?"' in out


# the reasons `ask` gives for a refusal or a changed answer, its own lines on stderr
OWN_LINES = {f"({reason})" for reason in (*REASONS.values(), *NOTES.values())}


def test_a_normal_run_prints_no_library_internals(
    env: dict[str, str], e5: object, tmp_path: Path
) -> None:
    """stderr of ingest and ask holds ragchat's own progress and timing, no third-party
    warning or debug line (transformers' FutureWarning, bm25s' DEBUG). `ask` searches as
    `search` does (its own process would add 20 s to the suite and no other library)."""
    import os
    import re

    store = str(tmp_path / "store")
    full_env = {**os.environ, **env, "RAGCHAT_LLM": "smollm2-135m-instruct"}
    full_env.pop("RAGCHAT_LOG", None)
    for args in (
        ["ingest", str(SAMPLE_CORPUS)],
        ["ask", "Who did Hammouchi meet?"],
    ):
        out = subprocess.run(
            [sys.executable, "-m", "rag.cli", *args, "--store", store],
            env=full_env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert out.returncode == 0, out.stderr
        for line in re.split(r"[\r\n]+", out.stderr):
            line = line.replace("\x1b[A", "").strip()
            if line and line not in OWN_LINES:
                assert re.match(r"^(reading|embedding) *:|^\(\d+\.\d s to first token", line), line
