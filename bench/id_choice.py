"""Which evidence sentence the model names, against which one holds the gold answer.

    .venv/bin/python bench/id_choice.py QUESTIONS.jsonl STORE [--sample 60] [--seed 1]
        [--out FILE.json]

For each question (the default settings' retrieval and evidence, as `Answerer` builds them),
the sentences of the evidence that hold a gold answer are found, then the model reads the
quoted prompt and three rankings of the evidence sentences are recorded:

- named: the ids the model writes under the answer grammar (what the engine uses today);
- model: every shown id scored by the model's probability of writing it first after
  "Evidence:" (the product of its tokens' probabilities, read from the logits);
- embedder: `rag.evidence.closest` (question-sentence cosine plus shared words).

Reports, over the questions whose evidence holds the gold, how often each ranking's first
one or two ids hold it, and the rank fusion of model and embedder. No answer is written.
Tune on the *_mini sets only.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import questions  # noqa: E402  (bench/questions.py)

from rag import evidence as ev  # noqa: E402
from rag import metrics, prompts  # noqa: E402
from rag.config import Settings  # noqa: E402
from rag.pipeline import Chatbot  # noqa: E402
from rag.support import answers_the_question  # noqa: E402


def id_logprobs(generator, system: str, blocks: list[str], tail: str, ids: list[str]) -> dict:
    """log P(the reply after QUOTE_PREFILL begins with " <id>") for each id, by walking the
    token trie of the ids from the prompt's KV state."""
    llm = generator.llm
    prefix, rest = generator._block_tokens(llm, system, blocks, tail, prompts.QUOTE_PREFILL)
    generator.blocks.prepare(llm, prefix)
    llm.eval(rest)
    generator.blocks.forget_live()
    base = llm.n_tokens
    seqs = {i: llm.tokenize(f" {i}".encode(), add_bos=False, special=False) + [None] for i in ids}
    cache: dict[tuple, object] = {(): generator._logprobs(llm)}

    def dist(path: tuple) -> object:
        if path not in cache:
            dist(path[:-1])
            llm.n_tokens = base + len(path) - 1
            llm.eval([path[-1]])
            cache[path] = generator._logprobs(llm)
        return cache[path]

    # the end of an id is a "," or a newline: scored as the best of them
    ends = [llm.tokenize(t.encode(), add_bos=False, special=False)[0] for t in (",", "\n", ", ")]
    out = {}
    for i, seq in seqs.items():
        total, path = 0.0, ()
        for tok in seq:
            lp = dist(path)
            if tok is None:
                total += max(float(lp[e]) for e in ends)
            else:
                total += float(lp[tok])
                path = path + (tok,)
        out[i] = total
    llm.n_tokens = 0
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    questions.add_arguments(parser, sample=60, seed=1)
    args = parser.parse_args()
    rows = questions.answerable(args)
    bot = Chatbot(Settings(store=args.store))
    answerer, generator = bot.answerer, bot.generator
    records = []
    for n, row in enumerate(rows, 1):
        question = row["question"]
        golds = row["answers"] + row.get("answers_question_lang", [])
        hits = bot.search(question)
        evidence = answerer.evidence(question, hits)
        text = {
            line.id: b.hit.chunk.text[line.start : line.end]
            for b in evidence.blocks
            for line in b.lines
        }
        gold_ids = [i for i, t in text.items() if metrics.contains_gold(t, golds)]
        if not gold_ids:
            continue
        language = bot.answer_language(question)
        system = prompts.quote_system()
        blocks = [b.text() for b in evidence.blocks]
        tail = prompts.quote_tail(question, language)
        named = "".join(
            generator.stream_blocks(
                system,
                blocks,
                tail,
                max_tokens=24,
                grammar=prompts.quote_grammar(list(evidence.ids)),
                prefill=prompts.QUOTE_PREFILL,
            )
        )
        scores = id_logprobs(generator, system, blocks, tail, list(evidence.ids))
        model = sorted(scores, key=lambda i: -scores[i])
        embedder = ev.closest(
            evidence,
            answerer._query_vector(question),
            ev.question_words(question),
            answerer.checker.sentence_vectors,
            k=len(evidence.ids),
        )
        records.append(
            {
                "question": question,
                "gold_ids": gold_ids,
                "named": prompts.parse_quoted(prompts.QUOTE_PREFILL + named).ids,
                "model": model,
                "model_logprob": {i: round(scores[i], 3) for i in model},
                "embedder": embedder,
                "kind_ok": [i for i, t in text.items() if answers_the_question(question, t)],
                "n_ids": len(text),
            }
        )
        print(n, question, gold_ids, records[-1]["named"], model[:3], embedder[:3], flush=True)
    report = summarize(records)
    print(json.dumps(report, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps({"summary": report, "records": records}, indent=1))


def fused(record: dict, weight: float) -> list[str]:
    """Model and embedder ranks fused: 1/(k + rank), the model's weighted by `weight`."""
    score: dict[str, float] = {}
    for w, ranking in ((weight, record["model"]), (1.0, record["embedder"])):
        for r, i in enumerate(ranking):
            score[i] = score.get(i, 0.0) + w / (5 + r)
    return sorted(score, key=lambda i: -score[i])


def summarize(records: list[dict]) -> dict:
    def hold(ranking_of, k: int) -> float:
        return round(
            statistics.mean(bool(set(ranking_of(r)[:k]) & set(r["gold_ids"])) for r in records),
            3,
        )

    out = {"n": len(records), "ids_p50": statistics.median(r["n_ids"] for r in records)}
    out["named_holds"] = hold(lambda r: list(r["named"]), 4)
    out["named_first_holds"] = hold(lambda r: list(r["named"]), 1)
    for k in (1, 2, 3):
        out[f"model_top{k}"] = hold(lambda r: r["model"], k)
        out[f"embedder_top{k}"] = hold(lambda r: r["embedder"], k)
        for w in (0.5, 1.0, 2.0):
            out[f"fused{w}_top{k}"] = hold(lambda r, w=w: fused(r, w), k)
    out["model_top1_prob_p50"] = statistics.median(
        math.exp(max(r["model_logprob"].values())) for r in records
    )
    return out


if __name__ == "__main__":
    main()
