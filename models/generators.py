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


class OpenAIGenerator:
    """Any OpenAI-compatible chat endpoint (llama.cpp's server, vLLM, Ollama) behind the
    Generator protocol, streamed with server-sent events. `base_url` ends in /v1."""

    def __init__(
        self,
        base_url: str,
        *,
        model: str = "",
        api_key: str = "",
        seed: int = 0,
        timeout: float = 600.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.name = f"openai:{self.base_url}" + (f"#{model}" if model else "")
        self.seed = seed
        self.timeout = timeout
        self.last_usage: dict[str, int] = {}
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def count_tokens(self, text: str) -> int:
        """An estimate (about 4 characters per token): the server's tokenizer is not at hand."""
        return max(1, len(text) // 4)

    def stream(
        self,
        messages: Sequence[dict[str, str]],
        *,
        max_tokens: int,
        stop: Sequence[str] = (),
        temperature: float = 0.0,
    ) -> Iterator[str]:
        import json

        import httpx

        body: dict[str, Any] = {
            "messages": list(messages),
            "max_tokens": max_tokens,
            "temperature": temperature,
            "seed": self.seed,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if self.model:
            body["model"] = self.model
        if stop:
            body["stop"] = list(stop)
        url = f"{self.base_url}/chat/completions"
        completion = 0
        usage: dict[str, int] = {}
        try:
            with httpx.stream(
                "POST", url, json=body, headers=self._headers, timeout=self.timeout
            ) as response:
                if response.status_code != 200:
                    detail = response.read().decode("utf-8", "replace")[:300]
                    raise GenerationError(
                        f"The model server at {url} answered HTTP {response.status_code}: "
                        f"{detail}. Check --llm and the API key (RAGCHAT_LLM_API_KEY)."
                    )
                for line in response.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    event = json.loads(data)
                    usage = event.get("usage") or usage
                    for choice in event.get("choices") or []:
                        text = (choice.get("delta") or {}).get("content")
                        if text:
                            completion += 1
                            yield text
        except httpx.HTTPError as e:
            raise GenerationError(
                f"Cannot reach the model server at {url} ({e}). Start it, or check --llm."
            ) from e
        if usage:
            self.last_usage = {
                "prompt_tokens": int(usage.get("prompt_tokens", 0)),
                "completion_tokens": int(usage.get("completion_tokens", completion)),
            }
        else:  # a server that reports no usage when streaming (llama-cpp-python's)
            prompt = sum(self.count_tokens(m.get("content", "")) for m in messages)
            self.last_usage = {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "estimated": 1,
            }
