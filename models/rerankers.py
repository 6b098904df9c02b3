"""Rerankers: re-order retrieved passages with a cross-encoder, loaded on first use.

Off by default: no cross-encoder ships in any package installable offline here. Users who have
one (a local folder, or a hub id such as `cross-encoder/mmarco-mMiniLMv2-L12-H384-v1` with
internet) set `--reranker` / `RAGCHAT_RERANKER`; the retriever then reads `rerank_depth`
candidates and keeps the `k` the cross-encoder scores highest.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from rag.errors import ModelNotFound
from rag.types import Hit

log = logging.getLogger(__name__)


class CrossEncoderReranker:
    """A sentence-transformers CrossEncoder behind the Reranker protocol."""

    def __init__(self, name: str, *, batch_size: int = 16, device: str = "cpu") -> None:
        self.name = name
        self.batch_size = batch_size
        self.device = device
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def model(self) -> Any:
        with self._lock:
            if self._model is None:
                self._model = self._load()
            return self._model

    def _load(self) -> Any:
        try:
            from sentence_transformers import CrossEncoder

            log.info("loading reranker %s", self.name)
            return CrossEncoder(self.name, device=self.device)
        except Exception as e:  # hub, file and format errors alike
            raise ModelNotFound(
                f"Could not load the reranker {self.name!r} ({e}). Give a local "
                "sentence-transformers CrossEncoder folder, or a hub id with internet access; "
                "or turn reranking off (RAGCHAT_RERANKER empty)."
            ) from e

    def scores(self, query: str, texts: Sequence[str]) -> list[float]:
        """Relevance of each text to the query (higher is better)."""
        if not texts:
            return []
        pairs = [(query, t) for t in texts]
        raw = self.model.predict(pairs, batch_size=self.batch_size, show_progress_bar=False)
        return [float(s) for s in raw]

    def rerank(self, query: str, hits: Sequence[Hit], k: int) -> list[Hit]:
        scores = self.scores(query, [h.chunk.text for h in hits])
        order = sorted(range(len(hits)), key=lambda i: -scores[i])[:k]
        return [
            Hit(hits[i].chunk, score=scores[i], rank=r, similarity=hits[i].similarity)
            for r, i in enumerate(order, 1)
        ]
