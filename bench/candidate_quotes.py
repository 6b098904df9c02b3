"""Would answering from the second or third closest sentence, chosen by the model's confidence,
hold the gold answer more often than answering from the closest one?

    .venv/bin/python bench/candidate_quotes.py QUESTIONS.jsonl STORE [--sample 60] [--seed 1]
        [--candidates 3] [--out FILE.json]

With `quote_choice` auto over selected sentences the engine quotes the evidence sentence
closest to the question (`rag.evidence.closest`), and the model answers right after its id.
For each question this script builds the evidence as `Answerer.evidence` does, then, for each
of the `--candidates` closest sentences, begins the reply with that sentence's id (as the
engine does) and lets the model write its answer greedily, token by token, recording each
token's log-probability and the entropy of its distribution. No refusal signal is applied.

Reports the share of questions whose answer holds a gold answer: from the closest sentence
(what the engine answers, before its checks), the best of the first two and three (an oracle:
the ceiling of any choice among them), and the choice of each confidence rule (the candidate
whose answer has the highest mean / total / lowest token log-probability, lowest mean entropy,
or highest probability of its id as the reply's first token), with margins. Tune on the *_mini
sets only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import questions  # noqa: E402  (bench/questions.py)

from rag import metrics, prompts  # noqa: E402
from rag.config import Settings  # noqa: E402
from rag.pipeline import Chatbot  # noqa: E402

MAX_TOKENS = 40


def written(generator: Any, system: str, blocks: list[str], tail: str, prefill: str) -> dict:
    """The model's greedy continuation of `prefill` up to the end of its line, with each
    token's log-probability and its distribution's entropy."""
    llm = generator.llm
    prefix, rest = generator._block_tokens(llm, system, blocks, tail, prefill)
    generator.blocks.prepare(llm, prefix)
    llm.eval(rest)
    tokens, logprobs, entropies = [], [], []
    for _ in range(MAX_TOKENS):
        lp = generator._logprobs(llm)
        token = int(np.argmax(lp))
        if token == llm.token_eos() or b"\n" in llm.detokenize([token]):
            break
        tokens.append(token)
        logprobs.append(float(lp[token]))
        entropies.append(float(-(np.exp(lp) * lp).sum()))
        llm.eval([token])
    generator.blocks.forget_live()
    llm.n_tokens = 0
    text = llm.detokenize(tokens).decode("utf-8", "replace")
    return {"answer": text, "logprobs": logprobs, "entropies": entropies}


def first_token(generator: Any, system: str, blocks: list[str], tail: str) -> Any:
    """The distribution of the reply's first token after QUOTE_PREFILL."""
    llm = generator.llm
    prefix, rest = generator._block_tokens(llm, system, blocks, tail, prompts.QUOTE_PREFILL)
    generator.blocks.prepare(llm, prefix)
    llm.eval(rest)
    lp = generator._logprobs(llm)
    generator.blocks.forget_live()
    llm.n_tokens = 0
    return lp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    questions.add_arguments(parser, sample=60, seed=1)
    parser.add_argument("--candidates", type=int, default=3)
    args = parser.parse_args()
    rows = questions.answerable(args)
    bot = Chatbot(Settings(store=args.store))
    answerer = bot.answerer
    generator: Any = bot.generator  # llama.cpp's: its model and KV state are read
    system = prompts.quote_system()
    records = []
    for n, row in enumerate(rows, 1):
        question = row["question"]
        golds = row["answers"] + row.get("answers_question_lang", [])
        evidence = answerer.evidence(question, bot.search(question))
        ranked = answerer._closest(question, evidence, k=len(evidence.ids))
        language = bot.answer_language(question)
        blocks = [b.text() for b in evidence.blocks]
        candidates = []
        for line_id in ranked[: args.candidates]:
            source = answerer._source_language(evidence, [line_id], language)
            tail = prompts.quote_tail(question, source or language)
            first = first_token(generator, system, blocks, tail)
            id_token = generator.llm.tokenize(f" {line_id}".encode(), add_bos=False)[0]
            begun = f"{prompts.QUOTE_PREFILL} {line_id}\n{prompts.QUOTE_ANSWER}"
            reply = written(generator, system, blocks, tail, begun)
            block, line = evidence.line(line_id)  # type: ignore[misc]
            sentence = block.hit.chunk.text[line.start : line.end]
            candidates.append(
                {
                    "id": line_id,
                    **reply,
                    "id_logprob": float(first[id_token]),
                    "sentence_gold": bool(metrics.contains_gold(sentence, golds)),
                    "gold": bool(metrics.contains_gold(reply["answer"], golds)),
                }
            )
        records.append({"question": question, "candidates": candidates})
        print(n, question, [(c["id"], c["answer"][:40], c["gold"]) for c in candidates], flush=True)
    report = summarize([r for r in records if len(r["candidates"]) >= 2])
    print(json.dumps(report, indent=2))
    if args.out:
        lines = ",\n".join(json.dumps(r, ensure_ascii=False) for r in records)  # one per line
        summary = json.dumps(report, indent=1)
        text = f'{{"summary": {summary},\n"records": [\n{lines}\n]}}\n'
        Path(args.out).write_text(text, encoding="utf-8")


RULES = {
    "mean_logprob": lambda c: statistics.mean(c["logprobs"]) if c["logprobs"] else -99.0,
    "total_logprob": lambda c: sum(c["logprobs"]) if c["logprobs"] else -99.0,
    "lowest_logprob": lambda c: min(c["logprobs"]) if c["logprobs"] else -99.0,
    "mean_entropy": lambda c: -statistics.mean(c["entropies"]) if c["entropies"] else -99.0,
    "id_logprob": lambda c: c["id_logprob"],
}


def summarize(records: list[dict]) -> dict:
    def share(values: list[bool]) -> float:
        return round(statistics.mean(values), 3) if values else 0.0

    out: dict[str, Any] = {"n": len(records)}
    out["closest_sentence_holds"] = share([r["candidates"][0]["sentence_gold"] for r in records])
    out["closest_answer_holds"] = share([r["candidates"][0]["gold"] for r in records])
    for k in (2, 3):
        out[f"best_of_{k}_holds"] = share(
            [any(c["gold"] for c in r["candidates"][:k]) for r in records]
        )
    for name, score in RULES.items():
        for k in (2, 3):
            for margin in (0.0, 0.1, 0.2):
                chosen = []
                for r in records:
                    best = r["candidates"][0]
                    for c in r["candidates"][1:k]:
                        if score(c) > score(best) + margin:
                            best = c
                    chosen.append(best["gold"])
                out[f"{name}_of_{k}_margin_{margin}"] = share(chosen)
    return out


if __name__ == "__main__":
    main()
