"""Settings: the one configuration object of ragchat.

The library receives a Settings; only the edges (CLI, UI) call `Settings.from_env`, which applies
`RAGCHAT_*` environment variables. Precedence: CLI flag > environment variable > default.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag.errors import ConfigError


def default_data_dir() -> str:
    """Where ragchat keeps its store and assembled model files unless told otherwise."""
    import platformdirs

    return platformdirs.user_data_dir("ragchat", appauthor=False)


# Settings.answer_language: the question's language, or one with its own refusal sentence
ANSWER_LANGUAGES = ("auto", "en", "fr", "es", "de")
RETRIEVAL_MODES = ("hybrid", "dense", "keyword")


@dataclass(frozen=True, slots=True)
class Settings:
    # where the store and assembled model weights live (default: the user's data dir)
    data_dir: str = field(default_factory=default_data_dir)
    # the Chroma store: a directory path; empty means <data_dir>/store
    store: str = ""
    # where model files are assembled and built; empty means <data_dir>/models
    models: str = ""
    # Chroma collection holding the chunks
    collection: str = "ragchat"
    # sentence-transformers model: a packaged name (see models/weights.py), a path, or a hub id
    embedder: str = "multilingual-e5-small"
    # how passages are found: "hybrid" (embeddings + BM25 keywords, fused), "dense" or "keyword"
    retrieval: str = "hybrid"
    # cross-encoder that re-orders the retrieved passages: a local folder or hub id; "" = off
    reranker: str = ""
    # answer model: a packaged name, a path to a .gguf file, "hf:REPO/FILE.gguf", or
    # "openai:http://host:port/v1[#model]" for an OpenAI-compatible server
    llm: str = "qwen2.5-coder-1.5b-instruct"
    # API key for an "openai:URL" model server (never written to evaluation reports)
    llm_api_key: str = field(default="", repr=False)
    # whether an "openai:URL" model server is sent a GBNF grammar that holds a quoted reply to
    # the sentence ids it was shown: "auto" (sent; not again once the server refuses it),
    # "on" (a server that refuses it is an error), "off" (a plain prompt, read leniently)
    llm_grammar: str = "auto"
    # passages retrieved and shown to the model
    top_k: int = 5
    # the language answers are written in: "auto" (the question's), or a code: en, fr, es, de
    answer_language: str = "auto"
    # join retrieved chunks of one document that overlap (neighbours) into one passage, up to
    # two chunks' length
    merge_neighbours: bool = True
    # chunk length and overlap between neighbouring chunks, in characters
    chunk_size: int = 1000
    chunk_overlap: int = 200
    # what the model reads: "sentences" (the sentences of the retrieved passages that bear on
    # the question, under evidence_tokens), "passages" (the retrieved passages whole), or
    # "auto": a collection of at most collection_tokens is shown whole (the same prompt prefix
    # for every question, computed once), sentences otherwise (rag/evidence.py)
    evidence: str = "auto"
    evidence_tokens: int = 200
    # name the three evidence sentences closest to the question (by the embedder) after it;
    # off: on piaf_fr_mini it gained gold answers but cost citation precision and doubled the
    # time (docs/results.md, Answers)
    evidence_hint: bool = False
    collection_tokens: int = 900
    # how the model answers: "quote" (it names the evidence sentences that state the answer,
    # held to them by a grammar, then answers), "extract" (it answers in a few words; the
    # engine finds the sentences that hold them), "free" (text with [n] markers, checked
    # after), or "auto": extract when a small collection is read whole, quote otherwise
    # (docs/results.md, Answers)
    answer_form: str = "auto"
    # how many sentences the model reads again right before answering: the closest to the
    # question of those chosen (quote_choice); 0: as measured best, 1 sentence the engine
    # chose, 2 of those the model named (docs/results.md, Answers)
    quote_sentences: int = 0
    # who chooses the sentences an answer quotes: "model" (it names them, held by a grammar to
    # the shown ids), "closest" (the engine quotes those closest to the question,
    # rag/evidence.py `closest`; the model may still reply "none"), or "auto": the model when
    # it reads passages or a collection whole, the engine when it reads selected sentences
    quote_choice: str = "auto"
    # whether the quoted sentences are written into the reply for the model to read again
    # before it answers: "on", "off" (it answers right after the ids), or "auto": on when the
    # model chose its quotes, off when the engine did (each measured better there:
    # docs/results.md, Answers)
    quote_echo: str = "auto"
    # a quoted answer to a question asked in another language than its passage's: "on" (the
    # model answers in the passage's own words, then translates them, shown in brackets:
    # "productos de primera necesidad (essentials)"), "off" (in the question's language
    # only); a small model copies words better than it translates them (docs/results.md)
    source_words: str = "on"
    # a quoted answer must be a run of words copied from its quoted sentences (a grammar holds
    # the model to them); off: it measured fewer gold answers (docs/results.md, Answers)
    answer_span: bool = False
    # memory for the model's KV states of evidence blocks reused across questions, in MiB
    kv_cache_mb: int = 512
    # disk for the KV states that recur (the system prompt, a small collection read whole),
    # kept in <data_dir>/kv for the next process, in MiB; 0 = off
    kv_disk_mb: int = 256
    # sampling temperature of the answer (0 = deterministic)
    temperature: float = 0.0
    # most tokens an answer may have
    max_tokens: int = 512
    # the model's context window, in tokens
    context_window: int = 4096
    # CPU threads for the model; 0 = all cores
    threads: int = 0
    # seed of the model's sampler
    seed: int = 0
    # seconds an ingest or delete waits while another process writes to the same store
    lock_timeout: float = 60.0
    # refuse without asking the model when the best passage's similarity to the question (the
    # embedder's cosine) is below this; -1 = the value calibrated for the embedder
    # (rag/support.py: multilingual-e5-small's; none for others), 0 = never
    min_relevance: float = -1.0
    # refuse an answer when the model's probability of having replied none / NOT_FOUND instead
    # was at least this (read from its first token); 0 = never, -1 (the default) = the value
    # calibrated for the model and answer form (rag/refusal.py: MODELS; none for other models)
    max_doubt: float = -1.0
    # check each answer sentence against the passages, fix its [n] markers, flag unsupported
    # sentences and refuse answers that no passage supports (rag/support.py)
    check_citations: bool = True
    # translate a question into the documents' other languages with the model (a short call
    # per language, ~3 s on 2 cores) so that hybrid search's keyword index can match them too
    translate: bool = False
    # ask the model, in a second short prompt, whether the cited passages state the answer, and
    # refuse when its probability of "yes" is below verify_threshold (rag/verify.py; ~5 s per
    # answer on 2 cores; refuses some correct answers with the wrong ones, docs/results.md)
    verify_answers: bool = False
    verify_threshold: float = 0.5

    def __post_init__(self) -> None:
        if self.retrieval not in RETRIEVAL_MODES:
            raise ConfigError(
                f"retrieval must be {', '.join(RETRIEVAL_MODES[:-1])} or {RETRIEVAL_MODES[-1]}, "
                f"got {self.retrieval!r}."
            )
        if self.answer_language not in ANSWER_LANGUAGES:
            raise ConfigError(
                f"answer_language must be one of {', '.join(ANSWER_LANGUAGES)}, got "
                f"{self.answer_language!r}."
            )
        if self.evidence not in ("auto", "sentences", "passages"):
            raise ConfigError(
                f"evidence must be auto, sentences or passages, got {self.evidence!r}."
            )
        if self.llm_grammar not in ("auto", "on", "off"):
            raise ConfigError(f"llm_grammar must be auto, on or off, got {self.llm_grammar!r}.")
        if self.answer_form not in ("auto", "quote", "extract", "free"):
            raise ConfigError(
                f"answer_form must be auto, quote, extract or free, got {self.answer_form!r}."
            )
        if self.quote_choice not in ("auto", "model", "closest"):
            raise ConfigError(
                f"quote_choice must be auto, model or closest, got {self.quote_choice!r}."
            )
        if self.quote_echo not in ("auto", "on", "off"):
            raise ConfigError(f"quote_echo must be auto, on or off, got {self.quote_echo!r}.")
        if self.source_words not in ("on", "off"):
            raise ConfigError(f"source_words must be on or off, got {self.source_words!r}.")
        if self.quote_sentences < 0:
            raise ConfigError("quote_sentences must be 0 (as measured best) or more.")
        if (
            self.evidence_tokens < 50
            or self.collection_tokens < 0
            or self.kv_cache_mb < 0
            or self.kv_disk_mb < 0
        ):
            raise ConfigError(
                "evidence_tokens must be at least 50; collection_tokens, kv_cache_mb and "
                "kv_disk_mb at least 0."
            )
        if self.top_k < 1:
            raise ConfigError(f"top_k must be at least 1, got {self.top_k}.")
        if self.chunk_size < 50:
            raise ConfigError(f"chunk_size must be at least 50 characters, got {self.chunk_size}.")
        if not 0 <= self.chunk_overlap < self.chunk_size:
            raise ConfigError(
                f"chunk_overlap ({self.chunk_overlap}) must be >= 0 and smaller than "
                f"chunk_size ({self.chunk_size})."
            )
        if self.temperature < 0:
            raise ConfigError(f"temperature must be >= 0, got {self.temperature}.")
        if self.max_tokens < 1 or self.context_window < 256:
            raise ConfigError("max_tokens must be >= 1 and context_window >= 256.")
        if self.threads < 0:
            raise ConfigError(f"threads must be >= 0 (0 = all cores), got {self.threads}.")
        if self.lock_timeout < 0:
            raise ConfigError(f"lock_timeout must be >= 0 seconds, got {self.lock_timeout}.")
        if self.min_relevance != -1 and not 0 <= self.min_relevance <= 1:
            raise ConfigError(
                f"min_relevance must be between 0 and 1, or -1 for the embedder's calibrated "
                f"value; got {self.min_relevance}."
            )
        if self.max_doubt != -1 and not 0 <= self.max_doubt <= 1:
            raise ConfigError(
                f"max_doubt must be between 0 and 1, or -1 for the model's calibrated value; "
                f"got {self.max_doubt}."
            )
        if not 0 <= self.verify_threshold <= 1:
            raise ConfigError(
                f"verify_threshold must be between 0 and 1, got {self.verify_threshold}."
            )
        if not self.data_dir:
            raise ConfigError("data_dir must not be empty.")

    @property
    def store_path(self) -> str:
        """The store location actually used."""
        return self.store or str(Path(self.data_dir) / "store")

    @property
    def merge_chars(self) -> int:
        """The longest passage that joining overlapping neighbours may make (two chunks'
        length); 0 when `merge_neighbours` is off."""
        return 2 * self.chunk_size if self.merge_neighbours else 0

    @property
    def models_dir(self) -> Path:
        """Where model files are assembled and built."""
        return Path(self.models) if self.models else Path(self.data_dir) / "models"

    @property
    def kv_dir(self) -> Path:
        """Where the answer model's recurring KV states are kept between processes."""
        return Path(self.data_dir) / "kv"

    def replace(self, **changes: Any) -> Settings:
        """A copy with some fields changed; None values are ignored (unset CLI flags)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then `RAGCHAT_<FIELD>` variables, then `overrides` (None = not given)."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(f"RAGCHAT_{f.name.upper()}")
            if raw is None or raw == "":
                continue
            kind = type(f.default) if f.default is not dataclasses.MISSING else str
            try:
                values[f.name] = _parse_bool(raw) if kind is bool else kind(raw)
            except ValueError as e:
                raise ConfigError(
                    f"RAGCHAT_{f.name.upper()}={raw!r} is not a valid {kind.__name__}."
                ) from e
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def _parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)
