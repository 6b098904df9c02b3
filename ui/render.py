"""What the chat shows of an answer: its text with each `[n]` a control that opens the cited
passage inline, the sources under it, the reasons of a refusal, and its time and prompt size.

Everything taken from a document or the model is escaped: shown as written, never a tag, link
or image. The only markup is ragchat's own: the answer is one HTML block (so Markdown reads
nothing in it) of `<details class="cite">` controls, each holding the passage with its quotes in
`<mark>` and, for a PDF, the page rendered with the quote's place marked (ui/pages.py). A
`<summary>` is reachable by keyboard and opened with Enter; its text says which source it opens.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence
from typing import Any

from rag.citations import MARKER, marker_numbers
from rag.refusal import explain
from rag.support import with_markers
from rag.types import Answer, Chunk, Citation
from ui.pages import page_image

# every character Markdown, GFM autolinks (`:` `/` `@` `www.`), HTML or LaTeX (`$`) reads
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+\-.!|~&:/@$=\"'])")

# the page's own styles for the controls above (a <style> block of the page, not of a message)
CSS = """
.answer details.cite { display: inline; }
.answer details.cite > summary { display: inline; cursor: pointer; color: var(--color-accent);
  font-weight: 600; list-style: none; }
.answer details.cite > summary::-webkit-details-marker { display: none; }
.answer details.cite > summary:focus-visible { outline: 2px solid var(--color-accent); }
.answer details.cite[open] > .cite-panel { display: block; margin: 0.5em 0; padding: 0.75em;
  border: 1px solid var(--border-color-primary); border-radius: 8px;
  background: var(--background-fill-secondary); font-size: 0.92em; }
.answer .cite-panel img { max-width: 100%; border: 1px solid var(--border-color-primary);
  margin-top: 0.5em; }
.answer .cite-head { display: block; font-weight: 600; margin-bottom: 0.4em; }
.answer .unsupported { opacity: 0.8; }
.answer-meta, .answer-reasons { display: block; margin-top: 0.6em; font-size: 0.85em;
  opacity: 0.75; }
.visually-hidden { position: absolute; width: 1px; height: 1px; overflow: hidden;
  clip: rect(0 0 0 0); white-space: nowrap; }
#documents th, #documents td { white-space: nowrap; }
"""


def escape(text: str) -> str:
    """Text from a document or the model, made inert for the chat's Markdown and HTML
    rendering: shown as written, never a link, an image or a tag."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text).replace("\n", "  \n")


def around_markers(text: str, outside: Callable[[str], str], marker: Callable[[str], str]) -> str:
    """`text` with `outside` applied to what lies between its `[n]` markers and `marker` to
    each marker (`[1][2]` is one)."""
    parts, last = [], 0
    for m in MARKER.finditer(text):
        parts += [outside(text[last : m.start()]), marker(m.group(0))]
        last = m.end()
    return "".join([*parts, outside(text[last:])])


def escape_answer(text: str) -> str:
    """The model's text made inert like `escape`, its `[n]` citation markers kept as such."""
    return around_markers(text, escape, lambda m: m)


def escape_html(text: str) -> str:
    """Text for a place that renders HTML (Gradio's warnings, the answer block) shown as
    written; `$` too (the chat reads `$$` as LaTeX), and on one line (a blank line would end
    the HTML block and let Markdown read what follows)."""
    escaped = html.escape(text, quote=True).replace("$", "&#36;")
    return re.sub(r"\n+", "<br>", escaped.replace("\r", ""))


def _place(chunk: Chunk) -> str:
    page = f" · page {chunk.page}" if chunk.page else ""
    return f"{chunk.title}{page}"


def _marked(chunk: Chunk, citations: Sequence[Citation]) -> str:
    """The passage, escaped, its quotes in <mark>."""
    spans = sorted({(c.start, c.end) for c in citations if 0 <= c.start < c.end <= len(chunk.text)})
    parts, last = [], 0
    for start, end in spans:
        if start < last:
            continue
        parts += [
            escape_html(chunk.text[last:start]),
            f"<mark>{escape_html(chunk.text[start:end])}</mark>",
        ]
        last = end
    return "".join([*parts, escape_html(chunk.text[last:])])


