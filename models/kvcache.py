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
recently used first out within `max_bytes`. With a `disk` (DiskStates), the states that
recur (the system prompt, or all the blocks of a prompt reused by a later question: a small
collection read whole) and those `prepare` is told to keep are also written there, so that
the next process (the chat opened again, `ragchat ask`) restores them instead of reading the
passages again. A state read back from disk holds the same bytes as the one written: answers
stay byte-identical.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import tempfile
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
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


_MAGIC = b"ragchat-kv-state-1\n"


class DiskStates:
    """KV states in files of one directory, one per prefix key, within `max_bytes`: the
    least recently used files are removed first. Every failure to read or write (a full disk,
    a file cut short by a crash, another model's state) only costs a re-evaluation."""

    def __init__(self, directory: str | Path, max_bytes: int) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self._known: set[bytes] | None = None  # keys on disk, listed once

    def _path(self, key: bytes) -> Path:
        return self.directory / f"{key.hex()}.kv"

    def __contains__(self, key: bytes) -> bool:
        if self._known is None:
            try:
                self._known = {
                    bytes.fromhex(p.stem) for p in self.directory.glob("*.kv") if _hex(p.stem)
                }
            except OSError:
                self._known = set()
        return key in self._known

    def get(self, key: bytes) -> tuple[int, Any] | None:
        """The token count and state kept under `key`, or None."""
        if key not in self:
            return None
        path = self._path(key)
        try:
            data = path.read_bytes()
            os.utime(path)  # recently used: removed last
        except OSError:
            self._forget(key)
            return None
        head = len(_MAGIC) + 16
        n = int.from_bytes(data[len(_MAGIC) : head - 8], "little")
        size = int.from_bytes(data[head - 8 : head], "little")
        if not data.startswith(_MAGIC) or not size or len(data) != head + size:
            log.warning("ignoring a damaged KV state file %s", path)
            self._forget(key, unlink=True)
            return None
        return n, (ctypes.c_uint8 * size).from_buffer_copy(data, head)

    def put(self, key: bytes, n: int, state: Any) -> None:
        size = len(state)
        if key in self or size > self.max_bytes:
            return
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._make_room(size)
            fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                f.write(_MAGIC + n.to_bytes(8, "little") + size.to_bytes(8, "little"))
                f.write(memoryview(state).cast("B"))
            os.replace(tmp, self._path(key))  # whole or absent: never half a state
        except OSError as e:
            log.warning("could not keep a KV state in %s (%s)", self.directory, e)
            return
        assert self._known is not None
        self._known.add(key)

    def _make_room(self, size: int) -> None:
        stats = [(p.stat(), p) for p in self.directory.glob("*.kv")]
        files = sorted((st.st_mtime_ns, st.st_size, p) for st, p in stats)
        total = sum(s for _, s, _ in files)
        for _, s, p in files:
            if total + size <= self.max_bytes:
                break
            p.unlink(missing_ok=True)
            self._forget(bytes.fromhex(p.stem) if _hex(p.stem) else b"")
            total -= s

    def _forget(self, key: bytes, unlink: bool = False) -> None:
        if self._known is not None:
            self._known.discard(key)
        if unlink:
            self._path(key).unlink(missing_ok=True)

    def clear(self) -> None:
        clear_states(self.directory)
        self._known = set()


def clear_states(directory: str | Path) -> None:
    """Remove every kept KV state under `directory` (they hold what documents said)."""
    shutil.rmtree(directory, ignore_errors=True)


def _hex(text: str) -> bool:
    try:
        bytes.fromhex(text)
    except ValueError:
        return False
    return True


class BlockCache:
    """KV states of prompt prefixes that end at block boundaries, for one llama.cpp model."""

    def __init__(self, max_bytes: int = 512 * 2**20, disk: DiskStates | None = None) -> None:
        self.max_bytes = max_bytes
        self.disk = disk
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
        kept = max((j + 1 for j, k in enumerate(keys) if self._has(k)), default=0)
        depth = max(live, kept)
        return ends[depth - 1] if depth else 0

    def prepare(self, llm: Any, blocks: Sequence[Sequence[int]], *, persist: bool = False) -> int:
        """Leave exactly the blocks' tokens in the model's KV cache, each block evaluated after
        the state of those before it. Returns the number of tokens reused. The deepest state
        reused, and with `persist` the state of all the blocks, are also kept on disk."""
        ends = _ends(blocks)
        keys = path_keys(blocks)
        live = self._live_depth(keys)
        kept = 0
        for j in range(len(keys), live, -1):
            if self._has(keys[j - 1]):
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
        if depth in (1, len(blocks)):  # the system prompt, or a whole prompt's blocks, that
            # recurred: worth keeping for the next process (a prefix of selected passages
            # that recurred once would fill the disk and push them out)
            self._persist(keys[depth - 1], ends[depth - 1])
        for j in range(depth, len(blocks)):
            if blocks[j]:
                llm.eval(list(blocks[j]))
            self._keep(llm, keys[j], ends[j])
        if persist and blocks:
            self._persist(keys[-1], ends[-1])
        self._live = list(keys)
        return ends[depth - 1] if depth else 0

    def clear(self) -> None:
        """Forget every kept state, on disk too (a document was deleted)."""
        self._states.clear()
        self._bytes = 0
        if self.disk is not None:
            self.disk.clear()

    def _has(self, key: bytes) -> bool:
        return key in self._states or (self.disk is not None and key in self.disk)

    def _persist(self, key: bytes, n: int) -> None:
        if self.disk is not None and key in self._states and key not in self.disk:
            self.disk.put(key, n, self._states[key][1])

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
        self._hold(key, n, state)

    def _hold(self, key: bytes, n: int, state: Any) -> None:
        self._states[key] = (n, state)
        self._bytes += len(state)
        while self._bytes > self.max_bytes and self._states:
            _, (_, old) = self._states.popitem(last=False)
            self._bytes -= len(old)

    def _restore(self, llm: Any, blocks: Sequence[Sequence[int]], key: bytes, n: int) -> bool:
        import llama_cpp

        if key in self._states:
            _, state = self._states[key]
        else:
            found = self.disk.get(key) if self.disk is not None else None
            if found is None or found[0] != n:
                return False
            state = found[1]
            if len(state) <= self.max_bytes:
                self._hold(key, n, state)
        llm._ctx.kv_cache_seq_rm(-1, 0, -1)
        if llama_cpp.llama_state_seq_set_data(llm._ctx.ctx, state, len(state), 0) == 0:
            log.warning("a kept KV state could not be restored; evaluating again")
            if key in self._states:
                del self._states[key]
                self._bytes -= len(state)
            if self.disk is not None:
                self.disk._forget(key, unlink=True)
            llm.reset()
            return False
        tokens = [t for block in blocks for t in block][:n]
        llm.input_ids[:n] = tokens
        llm.n_tokens = n
        if key in self._states:
            self._states.move_to_end(key)
        return True


def _ends(blocks: Sequence[Sequence[int]]) -> list[int]:
    ends, n = [], 0
    for block in blocks:
        n += len(block)
        ends.append(n)
    return ends
