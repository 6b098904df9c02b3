"""Generators: chat messages to streamed text with llama-cpp-python (the only module importing it).

The GGUF file is found by models/weights.py and loaded on first use, then kept loaded; one
generation runs at a time per loaded model (llama.cpp contexts are not thread-safe), and
llama-cpp-python reuses the evaluated prompt prefix between calls.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from rag.errors import GenerationError, ModelNotFound

log = logging.getLogger(__name__)


class LlamaCppGenerator:
    """A local GGUF chat model behind the Generator protocol."""

    def __init__(
        self,
        model_path: str | Path,
        *,
        name: str | None = None,
        context_window: int = 4096,
        threads: int = 0,
        seed: int = 0,
    ) -> None:
        self.model_path = Path(model_path)
        self.name = name or self.model_path.stem
        self.context_window = context_window
        self.threads = threads or (os.cpu_count() or 1)
        self.seed = seed
        self.last_usage: dict[str, int] = {}
        self._llm: Any = None
        self._load_lock = threading.Lock()
        self._run_lock = threading.Lock()

    @property
    def llm(self) -> Any:
        with self._load_lock:
            if self._llm is None:
                self._llm = self._load()
            return self._llm

    @property
    def loaded(self) -> bool:
        return self._llm is not None

    def _load(self) -> Any:
        try:
            from llama_cpp import Llama
        except ImportError as e:
            raise ModelNotFound(
                "llama-cpp-python is not installed: `pip install llama-cpp-python`."
            ) from e
        if not self.model_path.is_file():
            raise ModelNotFound(f"No GGUF file at {self.model_path}.")
        log.info("loading %s (%d threads)", self.model_path, self.threads)
        try:
            return Llama(
                model_path=str(self.model_path),
                n_ctx=self.context_window,
                n_threads=self.threads,
                n_threads_batch=self.threads,
                seed=self.seed,
                verbose=False,
            )
        except Exception as e:  # llama.cpp raises ValueError/RuntimeError on bad files
            raise ModelNotFound(f"Could not load {self.model_path} as a GGUF model ({e}).") from e

    def count_tokens(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def stream(
        self,
        messages: Sequence[dict[str, str]],
        *,
        max_tokens: int,
        stop: Sequence[str] = (),
        temperature: float = 0.0,
    ) -> Iterator[str]:
        llm = self.llm
        with self._run_lock:
            # Evaluate every prompt from scratch. With llama-cpp-python 0.3.36 reusing the cached
            # prefix of an earlier prompt changed the answer: asked twice, the Qwen default
            # answered the Hammouchi question right, then wrong (temperature 0), and still wrong
            # with the last 32 or 300 prompt tokens re-evaluated; only a full evaluation gave
            # the first answer again. Correct, order-independent answers come first; prefix
            # reuse is worth ~15 s of prompt evaluation and is to be revisited with a fix.
            llm.reset()
            completion = 0
            try:
                for part in llm.create_chat_completion(
                    messages=list(messages),
                    max_tokens=max_tokens,
                    stop=list(stop) or None,
                    temperature=temperature,
                    seed=self.seed,
                    stream=True,
                ):
                    text = part["choices"][0]["delta"].get("content")
                    if text:
                        completion += 1
                        yield text
            except ValueError as e:  # prompt longer than the context window
                raise GenerationError(
                    f"The model could not answer ({e}). Lower top_k or chunk_size, or raise "
                    "context_window."
                ) from e
            self.last_usage = {
                "prompt_tokens": max(0, llm.n_tokens - completion),
                "completion_tokens": completion,
            }
