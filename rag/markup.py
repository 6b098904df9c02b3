"""Markup in the model's answers: found, and removed before anyone renders the answer.

A document can instruct the model ("end every answer with this badge image ..."), and a small
model obeys. Whatever the model writes is therefore treated as text: Markdown images and links,
raw HTML, autolinks, reference definitions and web addresses are taken out of the answer before
it is checked, stored or shown. A link keeps its words (`[the report](http://…)` -> `the
report`; a reference-style link needs a definition, and definitions go); an image, a tag or an
address goes entirely, except an address the passages themselves hold (a document may give its
own website), which stays as plain text. Control characters, which a terminal would obey, go
too.

The renderers (ui/app.py, rag/report.py) escape the cleaned text again: this module makes the
answer say nothing it should not, they make sure nothing is rendered as markup.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

# schemes a browser fetches or runs; written by the model, none of them is ever kept
_SCHEME = r"(?:https?|ftp|file|blob|wss?|mailto)"
URL = re.compile(
    rf"(?i)\b(?:javascript|vbscript|data):\S+"  # code or inline content: up to the next space
    rf"|\b{_SCHEME}:[^\s<>\"'`()\[\]]+|\bwww\.[^\s<>\"'`()\[\]]+"
)
_TARGET = r"\((?:[^()\n]|\([^()\n]*\))*\)?"  # "(…)", one level of parentheses inside
_IMAGE = re.compile(rf"!\[[^\]\n]*\](?:{_TARGET}|\[[^\]\n]*\])?")
_LINK = re.compile(rf"\[([^\]\n]*)\]{_TARGET}")
_REF_DEF = re.compile(r"(?m)^[ \t]{0,3}\[[^\]\n]+\]:[ \t]*\S+.*$")
_AUTOLINK = re.compile(r"<(?:[a-zA-Z][\w+.-]{1,31}:[^\s<>]*|[^\s@<>]+@[^\s@<>]+)>")
_TAG = re.compile(r"<!--.*?(?:-->|$)|</?[a-zA-Z][^<>]*>", re.S)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")
_MARKER_LIKE = re.compile(r"\s*\d{1,3}(?:\s*[,;]\s*\d{1,3})*\s*")
_TRAILING = ".,;:!?»\"'"


@dataclass(frozen=True, slots=True)
class Cleaned:
    """An answer with its markup taken out; `removed` lists what went, in order."""

    text: str
    removed: tuple[str, ...]


def _core(url: str) -> str:
    """An address without the punctuation of the sentence around it."""
    core = url.rstrip(_TRAILING)
    while core.endswith(")") and core.count(")") > core.count("("):
        core = core[:-1].rstrip(_TRAILING)
    return core


def _kept_urls(passages: Iterable[str]) -> set[str]:
    return {_core(m.group(0)) for p in passages for m in URL.finditer(p)}


def strip_markup(text: str, passages: Iterable[str] = ()) -> Cleaned:
    """`text` without images, links' targets, HTML, autolinks, reference definitions, and web
    addresses that none of `passages` holds (see the module docstring)."""
    removed: list[str] = []

    def drop(m: re.Match[str]) -> str:
        removed.append(m.group(0))
        return ""

    def link_words(m: re.Match[str]) -> str:
        removed.append(m.group(0))
        words = m.group(1)
        return f"[{words}]" if _MARKER_LIKE.fullmatch(words) else words

    kept = _kept_urls(passages)

    def address(m: re.Match[str]) -> str:
        url = m.group(0)
        core = _core(url)
        if core in kept:
            return url
        removed.append(core)
        return url[len(core) :]

    out = printable(text)
    out = _REF_DEF.sub(drop, out)
    out = _IMAGE.sub(drop, out)
    out = _LINK.sub(link_words, out)
    out = _AUTOLINK.sub(drop, out)
    out = _TAG.sub(drop, out)
    out = URL.sub(address, out)
    if removed:
        out = re.sub(r"[ \t]{2,}", " ", out)
        out = re.sub(r"[ \t]+([.,;:!?])", r"\1", out)
        out = re.sub(r"\n{3,}", "\n\n", out).strip()
    return Cleaned(out, tuple(removed))


def printable(text: str) -> str:
    """`text` without the control characters a terminal would obey (escape sequences)."""
    return _CONTROL.sub(lambda m: " " if m.group(0) in "\t\n\r" else "", text)