def citation_control(n: int, answer: Answer, pages: bool = True) -> str:
    """The `[n]` of an answer as a control opening passage n: its document and page, its
    relevance, the passage with the quote highlighted, and a PDF's page rendered."""
    cited = [c for c in answer.citations if c.n == n]
    if not cited:
        return f"[{n}]"
    chunk = cited[0].chunk
    hit = answer.hits[n - 1] if 0 < n <= len(answer.hits) else None
    relevance = (
        f" · relevance {hit.similarity:.2f}"
        if hit is not None and hit.similarity is not None
        else ""
    )
    image = ""
    if pages and chunk.page and chunk.source.lower().endswith(".pdf"):
        uri = page_image(chunk.source, chunk.page, cited[0].quote)
        if uri:
            image = f'<img src="{uri}" alt="page {chunk.page} of {escape_html(chunk.title)}">'
    head = f"[{n}] {escape_html(_place(chunk))}{relevance}"
    return (
        f'<details class="cite cite-{n}"><summary title="Open source {n}: '
        f'{escape_html(_place(chunk))}">[{n}]<span class="visually-hidden"> open source {n}: '
        f"{escape_html(_place(chunk))}</span></summary>"
        f'<span class="cite-panel"><span class="cite-head">{head}</span>'
        f"{_marked(chunk, cited)}{image}</span></details>"
    )


def _with_controls(text: str, answer: Answer, pages: bool) -> str:
    return around_markers(
        text,
        escape_html,
        lambda m: "".join(citation_control(n, answer, pages) for n in marker_numbers(m)),
    )


def meta_line(answer: Answer) -> str:
    """The answer's time, its first words' time and its prompt's size, in words."""
    timings, usage = answer.timings, answer.usage
    parts = []
    if "total" in timings:
        parts.append(f"{timings['total']:.1f} s")
    if "first_token" in timings and not answer.refused:
        parts.append(f"first words after {timings['first_token']:.1f} s")
    if usage.get("prompt_tokens"):
        reused = usage.get("cached_prompt_tokens") or 0
        parts.append(
            f"prompt {usage['prompt_tokens']} tokens" + (f" ({reused} reused)" if reused else "")
        )
    return " · ".join(parts)


def answer_html(answer: Answer, pages: bool = True) -> str:
    """The answer as shown, one HTML block (see the module's docstring): sentences no passage
    supports marked, a refusal's reasons, a rewritten follow-up's standalone question, and the
    time and prompt size."""
    if answer.sentences and not answer.refused:
        parts = [
            _with_controls(with_markers(s.text, s.citations), answer, pages)
            if s.supported
            else f'<span class="unsupported">⚠️ <em>{escape_html(s.text)}</em> '
            "(not supported by the passages)</span>"
            for s in answer.sentences
        ]
        body = " ".join(parts)
    else:
        body = _with_controls(answer.text, answer, pages)
    reasons = explain(answer.signals)
    if reasons:
        label = "Why: " if answer.refused else "Note: "
        body += (
            f'<span class="answer-reasons">{label}'
            + " ".join(escape_html(r) for r in reasons)
            + "</span>"
        )
    if answer.rewritten and answer.rewritten != answer.question:
        body = f"<em>Searched for:</em> {escape_html(answer.rewritten)}<br>{body}"
    meta = meta_line(answer)
    if meta:
        body += f'<span class="answer-meta">{escape_html(meta)}</span>'
    return f'<div class="answer">{body}</div>'


def source_message(citation: Citation) -> dict[str, Any]:
    """One collapsible chat entry showing the cited passage, the quote highlighted."""
    chunk = citation.chunk
    body = (
        escape(chunk.text[: citation.start])
        + "<mark>"
        + escape(citation.quote)
        + "</mark>"
        + escape(chunk.text[citation.end :])
    )
    return {
        "role": "assistant",
        "content": body,
        "metadata": {"title": f"[{citation.n}] {escape(_place(chunk))}", "status": "done"},
    }


def passage_message(n: int, chunk: Chunk, label: str = "") -> dict[str, Any]:
    """A collapsible chat entry showing a passage that was not cited (a refusal's closest)."""
    return {
        "role": "assistant",
        "content": escape(chunk.text),
        "metadata": {"title": f"{label}{n}. {escape(_place(chunk))}", "status": "done"},
    }


def answer_messages(answer: Answer) -> list[dict[str, Any]]:
    """The entries below an answer: one per cited passage, or a refusal's closest passages."""
    if answer.refused:
        return [passage_message(h.rank, h.chunk, "Closest passage ") for h in answer.hits[:3]]
    first = {c.n: c for c in reversed(answer.citations)}
    return [source_message(first[n]) for n in sorted(first)]


def shown(answers: Sequence[Answer]) -> list[dict[str, Any]]:
    """A conversation's answers as the chat's messages (a resumed conversation)."""
    history: list[dict[str, Any]] = []
    for answer in answers:
        history += [
            {"role": "user", "content": escape(answer.question)},
            {"role": "assistant", "content": answer_html(answer)},
            *answer_messages(answer),
        ]
    return history
