"""What a person sets from the chat's Settings panel: the answer model, top_k, the retrieval
mode and the answer language, kept per user in `<data_dir>/ui-settings.json` and applied to
the next answer. Values are checked by Settings itself, whose message says what to do.

The model is one of: the one the chat was started with, a .gguf file in the models folder, or
an OpenAI-compatible server (`openai:http://host:port/v1`). Another model is a Chatbot of its
own that shares the store and the embedder with the first (ui/app.py keeps one per model)."""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from pathlib import Path
from typing import Any

from rag.config import ANSWER_LANGUAGES, RETRIEVAL_MODES, Settings
from rag.errors import ConfigError

FIELDS = ("llm", "top_k", "retrieval", "answer_language")
_lock = threading.Lock()


@dataclasses.dataclass(frozen=True, slots=True)
class Preferences:
    llm: str
    top_k: int
    retrieval: str
    answer_language: str

    @classmethod
    def of(cls, settings: Settings) -> Preferences:
        return cls(**{f: getattr(settings, f) for f in FIELDS})

    def checked(self, settings: Settings) -> Preferences:
        """These values, or ConfigError saying which one is wrong and what it can be."""
        if self.retrieval not in RETRIEVAL_MODES:
            raise ConfigError(f"Retrieval must be one of {', '.join(RETRIEVAL_MODES)}.")
        if self.answer_language not in ANSWER_LANGUAGES:
            raise ConfigError(f"Answer language must be one of {', '.join(ANSWER_LANGUAGES)}.")
        if not str(self.llm).strip():
            raise ConfigError("Choose an answer model.")
        try:
            top_k = int(self.top_k)
        except (TypeError, ValueError):
            raise ConfigError("Passages (top_k) must be a whole number, 1 or more.") from None
        if not 1 <= top_k <= 50:
            raise ConfigError("Passages (top_k) must be between 1 and 50.")
        dataclasses.replace(settings, top_k=top_k, retrieval=self.retrieval)  # Settings' checks
        return dataclasses.replace(self, top_k=top_k, llm=str(self.llm).strip())


def models(settings: Settings, started: str) -> list[str]:
    """The answer models offered: the one started with, then the .gguf files of the models
    folder (an OpenAI-compatible server is typed in)."""
    found = [started]
    folder = settings.models_dir
    if folder.is_dir():
        found += sorted(str(p) for p in folder.rglob("*.gguf") if p.is_file())
    return list(dict.fromkeys(found))


def _path(settings: Settings) -> Path:
    return Path(settings.data_dir) / "ui-settings.json"


def load(settings: Settings, user: str = "") -> Preferences:
    """The user's saved preferences, over the chat's own settings (an unreadable or invalid
    file is ignored: the defaults are used)."""
    base = Preferences.of(settings)
    try:
        saved = json.loads(_path(settings).read_text(encoding="utf-8")).get(user) or {}
        return dataclasses.replace(base, **{k: saved[k] for k in FIELDS if k in saved}).checked(
            settings
        )
    except (OSError, ValueError, TypeError, AttributeError, ConfigError):
        return base


def save(settings: Settings, preferences: Preferences, user: str = "") -> None:
    path = _path(settings)
    with _lock:
        try:
            everyone: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(everyone, dict):
                everyone = {}
        except (OSError, ValueError):
            everyone = {}
        everyone[user] = dataclasses.asdict(preferences)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps(everyone, indent=2), encoding="utf-8")
        os.replace(partial, path)
