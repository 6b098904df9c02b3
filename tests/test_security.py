"""Attacks on the chat server, each tried for real and refused: listening beyond this machine
without a password, scripts in documents and their names, uploads that try to leave the data
directory or exceed the limits, and requests for files the server must not serve.

Servers are started by ui.app.launch (the function `ragchat chat` calls) on free ports and
reached over loopback with httpx, or in Debian's Chromium through Playwright."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from models.embedders import SentenceTransformerEmbedder
from rag import SAMPLE_CORPUS, Chatbot, Settings, UnsupportedDocument
from rag.cli import app as cli
from tests.browser import browser_page, serve
from tests.conftest import ScriptedGenerator
from ui.app import check_exposure, parse_auth, save_upload

UPLOAD_LIMIT = 64 * 1024
REPO = Path(__file__).resolve().parents[1]


# -- listening: loopback only, unless a password is set -----------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"])
def test_loopback_needs_no_password(host: str) -> None:
    check_exposure(host, None)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "10.0.0.5", "chat.example"])
def test_any_other_address_needs_a_password(host: str) -> None:
    with pytest.raises(Exception, match="Refusing to listen on .* without a password"):
        check_exposure(host, None)
    check_exposure(host, ("alice", "a long passphrase"))


def test_chat_command_refuses_other_addresses_before_loading_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAGCHAT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("RAGCHAT_AUTH", raising=False)
    for args, env in [
        (["chat", "--host", "0.0.0.0"], {}),
        (["chat"], {"RAGCHAT_HOST": "0.0.0.0"}),
    ]:
        result = CliRunner().invoke(cli, args, env=env)
        assert result.exit_code == 1, result.output
        message = result.stderr.strip()
        assert message.count("\n") == 0 and "Refusing to listen on 0.0.0.0" in message
        assert "--auth USER:PASSWORD" in message and "RAGCHAT_AUTH" in message
    result = CliRunner().invoke(cli, ["chat", "--host", "0.0.0.0"], env={"RAGCHAT_AUTH": "alice"})
    assert result.exit_code == 1 and "must be USER:PASSWORD" in result.stderr
    assert not (tmp_path / "data").exists()  # refused before the store or a model was opened


def test_parse_auth() -> None:
    assert parse_auth(None) is None and parse_auth("") is None
    assert parse_auth("alice:pa:ss word") == ("alice", "pa:ss word")
    for bad in ["alice", "alice:", ":secret"]:
        with pytest.raises(Exception, match="USER:PASSWORD"):
            parse_auth(bad)


def test_other_address_with_a_password_starts_and_asks_for_it(minilm_bot: Chatbot) -> None:
    with serve(minilm_bot, host="0.0.0.0", auth=("alice", "a long passphrase")) as url:
        with httpx.Client(base_url=url, timeout=30) as client:
            assert client.get("/config").status_code == 401
            assert client.get(f"/gradio_api/file={SAMPLE_CORPUS}").status_code == 401
            wrong = {"username": "alice", "password": "guess"}
            assert client.post("/login", data=wrong).status_code == 400
            right = {"username": "alice", "password": "a long passphrase"}
            assert client.post("/login", data=right).status_code == 200
            assert client.get("/config").status_code == 200


# -- what the server serves and stores -----------------------------------------------------------


@pytest.fixture(scope="module")
def server(minilm_bot: Chatbot) -> Iterator[str]:
    with serve(minilm_bot, max_upload_bytes=UPLOAD_LIMIT) as url:
        yield url


def data_dir(bot: Chatbot) -> Path:
    return Path(bot.settings.data_dir).resolve()


def call(client: httpx.Client, endpoint: str, *inputs: Any) -> tuple[str, Any]:
    """Run an event of the app as a browser would: ("complete", outputs) or ("error", why)."""
    event_id = client.post(f"/gradio_api/call/{endpoint}", json={"data": list(inputs)}).json()
    stream = client.get(f"/gradio_api/call/{endpoint}/{event_id['event_id']}").text
    kind = re.findall(r"^event: (\w+)", stream, re.M)[-1]
    data = json.loads(re.findall(r"^data: (.*)$", stream, re.M)[-1])
    return kind, data


def file_data(path: str | Path) -> dict[str, Any]:
    return {"path": str(path), "orig_name": Path(path).name, "meta": {"_type": "gradio.FileData"}}


def test_no_file_outside_gradios_upload_cache_is_served(server: str, minilm_bot: Chatbot) -> None:
    data = data_dir(minilm_bot)
    cache = data / "gradio"
    refused = [
        "/etc/passwd",
        str(data / "store" / "chroma.sqlite3"),  # the store, inside the data directory
        str(REPO / "README.md"),
        "README.md",  # relative to the server's working directory
        str(SAMPLE_CORPUS),  # a document the store was built from
        f"{cache}/../store/chroma.sqlite3",
        f"{cache}/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    ]
    with httpx.Client(base_url=server, timeout=30) as client:
        for path in refused:
            response = client.get(f"/gradio_api/file={path}")
            assert response.status_code == 403, (path, response.status_code)


def test_upload_named_to_escape_stays_in_the_data_directory(
    server: str, minilm_bot: Chatbot, tmp_path: Path
) -> None:
    data = data_dir(minilm_bot)
    escape_to = Path("/tmp/ragchat-upload-escape.txt")
    name = "../../../../../../tmp/ragchat-upload-escape.txt"
    with httpx.Client(base_url=server, timeout=30) as client:
        files = [("files", (name, b"Rabat is the capital of Morocco.", "text/plain"))]
        response = client.post("/gradio_api/upload", files=files)
        assert response.status_code == 200
        (cached,) = response.json()
        assert Path(cached).resolve().is_relative_to(data / "gradio")
        assert client.get(f"/gradio_api/file={cached}").status_code == 200
        kind, outputs = call(client, "ingest_uploads", [file_data(cached)])
    assert kind == "complete" and "Added 1 documents" in outputs[4]
    assert not escape_to.exists()
    stored = [Path(d["doc_id"]) for d in minilm_bot.documents() if "escape" in d["doc_id"]]
    assert len(stored) == 1 and stored[0].is_relative_to(data / "uploads")
    assert stored[0].parent.parent == data / "uploads"  # uploads/<generated key>/<safe name>


def test_client_cannot_make_the_server_read_a_path_it_names(
    server: str, minilm_bot: Chatbot, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("The vault code is 4242.")
    with httpx.Client(base_url=server, timeout=30) as client:
        kind, why = call(client, "ingest_uploads", [file_data(secret)])
    assert kind == "error" and "not uploaded by a user" in why["error"]
    assert not any("secret" in d["doc_id"] for d in minilm_bot.documents())


def test_uploads_over_the_limit_or_of_other_types_are_refused(
    server: str, minilm_bot: Chatbot
) -> None:
    with httpx.Client(base_url=server, timeout=30) as client:
        big = [("files", ("big.txt", b"x" * (UPLOAD_LIMIT + 1), "text/plain"))]
        response = client.post("/gradio_api/upload", files=big)
        assert response.status_code == 413
        exe = [("files", ("setup.exe", b"MZ\x90\x00", "application/octet-stream"))]
        (cached,) = client.post("/gradio_api/upload", files=exe).json()
        kind, why = call(client, "ingest_uploads", [file_data(cached)])
    assert kind == "error" and "Invalid file type" in why["error"]
    assert not list((data_dir(minilm_bot) / "uploads").glob("*/setup*"))


def test_save_upload_checks_type_and_size_itself(tmp_path: Path) -> None:
    """The same limits without Gradio in front (build_app can be served by other means)."""
    for name, size, why in [("tool.py", 10, "not accepted"), ("big.md", 2048, "too large")]:
        src = tmp_path / name
        src.write_bytes(b"x" * size)
        with pytest.raises(UnsupportedDocument, match=why):
            save_upload(str(src), tmp_path / "uploads", max_bytes=1024)
    assert not (tmp_path / "uploads").exists()
    for name in [".bashrc.txt", "..txt", "a b (1).md", "x" * 250 + ".txt"]:
        src = tmp_path / name
        src.write_text("text")
        dest = save_upload(str(src), tmp_path / "uploads")
        assert dest.parent.parent == tmp_path / "uploads" and not dest.name.startswith(".")
        assert len(dest.name) <= 90 and dest.read_text() == "text"


# -- documents that carry scripts ----------------------------------------------------------------

# valid raw HTML for Markdown too (CommonMark ignores a tag whose unquoted value holds a quote)
PAYLOAD = """<img src="x" onerror="alert('{n}')">"""


def hostile_documents(folder: Path) -> Path:
    """A Markdown file whose name, title and text carry scripts, and a JSONL record likewise."""
    folder.mkdir()
    (folder / f"{PAYLOAD.format(n='name')}.md").write_text(
        f"# {PAYLOAD.format(n='title')} Rabat\n\n"
        f"Rabat is the capital of Morocco. <script>alert('script')</script> "
        f"{PAYLOAD.format(n='text')} It lies on the Atlantic coast.\n"
    )
    record = {
        "id": "<b>r1</b>",
        "title": PAYLOAD.format(n="jsonl-title"),
        "text": "Salé faces Rabat across the river. <svg onload=alert('svg')></svg>",
    }
    (folder / "records.jsonl").write_text(json.dumps(record) + "\n")
    return folder


def test_browser_runs_no_script_from_documents_their_names_or_answers(
    tmp_path: Path, minilm: SentenceTransformerEmbedder
) -> None:
    scripted = ScriptedGenerator()
    # citation checking off: the model's whole answer, markers included, reaches the page
    # (with checking on, the payload sentences are shown too, marked as unsupported)
    settings = Settings(
        store=str(tmp_path / "store"), data_dir=str(tmp_path / "data"), check_citations=False
    )
    bot = Chatbot(settings, embedder=minilm, generator=scripted)
    bot.ingest([hostile_documents(tmp_path / "docs")])
    question = "What is the capital of Morocco?"
    assert len(bot.search(question)) == 2
    # an answer steered by a document: Gradio's sanitiser must strip what it carries
    scripted.enqueue(
        f"Rabat is the capital [1][2]. {PAYLOAD.format(n='answer')} <script>x</script>"
    )
    empty = tmp_path / f"{PAYLOAD.format(n='upload')}.txt"
    empty.write_text("")
    dialogs: list[str] = []
    with serve(bot) as url, browser_page() as page:

        def on_dialog(dialog: Any) -> None:  # alert() from any payload that ran
            dialogs.append(dialog.message)
            dialog.dismiss()

        page.on("dialog", on_dialog)
        page.goto(url)
        box = page.locator("#question textarea")
        box.wait_for(timeout=60_000)
        box.fill(question)
        box.press("Enter")
        # each [n] of the answer opens its passage inline; the sources are listed under it
        controls = page.locator("#chat details.cite > summary")
        controls.nth(1).wait_for(timeout=60_000)
        for control in controls.all():
            control.click()
        for source in (
            page.locator("#chat").get_by_text(re.compile(r"^\[\d\] hostile|^\[\d\] <")).all()
        ):
            if source.is_visible():
                source.click()
        page.get_by_text("alert('script')").first.wait_for(state="visible", timeout=10_000)
        chat_shown = page.locator("body").inner_text()
        page.get_by_role("tab", name="Library").click()
        page.locator("#upload input[type=file]").set_input_files(str(empty))
        # the upload is done when the component lists the file: "Add" before that finds none
        page.locator("#upload").get_by_text(re.compile(r"\.txt")).first.wait_for(timeout=60_000)
        page.locator("#add").click()
        page.get_by_text("Skipped").first.wait_for(timeout=60_000)
        shown = chat_shown + page.locator("body").inner_text()
        # a model named with a script: its loading status names it, as text
        page.get_by_role("tab", name="Settings").click()
        model = page.locator("#set-model input")
        model.fill(PAYLOAD.format(n="model"))
        model.press("Enter")
        page.locator("#set-save").click()
        page.locator("#set-model-status").get_by_text("could not be loaded").wait_for(
            timeout=60_000
        )
        # shown as text: the name as the error message quotes it (its repr)
        model_status = page.locator("#set-model-status").inner_text()
        page.wait_for_timeout(500)
    assert dialogs == []
    for literal in [
        f"{PAYLOAD.format(n='title')} Rabat",  # title, in the sources and the documents table
        PAYLOAD.format(n="text"),  # passage text
        "<script>alert('script')</script>",
        PAYLOAD.format(n="jsonl-title"),
        f"{PAYLOAD.format(n='name')}.md",  # the file name, in the documents table's id column
    ]:
        assert literal in shown, literal
    assert '<img src="x" onerror=' in model_status
