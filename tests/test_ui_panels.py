"""The chat's panels: conversations kept in SQLite, the library, the settings, stopping an
answer, a PDF's page. Their stores tested directly, then the page driven in Chromium."""

from __future__ import annotations

import dataclasses
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from models.embedders import SentenceTransformerEmbedder
from rag import SAMPLE_CORPUS, Chatbot, Settings
from rag.errors import ConfigError
from rag.records import answer_from_record, answer_record
from tests.browser import browser_page, free_port
from tests.conftest import ScriptedGenerator
from tests.test_loaders import write_pdf
from tests.test_ui import artifacts_dir
from ui import preferences
from ui.app import build_app, warm_up
from ui.conversations import Conversations
from ui.library import rows

QUESTION = "Who did Hammouchi meet?"
NAMES = "Avril Haines, William Burns and Christopher Wray"


def number_of(bot: Chatbot, question: str, words: str) -> int:
    """The number the passage holding `words` has in the prompt of an answer to `question`:
    its place in the collection when the collection is read whole, else its rank."""
    hits = bot.collection_hits() or bot.search(question)
    return next(i for i, h in enumerate(hits, 1) if words in h.chunk.text)


def gold(bot: Chatbot) -> int:
    """The number the passage naming the three directors has in the answer's prompt."""
    return number_of(bot, QUESTION, "Avril Haines")


# -- the stores ---------------------------------------------------------------------------------


def test_an_answer_kept_as_json_comes_back_the_same(
    scripted_bot: Chatbot, scripted: ScriptedGenerator
) -> None:
    scripted.enqueue(f"{NAMES} [{gold(scripted_bot)}].")
    answer = scripted_bot.ask(QUESTION)
    again = answer_from_record(answer_record(answer))
    assert again.text == answer.text and again.citations[0].quote == answer.citations[0].quote
    assert again.sentences == answer.sentences and again.signals == answer.signals
    assert answer_record(again) == answer_record(answer)


def test_conversations_are_kept_renamed_exported_and_deleted_per_owner(
    scripted_bot: Chatbot, scripted: ScriptedGenerator, tmp_path: Path
) -> None:
    db = tmp_path / "c.sqlite3"
    alice, bob = Conversations(db, "alice"), Conversations(db, "bob")
    conv = alice.create()
    scripted.enqueue(f"{NAMES} [{gold(scripted_bot)}].")
    alice.add(conv.id, scripted_bot.ask(QUESTION))
    assert [c.title for c in Conversations(db, "alice").listed()] == [QUESTION]  # named by it
    assert bob.listed() == []
    with pytest.raises(ConfigError, match="No conversation"):
        bob.delete(conv.id)  # another person's cannot be reached
    assert alice.messages(conv.id)[0] == {"role": "user", "content": QUESTION}
    alice.rename(conv.id, "Washington <b>visit</b>")
    md = alice.markdown(conv.id)
    assert md.startswith("# Washington \\<b\\>visit\\</b\\>\n")  # a name is text, not a tag
    assert f"{NAMES} [" in md and "> Accompagné d’une délégation" in md
    with pytest.raises(ConfigError, match="cannot be empty"):
        alice.rename(conv.id, "  ")
    alice.delete(conv.id)
    assert alice.listed() == []


def test_exported_markdown_keeps_document_markup_inert(tmp_path: Path) -> None:
    from rag.types import Answer, Chunk, Citation

    text = "See ![x](http://e.vil/a.png) and <img src=http://e.vil/b.png> here."
    chunk = Chunk("c", "d", text, 0, len(text), {"title": "[t](http://e.vil)", "source": "/x"})
    answer = Answer("q <script>", "It says so [1].", (Citation(1, chunk, text, 0, len(text)),),
                    (), False, {})  # fmt: skip
    convs = Conversations(tmp_path / "c.sqlite3")
    conv = convs.create()
    convs.add(conv.id, answer)
    md = convs.markdown(conv.id)
    # every < ! [ ( of the document is escaped: no tag, image or link is read in it
    assert not re.search(r"(?<!\\)<|(?<!\\)!\[|(?<!\\)\]\(", md), md
    assert "\\<img src=http\\://e.vil/b.png\\>" in md
    assert "It says so [1]." in md


