"""Generators: chat messages to streamed text with llama-cpp-python (the only module importing it).

The GGUF file is found by models/weights.py and loaded on first use, then kept loaded; one
generation runs at a time per loaded model (llama.cpp contexts are not thread-safe).

The fixed prompt prefix (the chat template up to the end of the system message) is evaluated
once, on its own, and its KV cache kept for the next prompt with the same system message; the
KV caches of the last few system messages are kept aside (llama.cpp's sequence state, a few
MB each), so that a short call with another one (translating or rewriting the question)
does not cost the answer its cache. A prefix is always evaluated alone, and the rest of the
prompt always starts right after it, so an answer does not depend on which questions came
before: llama-cpp-python's own reuse of the longest cached prefix does (the split point moves,
and with it the floating-point rounding).
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from models.kvcache import BlockCache, DiskStates, clear_states
from rag.errors import GenerationError, ModelNotFound

log = logging.getLogger(__name__)

_KEPT_PREFIXES = 4  # system prompts whose KV cache is kept aside, the least recently used dropped


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
        kv_cache_mb: int = 512,
        kv_dir: str | Path | None = None,
        kv_disk_mb: int = 256,
    ) -> None:
        self.model_path = Path(model_path)
        self.name = name or self.model_path.stem
        self.context_window = context_window
        self.threads = threads or (os.cpu_count() or 1)
        self.seed = seed
        self.last_usage: dict[str, int] = {}
        self._llm: Any = None
        # the GGUF chat template, rendering (a system message alone, a whole prompt); None when
        # the model's chat format is not its own template
        self._templates: tuple[Any, Any] | None = None
        self._first_logprobs: Any = None  # log-probabilities of the last reply's first token
        self._kept: OrderedDict[tuple[int, ...], Any] = OrderedDict()  # prefix -> KV state
        self.blocks = BlockCache(kv_cache_mb * 2**20)  # KV states of evidence prompts
        # where states that recur are kept for the next process (a folder per model file)
        self.kv_dir = Path(kv_dir) if kv_dir and kv_disk_mb > 0 else None
        self.kv_disk_mb = kv_disk_mb
        self._load_lock = threading.Lock()
        # held while a reply is generated, across its yields: a plain Lock, which the thread
        # that finishes the reply may release (Gradio runs each step of a streamed answer in
        # a worker thread of its own; an RLock then stayed held and every later answer hung)
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
            llm = Llama(
                model_path=str(self.model_path),
                n_ctx=self.context_window,
                n_threads=self.threads,
                n_threads_batch=self.threads,
                seed=self.seed,
                verbose=False,
            )
        except Exception as e:  # llama.cpp raises ValueError/RuntimeError on bad files
            raise ModelNotFound(f"Could not load {self.model_path} as a GGUF model ({e}).") from e
        template = llm.metadata.get("tokenizer.chat_template")
        if template and llm.chat_format == "chat_template.default":
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            eos, bos = llm.token_eos(), llm.token_bos()
            # as Llama builds its own chat handler from the template
            eos_token = llm._model.token_get_text(eos) if eos != -1 else ""
            bos_token = llm._model.token_get_text(bos) if bos != -1 else ""
            alone, whole = (
                Jinja2ChatFormatter(
                    template=template,
                    eos_token=eos_token,
                    bos_token=bos_token,
                    add_generation_prompt=generation,
                )
                for generation in (False, True)
            )
            self._templates = (alone, whole)
        if self.kv_dir is not None:
            folder = self.kv_dir / _fingerprint(self.model_path, self.context_window)
            self.blocks.disk = DiskStates(folder, self.kv_disk_mb * 2**20)
        return llm

    def _prefix_tokens(
        self, llm: Any, messages: Sequence[dict[str, str]]
    ) -> tuple[list[int], int | None]:
        """The tokens of the chat template up to the end of the system message, as they begin
        the whole prompt: the part that is the same for every question; and the whole prompt's
        length in tokens. Empty and None when the model's chat format is not its GGUF
        template; empty when there is no system message."""
        if self._templates is None:
            return [], None
        alone, whole = self._templates

        def tokens(formatter: Any, turns: Sequence[dict[str, str]]) -> list[int]:
            rendered = formatter(messages=[dict(m) for m in turns])
            add_bos = not rendered.added_special
            return llm.tokenize(rendered.prompt.encode("utf-8"), add_bos=add_bos, special=True)

        prompt = tokens(whole, messages)
        if not messages or messages[0].get("role") != "system":
            return [], len(prompt)
        system = tokens(alone, messages[:1])
        n = 0
        while n < min(len(system), len(prompt)) and system[n] == prompt[n]:
            n += 1
        return system[:n], len(prompt)

    def _pin_prefix(self, llm: Any, prefix: list[int]) -> int:
        """Leave exactly `prefix` in the model's KV cache, evaluated on its own (reused when it
        is there, or restored when it was kept aside); the prompt's evaluation then starts
        right after it. Returns the number of tokens reused (0 when it was evaluated)."""
        n = len(prefix)
        if n and llm.n_tokens >= n and list(llm.input_ids[:n]) == prefix:
            llm.n_tokens = n  # generate() keeps these n and evaluates the rest after them
            return n
        key = tuple(prefix)
        if key in self._kept and self._restore(llm, prefix, self._kept[key]):
            self._kept.move_to_end(key)
            return n
        llm.reset()
        if n:
            llm.eval(prefix)
            self._keep(llm, key)
        return 0

    def _keep(self, llm: Any, key: tuple[int, ...]) -> None:
        """Copy the KV cache of the prefix just evaluated aside."""
        import llama_cpp

        size = llama_cpp.llama_state_seq_get_size(llm._ctx.ctx, 0)
        state = (ctypes.c_uint8 * size)()
        if llama_cpp.llama_state_seq_get_data(llm._ctx.ctx, state, size, 0) != size:
            return
        self._kept[key] = state
        while len(self._kept) > _KEPT_PREFIXES:
            self._kept.popitem(last=False)

    def _restore(self, llm: Any, prefix: list[int], state: Any) -> bool:
        """Put a kept-aside prefix back as the model's whole KV cache."""
        import llama_cpp

        llm._ctx.kv_cache_seq_rm(0, 0, -1)
        if llama_cpp.llama_state_seq_set_data(llm._ctx.ctx, state, len(state), 0) == 0:
            llm.reset()
            return False
        llm.input_ids[: len(prefix)] = prefix
        llm.n_tokens = len(prefix)
        return True

    def choose(
        self, messages: Sequence[dict[str, str]], options: Sequence[str]
    ) -> dict[str, float]:
        """The probability of each option (its first token, also capitalised) being the start
        of the reply, normalised over the options: a yes/no answer with its confidence. Empty
        when the first token's distribution could not be read (a reply whose first character
        spans two tokens)."""
        import numpy as np

        with self._run_lock:
            for _ in self._stream(messages, max_tokens=1):
                pass
            scores = {o: self._first_logprob((o, o.capitalize())) for o in options}
        known = {o: v for o, v in scores.items() if v is not None}
        if len(known) < len(scores):
            return {}
        top = max(known.values())
        weights = {o: float(np.exp(v - top)) for o, v in known.items()}
        total = sum(weights.values())
        return {o: w / total for o, w in weights.items()}

    def first_token_probability(self, text: str) -> float | None:
        """The probability that the last reply started with `text`'s first token, read from
        the model's distribution over its first token; None when it was not recorded."""
        import numpy as np

        logprob = self._first_logprob((text,))
        return None if logprob is None else float(np.exp(logprob))

    def _first_logprob(self, words: Sequence[str]) -> float | None:
        """The log-probability that the last reply began with the first token of any of
        `words`."""
        import numpy as np

        if self._first_logprobs is None:
            return None
        llm = self.llm
        ids = {llm.tokenize(w.encode("utf-8"), add_bos=False, special=False)[0] for w in words}
        return float(np.logaddexp.reduce([float(self._first_logprobs[i]) for i in ids]))

    @staticmethod
    def _logprobs(llm: Any) -> Any:
        import numpy as np

        logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),))
        logits = logits.astype(np.float64)
        return logits - np.logaddexp.reduce(logits)

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
        with self._run_lock:
            yield from self._stream(
                messages, max_tokens=max_tokens, stop=stop, temperature=temperature
            )

    def _stream(
        self,
        messages: Sequence[dict[str, str]],
        *,
        max_tokens: int,
        stop: Sequence[str] = (),
        temperature: float = 0.0,
    ) -> Iterator[str]:
        """`stream`, the run lock held by the caller."""
        llm = self.llm
        if self.blocks.holds_live:  # evaluated in blocks: not this prompt's prefix split
            llm.n_tokens = 0
            self.blocks.forget_live()
        prefix, prompt_size = self._prefix_tokens(llm, messages)
        cached = self._pin_prefix(llm, prefix)
        completion, first, first_at = 0, None, -1
        try:
            for part in llm.create_chat_completion(
                messages=list(messages),
                max_tokens=max_tokens,
                stop=list(stop) or None,
                temperature=temperature,
                seed=self.seed,
                stream=True,
            ):
                if first is None:
                    # the first chunk comes once the first token is sampled and before it
                    # is evaluated: the context's logits are still the prompt's last row
                    first, first_at = self._logprobs(llm), llm.n_tokens
                text = part["choices"][0]["delta"].get("content")
                if text:
                    completion += 1
                    yield text
        except ValueError as e:  # prompt longer than the context window
            raise GenerationError(
                f"The model could not answer ({e}). Lower top_k or chunk_size, or raise "
                "context_window."
            ) from e
        prompt_tokens = prompt_size if prompt_size is not None else first_at
        self._first_logprobs = first if first_at == prompt_tokens else None
        self.last_usage = {
            "prompt_tokens": prompt_tokens if prompt_tokens >= 0 else llm.n_tokens,
            "completion_tokens": completion,
            "cached_prompt_tokens": cached,
        }

    def _template_parts(self, llm: Any, system: str) -> tuple[list[int], list[int]] | None:
        """The chat template's tokens before and after the user message's content (the head
        holds the system message); None when the chat format is not the GGUF template."""
        if self._templates is None:
            return None
        mark = "\u2063\u2063"  # invisible separators: not in any message ragchat writes
        rendered = self._templates[1](
            messages=[{"role": "system", "content": system}, {"role": "user", "content": mark}]
        )
        head, _, foot = rendered.prompt.partition(mark)
        add_bos = not rendered.added_special
        encode = llm.tokenize
        return (
            encode(head.encode("utf-8"), add_bos=add_bos, special=True),
            encode(foot.encode("utf-8"), add_bos=False, special=True),
        )

    def _block_tokens(
        self, llm: Any, system: str, blocks: Sequence[str], tail: str, prefill: str = ""
    ) -> tuple[list[list[int]], list[int]] | None:
        parts = self._template_parts(llm, system)
        if parts is None:
            return None
        head, foot = parts

        def text(t: str) -> list[int]:  # document text: never read as special tokens
            return llm.tokenize(t.encode("utf-8"), add_bos=False, special=False)

        return [head] + [text(b) for b in blocks], text(tail) + foot + text(prefill)

    def cached_tokens(self, system: str, blocks: Sequence[str]) -> int:
        """How many tokens of a block prompt are already computed (see `stream_blocks`)."""
        llm = self.llm
        with self._run_lock:
            tokens = self._block_tokens(llm, system, blocks, "")
            return self.blocks.cached_tokens(llm, tokens[0]) if tokens else 0

    def prepare_blocks(self, system: str, blocks: Sequence[str]) -> int:
        """Compute the KV state of a prompt's blocks ahead of the question (a small collection
        read whole), and keep it on disk; returns the tokens that were already computed."""
        llm = self.llm
        with self._run_lock:
            tokens = self._block_tokens(llm, system, blocks, "")
            if tokens is None:
                return 0
            return self.blocks.prepare(llm, tokens[0], persist=True)

    def forget_states(self) -> None:
        """Drop every kept KV state, in memory and on disk (they hold what documents said)."""
        with self._run_lock:
            self.blocks.clear()
            self.blocks.forget_live()
            self._kept.clear()
            if self.kv_dir is not None:
                clear_states(self.kv_dir)

    def stream_blocks(
        self,
        system: str,
        blocks: Sequence[str],
        tail: str,
        *,
        max_tokens: int,
        grammar: str | None = None,
        stop: Sequence[str] = (),
        temperature: float = 0.0,
        prefill: str = "",
        resume: bool = False,
    ) -> Iterator[str]:
        """Stream the reply to a system message and a user message made of `blocks` then
        `tail`, optionally held to a GBNF `grammar`; `prefill` begins the reply (and is not
        streamed). `resume` continues the previous call on the same blocks (its `prefill`
        then holds what that call was given and wrote): only what follows is evaluated.

        The KV state after each block is kept (models/kvcache.py): a later prompt sharing
        the first blocks evaluates only the rest, and gets the same reply it would get
        alone."""
        llm = self.llm
        with self._run_lock:
            tokens = self._block_tokens(llm, system, blocks, tail, prefill)
            if tokens is None:  # not the GGUF template: one plain message, no block reuse
                user = "".join(blocks) + tail
                messages = [
                    {"role": "system", "content": system},
                    {"role": "user", "content": user},
                ]
                yield from self._stream(
                    messages, max_tokens=max_tokens, stop=stop, temperature=temperature
                )
                return
            prefix, rest = tokens
            if sum(map(len, prefix)) + len(rest) + max_tokens > self.context_window:
                raise GenerationError(
                    f"The prompt ({sum(map(len, prefix)) + len(rest)} tokens) and the answer "
                    f"({max_tokens}) do not fit the model's context ({self.context_window}). "
                    "Lower evidence_tokens or top_k, or raise context_window."
                )
            if resume and self.blocks.holds(prefix):
                cached = llm.n_tokens  # the previous call's state, which generate() extends
            else:
                cached = self.blocks.prepare(llm, prefix)
            prompt = [t for block in prefix for t in block] + rest
            compiled = self._grammar(grammar) if grammar else None
            completion, first = 0, None
            for part in llm.create_completion(
                prompt=prompt,
                max_tokens=max_tokens,
                stop=list(stop) or None,
                temperature=temperature,
                seed=self.seed,
                stream=True,
                grammar=compiled,
            ):
                if first is None:  # the prompt's last row, when the first token is not yet
                    # evaluated (a first chunk held back for a stop sequence comes later)
                    first = self._logprobs(llm) if llm.n_tokens == len(prompt) else False
                text = part["choices"][0].get("text")
                if text:
                    completion += 1
                    yield text
            self._first_logprobs = first if first is not False else None
            self.last_usage = {
                "prompt_tokens": len(prompt),
                "completion_tokens": completion,
                "cached_prompt_tokens": cached,
            }

    def _grammar(self, text: str) -> Any:
        from llama_cpp import LlamaGrammar

        try:
            return LlamaGrammar.from_string(text, verbose=False)
        except (ValueError, RuntimeError) as e:
            raise GenerationError(f"llama.cpp could not parse the answer grammar ({e}).") from e


