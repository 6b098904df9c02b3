"""Answer verification: the model is asked whether the passages an answer cites state it.

The citation checks of rag/support.py compare meaning and names; they cannot tell a claim the
passage makes from one built out of the passage's own words ("X received the Nobel prize in
1986", where 1986 is another event's year). This asks the answer model, in a separate short
prompt (rag/prompts.py: VERIFY), whether the cited passages state the answer as the answer to
the question, and reads its confidence in "yes" from the next-token probabilities when the
generator exposes them (LlamaCppGenerator.choose), or its one-word reply otherwise.

Off by default (`verify_answers`): with the packaged 1.5B model it refuses some correct answers
with the wrong ones (bench/replay_verify.py; docs/results.md, "Answers").
"""

from __future__ import annotations

from collections.abc import Sequence

from rag import prompts
from rag.protocols import Chooser, Generator
from rag.types import Hit


def support_probability(
    generator: Generator, question: str, answer: str, passages: Sequence[Hit]
) -> float | None:
    """How sure the model is that `passages` state `answer` to `question`, from 0 to 1; None
    when it gave no yes/no reply (a generator without probabilities)."""
    messages = prompts.verify_messages(question, answer, passages)
    if isinstance(generator, Chooser):
        chosen = generator.choose(messages, ("yes", "no"))
        if chosen:
            return float(chosen["yes"])
    verdict = prompts.verdict("".join(generator.stream(messages, max_tokens=2)))
    return None if verdict is None else float(verdict)
