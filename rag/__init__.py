"""ragchat: private, cited question answering over your own documents.

The public API: `Chatbot`, `Settings`, `evaluate`, the value types, the errors and
`SAMPLE_CORPUS`.
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

# `rag.evaluate(...)` is the function (it shadows the submodule's name on the package;
# `from rag.evaluate import ...` still reaches the module)
from rag.evaluate import EvalResult, evaluate
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
    "EvalResult",
    "GenerationError",
    "Hit",
    "IngestReport",
    "ModelNotFound",
    "RagChatError",
    "Settings",
    "Skipped",
    "StoreError",
    "UnsupportedDocument",
    "evaluate",
]