def _fingerprint(model_path: Path, context_window: int) -> str:
    """A folder name for one model file's KV states: its size and first MiB, the context
    size and llama-cpp-python's version (the state format may change with it)."""
    import hashlib

    import llama_cpp

    h = hashlib.blake2b(digest_size=12)
    h.update(f"{llama_cpp.__version__}|{context_window}|{model_path.stat().st_size}|".encode())
    with model_path.open("rb") as f:
        h.update(f.read(2**20))
    return f"{model_path.stem[:40]}-{h.hexdigest()}"


class _Refused(Exception):
    """A model server's refusal of a request with a grammar (HTTP 400 or 422)."""


class OpenAIGenerator:
    """Any OpenAI-compatible chat endpoint (llama.cpp's server, vLLM, Ollama) behind the
    Generator protocol, streamed with server-sent events. `base_url` ends in /v1.

    `grammar`: whether `stream_grammar` sends its GBNF grammar, in the `grammar` field that
    llama.cpp's server and llama-cpp-python's take. "auto": sent, and not again once the
    server refuses the request (HTTP 400 or 422), when the reply is asked for without it;
    "on": a refusal is an error; "off": never sent. A server that ignores the field answers
    as it likes; the engine reads such a reply leniently (rag/answering.py)."""

    def __init__(
        self,
        base_url: str,
        *,
        model: str = "",
        api_key: str = "",
        seed: int = 0,
        timeout: float = 600.0,
        grammar: str = "auto",
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.grammar = grammar
        self.holds_grammar = grammar != "off"
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
        yield from self._stream(messages, max_tokens, stop, temperature)

    def stream_grammar(
        self,
        messages: Sequence[dict[str, str]],
        *,
        grammar: str,
        max_tokens: int,
        stop: Sequence[str] = (),
        temperature: float = 0.0,
    ) -> Iterator[str]:
        """The reply held to `grammar` where the server takes one (see the class)."""
        if not self.holds_grammar:
            yield from self._stream(messages, max_tokens, stop, temperature)
            self.last_usage["grammar"] = 0
            return
        try:
            yield from self._stream(messages, max_tokens, stop, temperature, grammar=grammar)
        except _Refused as e:
            if self.grammar == "on":
                raise GenerationError(
                    f"{e} The server does not take a GBNF grammar: use llama.cpp's server, or "
                    "set RAGCHAT_LLM_GRAMMAR=auto or off."
                ) from None
            log.warning("The model server refused a grammar (%s); asking without one.", e)
            self.holds_grammar = False
            yield from self._stream(messages, max_tokens, stop, temperature)
            self.last_usage["grammar"] = 0
            return
        self.last_usage["grammar"] = 1

    def _stream(
        self,
        messages: Sequence[dict[str, str]],
        max_tokens: int,
        stop: Sequence[str],
        temperature: float,
        grammar: str | None = None,
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
        if grammar is not None:
            body["grammar"] = grammar
        url = f"{self.base_url}/chat/completions"
        completion = 0
        usage: dict[str, int] = {}
        try:
            with httpx.stream(
                "POST", url, json=body, headers=self._headers, timeout=self.timeout
            ) as response:
                if response.status_code != 200:
                    detail = response.read().decode("utf-8", "replace")[:300]
                    if grammar is not None and response.status_code in (400, 422):
                        raise _Refused(f"The model server at {url} refused: {detail}.")
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