def test_preferences_are_checked_and_kept_per_user(tmp_path: Path) -> None:
    settings = Settings(store=str(tmp_path / "s"), data_dir=str(tmp_path))
    chosen = preferences.Preferences(settings.llm, 3, "dense", "fr").checked(settings)
    preferences.save(settings, chosen, "alice")
    assert preferences.load(settings, "alice") == chosen
    assert preferences.load(settings, "bob") == preferences.Preferences.of(settings)
    for bad, message in [
        ({"top_k": 0}, "between 1 and 50"),
        ({"top_k": "many"}, "whole number"),
        ({"retrieval": "magic"}, "hybrid, dense, keyword"),
        ({"answer_language": "xx"}, "auto, en, fr, es, de"),
    ]:
        with pytest.raises(ConfigError, match=message):
            preferences.Preferences(**{**dataclasses.asdict(chosen), **bad}).checked(settings)


def test_library_rows_are_searched_by_title_and_name_without_accents(
    scripted_bot: Chatbot,
) -> None:
    docs = scripted_bot.documents()
    assert rows(docs, "HAMMOUCHI washington")[0][0] == "hammouchi_washington_visit_2022-06.fr"
    assert rows(docs, "kilkenny") == []
    row = rows(docs)[0]
    assert row[1] == "txt" and row[3] == docs[0]["chunks"] and row[4] and row[5].endswith("KB")


# -- the page -----------------------------------------------------------------------------------


class SlowScripted(ScriptedGenerator):
    """A scripted model that takes 0.3 s per word, and counts the words it produced."""

    produced = 0

    def stream(self, messages, **kwargs):  # type: ignore[no-untyped-def]
        for piece in super().stream(messages, **kwargs):
            time.sleep(0.3)
            self.produced += 1
            yield piece


@pytest.fixture
def app_for(tmp_path: Path, e5: SentenceTransformerEmbedder) -> Iterator[Any]:
    """Serve a Chatbot over the data dir `tmp_path/data` (a second call is a restart)."""
    demos = []

    def serve(generator: ScriptedGenerator) -> tuple[str, Chatbot]:
        data = tmp_path / "data"
        bot = Chatbot(
            Settings(store=str(data / "store"), data_dir=str(data)),
            embedder=e5,
            generator=generator,
        )
        if not bot.documents():
            bot.ingest([SAMPLE_CORPUS])
        demo = build_app(bot, readiness=warm_up(bot))
        demo.queue()
        port = free_port()
        demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
        demos.append(demo)
        return f"http://127.0.0.1:{port}/", bot

    yield serve
    for demo in demos:
        demo.close()


def ask(page: Any, question: str) -> None:
    box = page.locator("#question textarea")
    box.wait_for(timeout=60_000)
    box.fill(question)
    box.press("Enter")


def last_answer(page: Any) -> Any:
    return page.locator("#chat .answer").last


def answered(app_for: Any, page: Any) -> Chatbot:
    """Serve a scripted Chatbot and ask it the sample question on `page`, until answered."""
    scripted = ScriptedGenerator()
    url, bot = app_for(scripted)
    scripted.enqueue(f"{NAMES} [{gold(bot)}].")
    page.goto(url)
    ask(page, QUESTION)
    last_answer(page).get_by_text(NAMES).wait_for(timeout=60_000)
    return bot


