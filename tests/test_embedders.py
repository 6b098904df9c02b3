"""The question fast path (a traced transformer) gives the vectors sentence-transformers gives."""

from __future__ import annotations

import numpy as np
import pytest

from models.embedders import SentenceTransformerEmbedder

QUESTIONS = [
    "Who did Hammouchi meet?",
    "Qui Abdellatif Hammouchi a-t-il rencontré lors de sa visite de travail à Washington ?",
    "¿Cuántos pasajeros transportó el sistema de metro en el año fiscal?",
    "x",
]


@pytest.mark.parametrize("name", ["minilm", "e5"])
def test_question_vectors_equal_sentence_transformers_encode(name: str, request) -> None:
    embedder: SentenceTransformerEmbedder = request.getfixturevalue(name)
    fast = np.stack([embedder.embed_query(q) for q in QUESTIONS])
    assert embedder._query_encoder  # traced: the fast path really ran
    usual = embedder._encode([embedder.query_prefix + q for q in QUESTIONS])
    assert fast.shape == usual.shape
    assert np.allclose(np.linalg.norm(fast, axis=1), 1.0, atol=1e-5)
    assert (fast * usual).sum(axis=1).min() > 0.99999


def test_a_question_longer_than_the_window_is_embedded_whole(minilm) -> None:
    long = " ".join(["Hammouchi met the directors of the CIA and the FBI in Washington."] * 60)
    vector = minilm.embed_query(long)
    windowed = minilm._encode([minilm.query_prefix + long])[0]  # windows, not cut at 256 tokens
    assert float(vector @ windowed) > 0.99999
