"""The Gradio app: pure helpers, and the page itself driven in Chromium by Playwright."""

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from rag import Chatbot
from rag.types import Chunk, Citation
from tests.browser import browser_page, free_port
from tests.conftest import ScriptedGenerator
from ui.app import build_app, escape, save_upload, source_message, warm_up

QUESTION = "Who did Hammouchi meet?"


def artifacts_dir(tmp_path: Path) -> Path:
    """Where screenshots go: RAGCHAT_ARTIFACTS if set, else the test's tmp_path."""
    path = Path(os.environ.get("RAGCHAT_ARTIFACTS") or tmp_path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_source_entry_escapes_document_text_and_marks_the_quote() -> None:
    text = "Intro <script>alert(1)</script>. Avril Haines **dirige** [x](http://e.vil)."
    quote = "Avril Haines **dirige** [x](http://e.vil)."
    start = text.index(quote)
    chunk = Chunk("c", "d", text, 0, len(text), {"title": "<b>Doc</b>", "page": 3})
    msg = source_message(Citation(1, chunk, quote, start, start + len(quote)))
    assert msg["metadata"]["title"].startswith("[1] ") and "page 3" in msg["metadata"]["title"]
    body = msg["content"]
    assert "<script>" not in body and "\\<script\\>" in body
    assert "\\*\\*dirige\\*\\*" in body and "\\[x\\]\\(http" in body
    assert body.count("<mark>") == 1 and "Avril Haines" in body.split("<mark>")[1]


def test_escape_keeps_plain_text_readable() -> None:
    assert escape("Avril Haines, directrice") == "Avril Haines, directrice"


def test_uploads_get_safe_names_inside_the_data_dir(tmp_path: Path) -> None:
    src = tmp_path / "in" / "..%2F..%2Fetc passwd.txt"
    src.parent.mkdir()
    src.write_text("x")
    dest = save_upload(str(src), tmp_path / "uploads")
    assert dest.parent.parent == tmp_path / "uploads" and dest.read_text() == "x"
    assert "/" not in dest.name and "%" not in dest.name


@pytest.fixture
def served(scripted_bot: Chatbot):  # type: ignore[no-untyped-def]
    demo = build_app(scripted_bot, readiness=warm_up(scripted_bot))
    demo.queue()
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


def ask(page, url: str, question: str, timeout_ms: int = 60_000) -> None:  # type: ignore[no-untyped-def]
    page.goto(url)
    box = page.locator("#question textarea")
    box.wait_for(timeout=60_000)
    box.fill(question)
    box.press("Enter")
    page.get_by_text(re.compile(r"^\[\d+\] ")).first.wait_for(timeout=timeout_ms)


def test_browser_answer_with_openable_source(
    served: str, scripted_bot: Chatbot, scripted: ScriptedGenerator, tmp_path: Path
) -> None:
    hits = scripted_bot.search(QUESTION)
    gold = next(i for i, h in enumerate(hits, 1) if "Avril Haines" in h.chunk.text)
    scripted.enqueue(
        f"Avril Haines, William Burns and Christopher Wray [{gold}]. "
        f"He gave them a gold medal on 4 July 2019 [{gold}]."
    )
    with browser_page() as page:
        ask(page, served, QUESTION)
        bot_text = page.locator("#chat [data-testid='bot']").first.inner_text()
        assert f"Avril Haines, William Burns and Christopher Wray [{gold}]" in bot_text
        # the models' loading status, shown while they load, says they are ready
        assert "Ready: scripted answers" in page.locator("#model-status").inner_text()
        # the invented sentence is shown as unsupported, without a citation
        assert "He gave them a gold medal on 4 July 2019. (not supported by the passages)" in (
            bot_text
        )
        # the [n] in the answer is a control, reachable by keyboard, named for its source
        control = page.locator(f"#chat details.cite-{gold} > summary").first
        assert f"open source {gold}: hammouchi" in control.inner_text()
        control.focus()
        page.keyboard.press("Enter")
        mark = page.locator(f"#chat details.cite-{gold} mark").first
        mark.wait_for(state="visible", timeout=10_000)
        assert "Avril Haines, directrice du renseignement national" in mark.inner_text()
        # the answer's time and prompt size are shown under it
        assert re.search(r"\d+\.\d s · .*prompt \d+ tokens", bot_text), bot_text
        # the sources are listed under the answer too
        page.locator("#chat").get_by_text(re.compile(rf"^\[{gold}\] hammouchi")).last.click()
        page.screenshot(path=str(artifacts_dir(tmp_path) / "chat-scripted.png"))


def give_file(page, selector: str, path: Path) -> None:  # type: ignore[no-untyped-def]
    """Put a file in an upload input and wait for its name on the page. On a loaded machine the
    input can take the file before Gradio has wired it (the POST succeeds, the name never
    shows): the file is given again, at most 3 times."""
    for attempt in range(3):
        page.locator(selector).set_input_files(str(path))
        try:
            page.get_by_text(path.name).first.wait_for(timeout=20_000)
            return
        except PlaywrightTimeout:
            if attempt == 2:
                raise


def test_browser_upload_adds_a_document(served: str, tmp_path: Path) -> None:
    doc = tmp_path / "rabat-notes.md"
    doc.write_text("# Rabat notes\n\nRabat is the capital of Morocco.")
    with browser_page() as page:
        page.goto(served)
        page.get_by_role("tab", name="Library").click()
        give_file(page, "#upload input[type=file]", doc)
        page.locator("#add").click()
        page.locator("#documents").get_by_text("Rabat notes").wait_for(timeout=60_000)
        assert "Added 1 documents" in page.locator("#ingest-status").inner_text()


def test_browser_evaluate_tab_runs_a_test_set(served: str, tmp_path: Path) -> None:
    questions = Path(__file__).resolve().parents[1] / "eval" / "hammouchi" / "questions.jsonl"
    with browser_page() as page:
        page.goto(served)
        page.get_by_role("tab", name="Evaluate").click()
        give_file(page, "#eval-file input[type=file]", questions)
        page.locator("#eval-limit input").fill("4")
        page.locator("#eval-retrieval-only input").check()
        page.locator("#eval-run").click()
        page.get_by_text("4 questions evaluated").wait_for(timeout=120_000)
        frame = page.frame_locator("#eval-report iframe")
        frame.get_by_text("Metrics").first.wait_for(timeout=30_000)
        assert frame.locator("img").count() >= 2
        page.screenshot(path=str(artifacts_dir(tmp_path) / "evaluate-tab.png"), full_page=True)