def test_browser_conversation_is_resumed_after_a_restart_and_followed_up(
    app_for: Any, tmp_path: Path
) -> None:
    with browser_page() as page:
        answered(app_for, page)
    again = ScriptedGenerator("When did Hammouchi visit the United States?", "NOT_FOUND")
    url, bot = app_for(again)  # a new server over the same data directory
    with browser_page() as page:
        page.goto(url)
        # the last conversation is open again, with its answer and its citation controls
        page.locator("#chat details.cite").first.wait_for(timeout=60_000)
        assert NAMES in last_answer(page).inner_text()
        assert QUESTION in page.locator("#conversations").inner_text()
        ask(page, "And when?")
        # searched for the standalone question, refused with its reason (NOT_FOUND)
        answer = last_answer(page)
        answer.get_by_text("When did Hammouchi visit the United States?").wait_for(timeout=60_000)
        assert "Why: The model found no sentence" in answer.inner_text()
        page.screenshot(path=str(artifacts_dir(tmp_path) / "chat-1400.png"))
        page.set_viewport_size({"width": 390, "height": 844})  # a phone
        page.locator("#chat details.cite").first.wait_for()
        page.screenshot(path=str(artifacts_dir(tmp_path) / "chat-390.png"), full_page=True)
    # the follow-up was rewritten from the resumed conversation's question and answer
    rewrite_prompt = " ".join(m["content"] for m in again.prompts[0])
    assert QUESTION in rewrite_prompt and "Christopher Wray" in rewrite_prompt


def test_browser_conversation_renamed_exported_and_deleted(app_for: Any, tmp_path: Path) -> None:
    """A conversation named with a script is shown as text (no dialog opens), exported with
    its markup inert, and deleted."""
    dialogs: list[str] = []
    with browser_page() as page:
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        bot = answered(app_for, page)
        page.locator("#conversation-name input").fill("Trip <img src=x onerror=alert(1)>")
        page.locator("#rename").click()
        page.locator("#conversations").get_by_text("Trip <img").wait_for(timeout=30_000)
        page.locator("#export").click()
        with page.expect_download() as download:
            page.locator("#exported a").first.click(timeout=30_000)
        md = Path(download.value.path()).read_text(encoding="utf-8")
        assert md.startswith("# Trip \\<img src=x onerror=alert\\(1\\)\\>")
        assert "> Accompagné d’une délégation" in md
        page.locator("#delete-chat").click()
        page.locator("#delete-chat-confirm").click()
        expect(page.locator("#conversations")).not_to_contain_text("Trip", timeout=30_000)
    assert dialogs == []
    assert Conversations(Path(bot.settings.data_dir) / "conversations.sqlite3").listed() == []


def test_browser_answer_stopped_mid_stream(app_for: Any) -> None:
    slow = SlowScripted()
    url, bot = app_for(slow)
    words = " ".join(["Avril Haines"] * 60) + f" [{gold(bot)}]."
    slow.enqueue(words)
    slow.enqueue(f"{NAMES} [{gold(bot)}].")
    with browser_page() as page:
        page.goto(url)
        ask(page, QUESTION)
        page.locator("#chat").get_by_text("Avril Haines Avril Haines").first.wait_for(
            timeout=60_000
        )
        page.locator("#stop").click()
        time.sleep(2)
        stopped_at = slow.produced
        time.sleep(2)
        assert slow.produced == stopped_at < 121  # nothing generated after Stop
        ask(page, QUESTION)  # the model is free again
        last_answer(page).get_by_text(NAMES).wait_for(timeout=60_000)


def test_browser_setting_changed_is_used_by_the_next_answer(app_for: Any, tmp_path: Path) -> None:
    scripted = ScriptedGenerator("NOT_FOUND")
    url, bot = app_for(scripted)
    with browser_page() as page:
        page.goto(url)
        page.get_by_role("tab", name="Settings").click()
        page.locator("#set-top-k input").fill("0")
        page.locator("#set-save").click()
        expect(page.locator("#set-status")).to_contain_text("between 1 and 50", timeout=30_000)
        page.locator("#set-top-k input").fill("3")
        page.locator("#set-language input").click()
        page.get_by_role("option", name="fr", exact=True).click()
        page.locator("#set-save").click()
        expect(page.locator("#set-status")).to_contain_text("Saved", timeout=30_000)
        page.screenshot(path=str(artifacts_dir(tmp_path) / "settings.png"))
        page.get_by_role("tab", name="Chat").click()
        ask(page, "What is the annual budget of the DGST?")
        # answered in French, as set, whatever the question's language; and why it refused
        answer = last_answer(page)
        answer.get_by_text("Je n'ai pas trouvé cette information").wait_for(timeout=60_000)
        assert "Why:" in answer.inner_text()
    assert preferences.load(bot.settings).top_k == 3


