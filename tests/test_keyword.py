"""The BM25 keyword index: per-language stemming, persistence, and staying in step with Chroma."""

from pathlib import Path

import numpy as np

from rag import factory
from rag.chunking import chunk_document
from rag.config import Settings
from rag.types import Chunk, Document
from vectorstore.chroma import ChromaStore
from vectorstore.keyword import KeywordIndex, Tokenizer


def chunk(cid: str, doc_id: str, text: str, lang: str = "fr") -> Chunk:
    return Chunk(cid, doc_id, text, 0, len(text), {"lang": lang})


FR = [
    chunk("a1", "a", "Hammouchi a rencontré Avril Haines à Washington."),
    chunk("a2", "a", "Les dépenses des ménages représentent plus de la moitié du total."),
    chunk("a3", "a", "Le directeur du FBI, Christopher Wray, l'a reçu."),
]


def test_stemming_and_stopwords_follow_the_language() -> None:
    assert Tokenizer("fr")(["Les rencontres de Washington"]) == [["rencontr", "washington"]]
    assert Tokenizer("en")(["The meetings in Washington"]) == [["meet", "washington"]]
    # no stemmer or stopwords for a language without them: words kept as written, lowercased
    assert Tokenizer("ja")(["The Unknown words"]) == [["the", "unknown", "words"]]


def test_search_finds_inflected_forms_and_persists(tmp_path: Path) -> None:
    index = KeywordIndex(tmp_path / "k.sqlite")
    index.replace_document("a", FR, "fr")
    index.replace_document("b", [chunk("b1", "b", "The FBI director met him.", "en")], "en")
    hits = index.search("rencontres à Washington", 5)
    assert [h.chunk_id for h in hits][:1] == ["a1"] and hits[0].score > 0
    assert index.languages() == {"fr": 3, "en": 1}
    index.close()

    reopened = KeywordIndex(tmp_path / "k.sqlite")
    assert reopened.count() == 4
    assert {h.chunk_id for h in reopened.search("FBI director", 5)} == {"a3", "b1"}
    assert reopened.search("xyzzy", 5) == [] and reopened.search("   ", 5) == []


def test_replace_and_delete_leave_no_stale_rows(tmp_path: Path) -> None:
    index = KeywordIndex(tmp_path / "k.sqlite")
    index.replace_document("a", FR, "fr")
    index.replace_document("a", [chunk("a9", "a", "Un tout autre texte sur Rabat.")], "fr")
    assert index.count() == 1
    assert [h.chunk_id for h in index.search("Rabat", 5)] == ["a9"]
    assert index.search("Washington", 5) == []
    assert index.delete("a") == 1 and index.count() == 0 and index.search("Rabat", 5) == []


def _store_with_doc(tmp_path: Path) -> tuple[ChromaStore, list[Chunk]]:
    store = ChromaStore(tmp_path / "store", "fake", 4)
    doc = Document("d", "/d.txt", "Hammouchi a rencontré Avril Haines. " * 20, {"lang": "fr"})
    chunks = chunk_document(doc, 200, 0)
    vectors = np.ones((len(chunks), 4), dtype=np.float32) / 2
    store.replace_document("d", chunks, vectors)
    return store, chunks


def test_a_crash_between_chroma_and_the_keyword_write_is_repaired_on_open(tmp_path: Path) -> None:
    settings = Settings(data_dir=str(tmp_path))
    store, chunks = _store_with_doc(tmp_path)
    index = KeywordIndex(factory.keyword_index_path(settings, store))
    index.begin(["d"])  # journaled, Chroma written (above), keyword write never happened
    index.close()

    repaired = factory.build_keyword_index(settings, store)
    assert repaired.count() == len(chunks) == store.count()
    assert repaired.search("rencontre", 3)[0].chunk_id in {c.id for c in chunks}
    assert repaired.languages() == {"fr": len(chunks)}


def test_a_lost_keyword_index_is_rebuilt_from_chroma(tmp_path: Path) -> None:
    settings = Settings(data_dir=str(tmp_path))
    store, chunks = _store_with_doc(tmp_path)
    path = factory.keyword_index_path(settings, store)
    assert path.parent.parent == Path(store.path)  # lives beside Chroma's files
    index = factory.build_keyword_index(settings, store)
    index.replace_document("gone", [chunk("g1", "gone", "Un document effacé de Chroma.")], "fr")
    index.close()

    rebuilt = factory.build_keyword_index(settings, store)  # counts differ: full resync
    assert rebuilt.count() == len(chunks)
    assert rebuilt.search("effacé", 3) == []


def test_an_interrupted_replacement_is_made_whole_on_open(tmp_path: Path) -> None:
    settings = Settings(data_dir=str(tmp_path))
    store, old = _store_with_doc(tmp_path)
    index = factory.build_keyword_index(settings, store)
    new_doc = Document("d", "/d.txt", "Un texte tout neuf sur Rabat. " * 15, {"lang": "fr"})
    new = [
        Chunk(c.id, c.doc_id, c.text, c.start, c.end, {**c.metadata, "generation": 2**62,
                                                       "doc_chunks": 99})
        for c in chunk_document(new_doc, 200, 0)
    ]  # fmt: skip
    index.begin(["d"])
    store.upsert(new, np.ones((len(new), 4), dtype=np.float32) / 2)  # killed mid-way
    index.close()

    repaired = factory.build_keyword_index(settings, store)
    ids = {c.id for c in store.get_chunks("d")}
    assert ids == {c.id for c in old}  # the partial new version is gone, the old one whole
    assert repaired.count() == len(ids) and repaired.search("Rabat", 3) == []


def test_search_can_be_limited_to_some_languages(tmp_path: Path) -> None:
    index = KeywordIndex(tmp_path / "k.sqlite")
    index.replace_document("a", FR, "fr")
    index.replace_document("b", [chunk("b1", "b", "The FBI director met him.", "en")], "en")
    assert {h.chunk_id for h in index.search("FBI director", 5, {"en"})} == {"b1"}
    assert {h.chunk_id for h in index.search("FBI director", 5, {"fr"})} == {"a3"}
    assert index.search("FBI director", 5, set()) == []


def test_a_chunk_is_found_by_its_documents_title(tmp_path: Path) -> None:
    index = KeywordIndex(tmp_path / "k.sqlite")
    titled = Chunk("t1", "t", "Il a été reçu par ses homologues.", 0, 33,
                   {"lang": "fr", "title": "Visite de Hammouchi à Washington"})  # fmt: skip
    index.replace_documents([("t", [titled], "fr"), ("a", FR[1:2], "fr")])
    assert [h.chunk_id for h in index.search("visite à Washington", 5)] == ["t1"]


def test_an_index_from_before_titles_is_rebuilt_with_them_on_open(tmp_path: Path) -> None:
    import sqlite3

    settings = Settings(data_dir=str(tmp_path))
    store, chunks = _store_with_doc(tmp_path)
    path = factory.keyword_index_path(settings, store)
    index = factory.build_keyword_index(settings, store)
    assert index.search("Haines", 3)
    index.close()
    old = sqlite3.connect(path)  # as an older ragchat left it: text-only tokens, format 0
    old.execute("UPDATE chunks SET tokens = 'ancien'")
    old.execute("PRAGMA user_version = 0")
    old.commit()
    old.close()

    reopened = factory.build_keyword_index(settings, store)  # same counts, older format
    assert reopened.search("ancien", 3) == []
    assert reopened.search("Haines", 3) and reopened.count() == len(chunks)
    assert reopened._format() == 2
