"""One writer per store, across processes: a lock file beside the store's keyword index.

Ingest, delete and the repair done when a store is opened take it. The operating system drops
the lock when its process dies (SIGKILL included), so a lock that can be taken also means no
write is in flight: what the journal holds then is left by a crash and may be repaired. A second
writer waits up to a timeout, then fails with a message; readers never wait.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rag.errors import StoreBusy

log = logging.getLogger(__name__)


class StoreLock:
    """An exclusive, re-entrant (per thread) lock on one store, shared with other processes."""

    def __init__(self, path: str | Path, store: str = "") -> None:
        from filelock import FileLock

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.store = store or str(self.path.parent)
        self._file = FileLock(self.path, thread_local=False)
        self._threads = threading.RLock()  # the file lock excludes processes, this threads

    @contextmanager
    def hold(self, timeout: float) -> Iterator[None]:
        """Hold the lock; wait up to `timeout` seconds for another process to release it."""
        from filelock import Timeout

        with self._threads:
            try:
                self._file.acquire(timeout=0)
            except Timeout:
                log.warning(
                    "another process is writing to the store %s; waiting up to %.0f s",
                    self.store,
                    timeout,
                )
                try:
                    self._file.acquire(timeout=timeout)
                except Timeout:
                    raise StoreBusy(self.store, timeout) from None
            try:
                yield
            finally:
                self._file.release()

    @contextmanager
    def try_hold(self) -> Iterator[bool]:
        """Hold the lock if no other process or thread does; yields whether it is held. Never
        waits, so it cannot deadlock with a writer that needs what its caller holds."""
        from filelock import Timeout

        if not self._threads.acquire(blocking=False):  # another thread of ours is writing
            yield False
            return
        try:
            try:
                self._file.acquire(timeout=0)
            except Timeout:
                yield False
                return
            try:
                yield True
            finally:
                self._file.release()
        finally:
            self._threads.release()
