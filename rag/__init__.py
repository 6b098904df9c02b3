"""ragchat: private, cited question answering over your own documents.

The public API: `Chatbot`, `Settings`, the value types, the errors and `SAMPLE_CORPUS`.
Nothing heavy is imported here; models load on first use.
"""

from rag.config import Settings
from rag.errors import (
    ConfigError,
    EmbedderMismatch,
    EmptyIndex,
    GenerationError,
    ModelNotFound,
    RagChatError,
    StoreError,
    UnsupportedDocument,
)
from rag.pipeline import SAMPLE_CORPUS, Chatbot
from rag.types import Answer, Chunk, Citation, Document, Hit, IngestReport, Skipped

__all__ = [
    "SAMPLE_CORPUS",
    "Answer",
    "Chatbot",
    "Chunk",
    "Citation",
    "ConfigError",
    "Document",
    "EmbedderMismatch",
    "EmptyIndex",
    "GenerationError",
    "Hit",
    "IngestReport",
    "ModelNotFound",
    "RagChatError",
    "Settings",
    "Skipped",
    "StoreError",
    "UnsupportedDocument",
]
