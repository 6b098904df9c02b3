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
    prefix = len(warm._prefix_tokens(warm.llm, [{"role": "system", "content": SYSTEM}]))
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
