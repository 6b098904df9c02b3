"""Tune hybrid search's fusion weights on the `*_mini` questions; check them on the held-out rest.

For each evaluation set, the set's full document pool is ingested with ragchat's defaults
(multilingual-e5-small, 1,000-character chunks) into a cached store; every question's dense
and keyword rankings (top 50 each) are computed once with ragchat's own components. Fusion
parameters (rrf_k, keyword weight when the chunk is in the question's language, and when it
is not) are then swept on the `*_mini` questions only; the chosen setting is the one whose
worst margin over the best single retriever (R@5 and MRR@10, across the four sets) is largest.
A seeded sample of the full question sets minus the mini questions (--held-out, default 400
per set) is the held-out check. Quality only: the embedder runs on one thread, so that the
figures do not depend on what else runs on the machine.

    .venv/bin/python bench/tune_fusion.py --out bench/results/tune_fusion.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import random
import time
from pathlib import Path
from typing import Any

from rag import Chatbot, Settings
from rag.language import detect_language
from rag.retrieval import Fusion, Retriever, fuse
from rag.types import Hit

SETS = ("piaf_fr", "xquad_en", "xquad_en_q_es", "xquad_en_q_de")
DEPTH = 50
# (method, rrf_k): rrf_k only matters to "rrf"
METHODS = (*(("rrf", k) for k in (5, 10, 20, 30, 45, 60, 100)), ("convex", 60))
GRID = {
    "same_language": (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.75, 1.0, 1.25, 1.5, 2.0),
    "other_language": (0.0, 0.1, 0.2, 0.35, 0.5),
}
PLAIN_RRF = Fusion(method="rrf", rrf_k=60, same_language=1.0, other_language=1.0, depth=DEPTH)
DEFAULT = Fusion(depth=DEPTH)  # ragchat's current setting, reported beside the chosen one


def load_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def rankings(eval_dir: Path, name: str, cache: Path, held_out: int) -> dict[str, Any]:
    """Dense and keyword rankings of every question of a set (mini and held-out), cached."""
    out = cache / f"{name}.rankings2.json"
    if out.is_file():
        return json.loads(out.read_text())
    bot = Chatbot(Settings(store=str(cache / f"store-{name}")))
    t0 = time.perf_counter()
    report = bot.ingest([eval_dir / name / "documents.jsonl"])
    ingest_s = time.perf_counter() - t0
    retriever = Retriever(bot.embedder, bot.store, bot.keyword)
    by_words = Retriever(bot.embedder, bot.store, bot.keyword, mode="keyword")
    mini_ids = {q["id"] for q in load_jsonl(eval_dir / f"{name}_mini" / "questions.jsonl")}
    questions = load_jsonl(eval_dir / name / "questions.jsonl")
    rest = [q for q in questions if q["id"] not in mini_ids]
    keep = mini_ids | {q["id"] for q in random.Random(0).sample(rest, min(held_out, len(rest)))}
    rows = []
    for q in (q for q in questions if q["id"] in keep):
        dense = retriever.dense(q["question"], DEPTH)
        keyword = by_words.search(q["question"], DEPTH)
        rows.append(
            {
                "id": q["id"],
                "mini": q["id"] in mini_ids,
                "gold": q["context_id"],
                "lang": detect_language(q["question"]),
                "dense": [_hit(h) for h in dense],
                "keyword": [_hit(h) for h in keyword],
            }
        )
    data = {
        "set": name,
        "chunks": report.chunks,
        "documents": report.documents,
        "ingest_s": round(ingest_s, 1),
        "rows": rows,
    }
    out.write_text(json.dumps(data))
    return data


def _hit(hit: Hit) -> list[Any]:
    return [hit.chunk.id, hit.chunk.record_id, hit.chunk.metadata.get("lang", ""), hit.score]


def recorded_hits(items: list[list[Any]]) -> list[Hit]:
    from rag.types import Chunk

    return [
        Hit(Chunk(cid, doc_id, "", 0, 0, {"lang": lang}), score=score, rank=r)
        for r, (cid, doc_id, lang, score) in enumerate(items, 1)
    ]


def scores(ranked_docs: list[list[str]], golds: list[str]) -> dict[str, float]:
    r5 = mrr = 0.0
    for docs, gold in zip(ranked_docs, golds):
        rank = next((i for i, d in enumerate(docs[:10], 1) if d == gold), None)
        r5 += rank is not None and rank <= 5
        mrr += 1.0 / rank if rank else 0.0
    n = max(len(golds), 1)
    return {"r5": r5 / n, "mrr10": mrr / n}


def evaluate(rows: list[dict[str, Any]], method: str, fusion: Fusion | None = None) -> dict:
    ranked = []
    for row in rows:
        if method == "dense":
            hits = recorded_hits(row["dense"])
        elif method == "keyword":
            hits = recorded_hits(row["keyword"])
        else:
            assert fusion is not None
            hits = fuse(
                recorded_hits(row["dense"]), recorded_hits(row["keyword"]), row["lang"], 10, fusion
            )
        ranked.append([h.chunk.doc_id for h in hits[:10]])
    return scores(ranked, [row["gold"] for row in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eval-dir", type=Path, default=Path("../shared/eval"))
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache/ragchat/tune")
    parser.add_argument("--out", type=Path, default=Path("bench/results/tune_fusion.json"))
    parser.add_argument("--held-out", type=int, default=400, help="held-out questions per set")
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    import torch

    torch.set_num_threads(1)
    data = {name: rankings(args.eval_dir, name, args.cache, args.held_out) for name in SETS}
    mini = {n: [r for r in d["rows"] if r["mini"]] for n, d in data.items()}
    held = {n: [r for r in d["rows"] if not r["mini"]] for n, d in data.items()}
    singles = {n: {m: evaluate(mini[n], m) for m in ("dense", "keyword")} for n in SETS}

    sweep = []
    for (method, k), same, other in itertools.product(METHODS, *GRID.values()):
        fusion = Fusion(method, k, same, other, depth=DEPTH)
        per_set = {n: evaluate(mini[n], "hybrid", fusion) for n in SETS}
        margin = min(
            per_set[n][m] - max(singles[n]["dense"][m], singles[n]["keyword"][m])
            for n in SETS
            for m in ("r5", "mrr10")
        )
        mean_r5 = sum(per_set[n]["r5"] for n in SETS) / len(SETS)
        mean_mrr = sum(per_set[n]["mrr10"] for n in SETS) / len(SETS)
        sweep.append(
            {
                "fusion": [method, k, same, other],
                "margin": margin,
                "mean_r5": mean_r5,
                "mean_mrr10": mean_mrr,
                "sets": per_set,
            }
        )
    # never worse than the best single retriever first, then the headline R@5, then MRR@10
    sweep.sort(key=lambda s: (-round(s["margin"], 9), -s["mean_r5"], -s["mean_mrr10"]))
    best = sweep[0]
    chosen = Fusion(*best["fusion"], depth=DEPTH)

    result = {
        "command": "python bench/tune_fusion.py",
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "python": platform.python_version(),
        },
        "depth": DEPTH,
        "grid": {"methods": METHODS, **GRID},
        "sets": {
            n: {
                "chunks": data[n]["chunks"],
                "ingest_s": data[n]["ingest_s"],
                "mini_questions": len(mini[n]),
                "held_out_questions": len(held[n]),
            }
            for n in SETS
        },
        "chosen": {
            "method": chosen.method,
            "rrf_k": chosen.rrf_k,
            "same_language": chosen.same_language,
            "other_language": chosen.other_language,
        },
        "mini": {
            n: {
                **singles[n],
                "hybrid": best["sets"][n],
                "plain_rrf_60": evaluate(mini[n], "hybrid", PLAIN_RRF),
                "ragchat_default": evaluate(mini[n], "hybrid", DEFAULT),
            }
            for n in SETS
        },
        "held_out": {
            n: {m: evaluate(held[n], m) for m in ("dense", "keyword")}
            | {
                "hybrid": evaluate(held[n], "hybrid", chosen),
                "plain_rrf_60": evaluate(held[n], "hybrid", PLAIN_RRF),
                "ragchat_default": evaluate(held[n], "hybrid", DEFAULT),
            }
            for n in SETS
        },
        "top10": sweep[:10],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"chosen: {result['chosen']} (worst margin on mini {best['margin']:+.4f})")
    for part in ("mini", "held_out"):
        print(f"\n{part}: R@5 / MRR@10")
        print("| set | dense | keyword | plain RRF | ragchat's current | chosen |")
        print("|---|---|---|---|---|---|")
        for n in SETS:
            r = result[part][n]
            cells = [
                f"{r[m]['r5']:.3f} / {r[m]['mrr10']:.3f}"
                for m in ("dense", "keyword", "plain_rrf_60", "ragchat_default", "hybrid")
            ]
            print(f"| {n} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
