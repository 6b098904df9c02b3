"""The local generator with a real small GGUF model: the fixed prompt prefix is evaluated once
and reused (kept aside while another system prompt runs), and reusing it never changes an
answer."""

from __future__ import annotations

from pathlib import Path

from models.generators import LlamaCppGenerator
from models.weights import resolve_gguf
from tests.conftest import SMOL

SYSTEM = "You answer questions about the passage in one short sentence."
PASSAGE = (
    "Passage: The textile museum of Lyon opens at 10 a.m. and is closed on Mondays. "
    "A ticket costs 12 euros; entry is free for visitors under 18."
)


def ask(gen: LlamaCppGenerator, question: str, system: str = SYSTEM) -> tuple[str, dict]:
    messages = [
        {"role": "system", "content": system},
        {"role": "user", "content": f"{PASSAGE}\nQuestion: {question}"},
    ]
    text = "".join(gen.stream(messages, max_tokens=24))
    return text, dict(gen.last_usage)


def test_the_system_prefix_is_reused_and_answers_do_not_depend_on_earlier_questions(
    tmp_path_factory,
) -> None:
    path: Path = resolve_gguf(SMOL, tmp_path_factory.mktemp("models"))
    fresh = LlamaCppGenerator(path, name=SMOL, threads=2)
    first, usage = ask(fresh, "When does the museum open?")
    assert usage["cached_prompt_tokens"] == 0  # nothing cached yet: the prefix is evaluated

    warm = LlamaCppGenerator(path, name=SMOL, threads=2)
    ask(warm, "How much is a ticket?")
    again, usage = ask(warm, "When does the museum open?")
    prefix = len(warm._prefix_tokens(warm.llm, [{"role": "system", "content": SYSTEM}])[0])
    assert prefix > 10
    assert usage["cached_prompt_tokens"] == prefix
    assert again == first  # the same answer as from a model that saw no earlier question

    _, usage = ask(warm, "When does the museum open?", system=SYSTEM + " Be polite.")
    assert usage["cached_prompt_tokens"] == 0  # another system message: evaluated afresh
    assert usage["prompt_tokens"] > prefix

    # the first system message's cache was kept aside: restored, and the answer unchanged
    restored, usage = ask(warm, "When does the museum open?")
    assert usage["cached_prompt_tokens"] == prefix
    assert restored == first
    ask(warm, "How much is a ticket?")  # and it stays live for the next question
    assert warm.last_usage["cached_prompt_tokens"] == prefix


def test_choose_gives_option_probabilities_and_leaves_answers_unchanged(smol) -> None:  # type: ignore[no-untyped-def]
    """choose() reads the first reply token's probabilities (rag/verify.py's yes/no); it is
    repeatable, and a question asked after it gets the same answer as before it."""
    before, _ = ask(smol, "When does the museum open?")
    messages = [
        {"role": "system", "content": "Reply with one word: yes or no."},
        {"role": "user", "content": f"{PASSAGE}\nIs the museum closed on Mondays?"},
    ]
    first = smol.choose(messages, ("yes", "no"))
    assert set(first) == {"yes", "no"}
    assert abs(sum(first.values()) - 1) < 1e-9 and all(0 < p < 1 for p in first.values())
    assert smol.choose(messages, ("yes", "no")) == first
    # the probabilities of the first reply token, over the whole vocabulary
    p = {w: smol.first_token_probability(w) for w in ("yes", "Yes", "no", "No")}
    assert all(v is not None and 0 < v < 1 for v in p.values()) and sum(p.values()) <= 1 + 1e-9
    p_yes, p_no = p["yes"] + p["Yes"], p["no"] + p["No"]  # choose() counts both spellings
    assert abs(p_yes / (p_yes + p_no) - first["yes"]) < 1e-9
    reply = "".join(smol.stream(messages, max_tokens=1))
    assert smol.first_token_probability(reply) >= max(p.values()) - 1e-9  # greedy: the likeliest
    after, _ = ask(smol, "When does the museum open?")
    assert after == before


def test_a_reply_streamed_step_by_step_from_several_threads_releases_the_model(smol) -> None:  # type: ignore[no-untyped-def]
    """Gradio runs each step of a streamed answer in a worker thread, not always the same one:
    a reply begun in one thread and finished (or closed, by Stop) in others leaves the model
    free for the next answer, as a reply read in one thread does."""
    from concurrent.futures import ThreadPoolExecutor

    alone, _ = ask(smol, "When does the museum open?")
    messages = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"{PASSAGE}\nQuestion: When does the museum open?"},
    ]
    pieces = []
    with ThreadPoolExecutor(1) as a, ThreadPoolExecutor(1) as b:
        reply = smol.stream(messages, max_tokens=24)
        pieces.append(a.submit(next, reply).result())
        pieces += b.submit(list, reply).result()  # the rest, and the end, in another thread
        assert "".join(pieces) == alone
        stopped = smol.stream(messages, max_tokens=24)
        a.submit(next, stopped).result()
        b.submit(stopped.close).result()  # Stop, from another thread
        assert b.submit(ask, smol, "When does the museum open?").result(timeout=120)[0] == alone
