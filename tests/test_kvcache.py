"""The KV states of evidence blocks, kept across questions (models/kvcache.py), with the real
small model: reused where blocks recur, and answers byte-identical whatever came before."""

from models.generators import LlamaCppGenerator
from rag import prompts

SYSTEM = "You answer questions from the numbered sentences."
A = "[1] Lyon\n(1.1) Le musée des Tissus de Lyon ouvre ses portes à 10 heures.\n\n"
B = "[2] Lyon\n(2.1) Il est fermé le lundi et le mardi.\n\n"
C = "[2] Paris\n(2.1) Le Louvre ouvre à 9 heures et ferme à 18 heures.\n\n"


def reply(generator: LlamaCppGenerator, blocks: list[str], question: str, **kw) -> str:  # type: ignore[no-untyped-def]
    return "".join(
        generator.stream_blocks(SYSTEM, blocks, f"Question: {question}\n", max_tokens=24, **kw)
    )


def test_blocks_are_reused_and_answers_do_not_depend_on_what_came_before(smol) -> None:  # type: ignore[no-untyped-def]
    fresh = LlamaCppGenerator(smol.model_path, name="fresh", context_window=4096, threads=2)
    alone = reply(fresh, [A, B], "When does the museum open?")
    assert fresh.last_usage["cached_prompt_tokens"] == 0

    first = reply(smol, [A, B], "When does the museum open?")
    reply(smol, [A, C], "When does the Louvre close?")  # shares the head and block A
    assert smol.last_usage["cached_prompt_tokens"] > 0
    kept = smol.last_usage["cached_prompt_tokens"]
    "".join(smol.stream([{"role": "user", "content": "Say hello."}], max_tokens=8))  # other use
    again = reply(smol, [A, B], "When does the museum open?")
    assert smol.last_usage["cached_prompt_tokens"] > kept  # head, A and B were all kept
    assert first == again == alone
    assert 0 < smol.blocks.size <= smol.blocks.max_bytes


def test_the_cache_stays_within_its_memory_and_still_answers_the_same(smol) -> None:  # type: ignore[no-untyped-def]
    tight = LlamaCppGenerator(
        smol.model_path, name="tight", context_window=4096, threads=2, kv_cache_mb=1
    )
    answers = [reply(tight, [A, blocks], "When does the museum open?") for blocks in (B, C, B)]
    assert tight.blocks.size <= 2**20
    assert answers[0] == answers[2] == reply(smol, [A, B], "When does the museum open?")


def test_a_grammar_lets_the_model_name_only_the_sentences_shown(smol) -> None:  # type: ignore[no-untyped-def]
    grammar = prompts.quote_grammar(["1.1", "2.1"])
    for question in ("When does the museum open?", "What is the capital of Peru?"):
        ids = reply(smol, [A, B], question, grammar=grammar, prefill=prompts.QUOTE_PREFILL)
        assert ids in (" none", " 1.1\n", " 2.1\n", " 1.1, 2.1\n", " 2.1, 1.1\n") or (
            prompts.parse_quoted(ids + "\nAnswer: x").ids
            and set(prompts.parse_quoted(ids + "\nAnswer: x").ids) <= {"1.1", "2.1"}
        ), ids


def test_resume_continues_the_reply_it_began(smol) -> None:  # type: ignore[no-untyped-def]
    begun = reply(smol, [A, B], "When does the museum open?", prefill="Answer:")
    resumed = reply(
        smol, [A, B], "When does the museum open?", prefill="Answer:" + begun[:4], resume=True
    )
    assert smol.last_usage["cached_prompt_tokens"] > sum(
        len(smol.llm.tokenize(b.encode(), add_bos=False)) for b in (A, B)
    )
    assert isinstance(resumed, str)


def test_a_fixed_grammar_lets_the_model_write_only_the_engines_ids_or_none(smol) -> None:  # type: ignore[no-untyped-def]
    grammar = prompts.quote_fixed_grammar(["1.1", "2.1"])
    for question in ("When does the museum open?", "What is the capital of Peru?"):
        ids = reply(smol, [A, B], question, grammar=grammar, prefill=prompts.QUOTE_PREFILL)
        assert ids in (" none", " 1.1, 2.1\n"), ids


