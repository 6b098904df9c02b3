"""The model's work kept across questions: KV states at block boundaries, in a bounded tree.

A prompt is a list of blocks (the chat template's head with the system message, then one block
per evidence passage, then the question). Each block is evaluated alone, right after the state
of the blocks before it, and that state is kept, keyed by the whole path of blocks up to it
(RAGCache's knowledge tree, Jin et al. 2024). A later prompt that starts with the same blocks
restores the deepest state it shares, or truncates the live cache to it, and evaluates only
the rest. Because every block is always evaluated from the same boundary, in the same batches,
an answer is byte-identical whatever was asked before, which llama-cpp-python's own reuse of
the longest common prefix does not give (its split point moves, and the rounding with it).

States are llama.cpp sequence states (about 28 KB per token for Qwen2.5-1.5B), kept least
recently used first out within `max_bytes`.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

log = logging.getLogger(__name__)


def path_keys(blocks: Sequence[Sequence[int]]) -> list[bytes]:
    """One key per block boundary: a hash of every token up to it."""
    keys, h = [], hashlib.blake2b(digest_size=16)
    for block in blocks:
        h.update(len(block).to_bytes(4, "little"))
        h.update(b"".join(int(t).to_bytes(4, "little", signed=True) for t in block))
        keys.append(h.copy().digest())
    return keys


class BlockCache:
    """KV states of prompt prefixes that end at block boundaries, for one llama.cpp model."""

    def __init__(self, max_bytes: int = 512 * 2**20) -> None:
        self.max_bytes = max_bytes
        self._states: OrderedDict[bytes, tuple[int, Any]] = OrderedDict()  # key -> (n, state)
        self._bytes = 0
        self._live: list[bytes] = []  # keys of the blocks the model's KV cache holds, as prepared

    def __len__(self) -> int:
        return len(self._states)

    @property
    def size(self) -> int:
        return self._bytes

    def cached_tokens(self, llm: Any, blocks: Sequence[Sequence[int]]) -> int:
        """How many of the prompt's leading tokens would be reused (live or kept)."""
        ends = _ends(blocks)
        keys = path_keys(blocks)
        live = self._live_depth(keys)
        kept = max((j + 1 for j, k in enumerate(keys) if k in self._states), default=0)
        depth = max(live, kept)
        return ends[depth - 1] if depth else 0

    def prepare(self, llm: Any, blocks: Sequence[Sequence[int]]) -> int:
        """Leave exactly the blocks' tokens in the model's KV cache, each block evaluated after
        the state of those before it. Returns the number of tokens reused."""
        ends = _ends(blocks)
        keys = path_keys(blocks)
        live = self._live_depth(keys)
        kept = 0
        for j in range(len(keys), live, -1):
            if keys[j - 1] in self._states:
                kept = j
                break
        if kept > live and self._restore(llm, blocks, keys[kept - 1], ends[kept - 1]):
            depth = kept
        elif live:
            depth = live
            llm.n_tokens = ends[live - 1]  # eval() drops the cells after it
        else:
            depth = 0
            llm.reset()
        for j in range(depth, len(blocks)):
            if blocks[j]:
                llm.eval(list(blocks[j]))
            self._keep(llm, keys[j], ends[j])
        self._live = list(keys)
        return ends[depth - 1] if depth else 0

    @property
    def holds_live(self) -> bool:
        return bool(self._live)

    def holds(self, blocks: Sequence[Sequence[int]]) -> bool:
        """Whether the model's KV cache was last prepared with exactly these blocks."""
        return self._live == path_keys(blocks)

    def forget_live(self) -> None:
        """The model's KV cache was used for another prompt: what it holds is not known."""
        self._live = []

    def _live_depth(self, keys: Sequence[bytes]) -> int:
        """How many leading blocks the model's KV cache holds, as this cache evaluated them."""
        depth = 0
        for mine, wanted in zip(self._live, keys):
            if mine != wanted:
                break
            depth += 1
        return depth

    def _keep(self, llm: Any, key: bytes, n: int) -> None:
        import llama_cpp

        if key in self._states:
            self._states.move_to_end(key)
            return
        size = llama_cpp.llama_state_seq_get_size(llm._ctx.ctx, 0)
        if size > self.max_bytes:
            return
        state = (ctypes.c_uint8 * size)()
        if llama_cpp.llama_state_seq_get_data(llm._ctx.ctx, state, size, 0) != size:
            return
        self._states[key] = (n, state)
        self._bytes += size
        while self._bytes > self.max_bytes and self._states:
            _, (_, old) = self._states.popitem(last=False)
            self._bytes -= len(old)

    def _restore(self, llm: Any, blocks: Sequence[Sequence[int]], key: bytes, n: int) -> bool:
        import llama_cpp

        _, state = self._states[key]
        llm._ctx.kv_cache_seq_rm(-1, 0, -1)
        if llama_cpp.llama_state_seq_set_data(llm._ctx.ctx, state, len(state), 0) == 0:
            log.warning("a kept KV state could not be restored; evaluating again")
            del self._states[key]
            self._bytes -= len(state)
            llm.reset()
            return False
        tokens = [t for block in blocks for t in block][:n]
        llm.input_ids[:n] = tokens
        llm.n_tokens = n
        self._states.move_to_end(key)
        return True


def _ends(blocks: Sequence[Sequence[int]]) -> list[int]:
    ends, n = [], 0
    for block in blocks:
        n += len(block)
        ends.append(n)
    return ends
