"""The one error hierarchy of ragchat. Every message says what to do next.

The library raises these and never prints; the CLI maps them to a message and exit code 1,
the UI to a warning.
"""

from __future__ import annotations


class RagChatError(Exception):
    """Base of every error ragchat raises on purpose."""


class ConfigError(RagChatError):
    """A setting is invalid."""


class ModelNotFound(RagChatError):
    """Model weights could not be found or assembled."""


class EmptyIndex(RagChatError):
    """The store holds no documents yet."""

    def __init__(self, store: str = "") -> None:
        where = f" --store {store}" if store else ""
        super().__init__(
            f"The document store is empty: run `ragchat ingest{where} DOCS...` "
            "(or Chatbot.ingest([...])) first."
        )


class UnsupportedDocument(RagChatError):
    """A file cannot be read as a document (wrong type, corrupt, empty)."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class EmbedderMismatch(RagChatError):
    """The store was built with another embedding model than the one configured."""


class StoreError(RagChatError):
    """The vector store failed or cannot be reached."""


class GenerationError(RagChatError):
    """The language model failed while answering."""


class StoreBusy(StoreError):
    """Another process is writing to the store."""

    def __init__(self, store: str, waited: float) -> None:
        self.store = store
        super().__init__(
            f"Another ragchat process is writing to the store {store} (waited {waited:.0f} s). "
            "Wait for it to finish and run the command again, raise RAGCHAT_LOCK_TIMEOUT, "
            "or use another --store."
        )