def test_a_span_grammar_lets_the_model_copy_only_a_short_run_of_the_quoted_words(smol) -> None:  # type: ignore[no-untyped-def]
    sentence = "Le musée des Tissus de Lyon ouvre ses portes à 10 heures."
    grammar = prompts.span_grammar([sentence], most=4)
    for question in ("When does the museum open?", "Where is the museum?"):
        answer = reply(smol, [A, B], question, grammar=grammar, prefill="Answer:")
        assert answer.startswith(" ") and answer.endswith("\n"), answer
        copied = answer.strip()
        assert copied and copied in sentence, answer
        assert len(prompts._UNIT.findall(copied)) <= 4, answer


def test_states_that_recur_are_kept_on_disk_for_the_next_process(smol, tmp_path) -> None:  # type: ignore[no-untyped-def]
    def generator() -> LlamaCppGenerator:  # a new process: nothing in memory
        return LlamaCppGenerator(smol.model_path, context_window=4096, threads=2, kv_dir=tmp_path)

    alone = reply(smol, [A, B], "When does the museum open?")
    first = generator()
    assert first.prepare_blocks(SYSTEM, [A, B]) == 0  # computed, then written
    (folder,) = tmp_path.iterdir()
    assert len(list(folder.glob("*.kv"))) == 1

    second = generator()
    assert reply(second, [A, B], "When does the museum open?") == alone
    blocks = sum(len(second.llm.tokenize(b.encode(), add_bos=False)) for b in (A, B))
    assert second.last_usage["cached_prompt_tokens"] > blocks  # restored, not read again

    for state in folder.glob("*.kv"):  # cut short, as by a crash or a full disk
        state.write_bytes(state.read_bytes()[:1000])
    third = generator()
    assert reply(third, [A, B], "When does the museum open?") == alone
    assert third.last_usage["cached_prompt_tokens"] == 0
    assert not list(folder.glob("*.kv"))  # the damaged file was removed

    third.forget_states()
    assert not tmp_path.exists()


def test_the_chatbot_reads_a_small_collection_ahead_and_forgets_it_on_delete(  # type: ignore[no-untyped-def]
    settings, minilm, smol, tmp_path
) -> None:
    from rag import Chatbot

    def bot() -> Chatbot:  # a new process: a new model, nothing in memory
        kept = LlamaCppGenerator(
            smol.model_path, context_window=4096, threads=2, kv_dir=settings.kv_dir
        )
        return Chatbot(settings, embedder=minilm, generator=kept)

    museum = tmp_path / "musee.txt"
    museum.write_text(
        "Le musée des Tissus de Lyon ouvre ses portes à 10 heures. Il est fermé le lundi et "
        "le mardi. L'entrée coûte 12 euros.\n",
        encoding="utf-8",
    )
    first = bot()
    first.ingest([museum])
    assert first.warm() == 0  # the system prompt and the collection, computed and kept
    assert list(settings.kv_dir.rglob("*.kv"))
    answer = first.ask("Quand le musée ouvre-t-il ?")
    count = first.generator.count_tokens
    assert first.answerer.form() == "extract"  # answer_form auto, a collection read whole
    read = count(prompts.extract_system()) + count(museum.read_text(encoding="utf-8"))
    # the system prompt, the document and the lead of a French question (warm() computed it:
    # the collection is in French), all but the question itself
    lead = count(prompts.extract_lead("fr"))
    assert answer.usage["cached_prompt_tokens"] >= read + lead

    second = bot()
    assert second.warm() >= read  # restored from disk
    again = second.ask("Quand le musée ouvre-t-il ?")
    assert again.usage["cached_prompt_tokens"] == answer.usage["cached_prompt_tokens"]
    assert again.text == answer.text

    second.delete("musee.txt")
    assert not list(settings.kv_dir.rglob("*.kv"))  # they held what the document said