def test_browser_model_chosen_in_settings_reports_its_loading(app_for: Any, tmp_path: Path) -> None:
    """Another answer model starts loading when saved, and Settings says how it went: here a
    file that is not there, which the page reports with what to do."""
    url, _ = app_for(ScriptedGenerator())
    missing = tmp_path / "models" / "missing.gguf"
    with browser_page() as page:
        page.goto(url)
        page.get_by_role("tab", name="Settings").click()
        model = page.locator("#set-model input")
        model.fill(str(missing))
        model.press("Enter")
        page.locator("#set-save").click()
        page.locator("#set-status").get_by_text("Saved").wait_for(timeout=30_000)
        status = page.locator("#set-model-status")
        status.get_by_text("could not be loaded").wait_for(timeout=60_000)
        assert "missing.gguf" in status.inner_text()


def test_browser_document_removed_is_gone_from_library_and_answers(
    app_for: Any, tmp_path: Path
) -> None:
    scripted = ScriptedGenerator()
    url, bot = app_for(scripted)
    notes = tmp_path / "notes.md"
    notes.write_text("# Rabat notes\n\nRabat is the capital of Morocco.")
    bot.ingest([notes])
    with browser_page() as page:
        page.goto(url)
        page.get_by_role("tab", name="Library").click()
        table = page.locator("#documents")
        table.get_by_text("Rabat notes").wait_for(timeout=30_000)
        page.locator("#doc-search textarea, #doc-search input").first.fill("rabat")
        expect(table).not_to_contain_text("hammouchi_washington", timeout=30_000)
        page.screenshot(path=str(artifacts_dir(tmp_path) / "library.png"), full_page=True)
        page.locator("#remove-choice input").click()
        page.get_by_role("option", name=re.compile("notes.md")).click()
        page.locator("#remove").click()
        page.locator("#remove-confirm").click()
        page.locator("#ingest-status").get_by_text("Removed 1 passages").wait_for(timeout=30_000)
        expect(table).not_to_contain_text("Rabat notes", timeout=30_000)
    assert all(h.chunk.title != "Rabat notes" for h in bot.search("capital of Morocco"))


def test_browser_pdf_citation_shows_its_page_with_the_quote(app_for: Any, tmp_path: Path) -> None:
    scripted = ScriptedGenerator()
    url, bot = app_for(scripted)
    pdf = write_pdf(
        tmp_path / "visit.pdf", ["Cover page.", "The delegation met William Burns at Langley."]
    )
    bot.ingest([pdf])
    n = number_of(bot, "Where was William Burns met?", "Langley")
    scripted.enqueue(f"The delegation met William Burns at Langley [{n}].")
    with browser_page() as page:
        page.goto(url)
        ask(page, "Where was William Burns met?")
        control = page.locator(f"#chat details.cite-{n} > summary").first
        control.wait_for(timeout=60_000)
        assert "visit · page 2" in control.inner_text()
        control.click()
        image = page.locator(f"#chat details.cite-{n} img").first
        image.wait_for(state="visible", timeout=10_000)
        assert image.get_attribute("alt") == "page 2 of visit"
        assert image.evaluate("i => i.naturalWidth") > 500  # the page, rendered
        page.locator(f"#chat details.cite-{n} mark").get_by_text("Langley").wait_for()
        page.screenshot(path=str(artifacts_dir(tmp_path) / "chat-pdf.png"), full_page=True)


def test_eight_threads_keep_their_turns_at_once(
    scripted_bot: Chatbot, scripted: ScriptedGenerator, tmp_path: Path
) -> None:
    """The chat's worker threads write conversations at once (WAL, one connection per
    call): none is lost."""
    scripted.enqueue(f"{NAMES} [{gold(scripted_bot)}].")
    answer = scripted_bot.ask(QUESTION)
    convs = Conversations(tmp_path / "c.sqlite3")
    made = [convs.create() for _ in range(8)]
    threads = [threading.Thread(target=convs.add, args=(c.id, answer)) for c in made]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(len(convs.answers(c.id)) == 1 for c in made)
