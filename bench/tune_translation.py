"""Does translating the question help hybrid search across languages? Tune its fusion weight.

For the cross-language sets (xquad_en_q_es, xquad_en_q_de: English questions, Spanish or German
passages), every `*_mini` question is translated into the documents' language by ragchat's own
`Chatbot.translate` (the default model, temperature 0; cached in the cache directory, about
3 s a question on 2 cores), then looked up in the store's keyword index in that language
(`KeywordIndex.search`, titles included). Each question's dense ranking is the one
bench/tune_fusion.py recorded (run it first: it also builds the cached stores). The
translation's keyword ranking is fused with it by `rag.retrieval.fuse` for a grid of weights
and RRF constants; the report gives R@5 and MRR@10 of each setting against dense search alone,
best worst-margin first, as bench/tune_fusion.py chooses.

    .venv/bin/python bench/tune_translation.py --out bench/results/tune_translation.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

from tune_fusion import recorded_hits as hits  # the rankings tune_fusion.py recorded
from tune_fusion import scores

from rag import Chatbot, Settings
from rag.retrieval import Fusion, fuse

SETS = {"xquad_en_q_es": "es", "xquad_en_q_de": "de"}
RRF_K = (20, 40, 60, 100, 150)
WEIGHTS = (0.1, 0.15, 0.2, 0.25, 0.3, 0.5)


def translations(bot: Chatbot, rows: list[dict[str, Any]], cache: Path) -> dict[str, str]:
    done: dict[str, str] = json.loads(cache.read_text()) if cache.is_file() else {}
    t0, new = time.perf_counter(), 0
    for row in rows:
        if row["id"] not in done:
            done[row["id"]] = next(iter(bot.translate(row["question"]).values()), "")
            new += 1
            if new % 20 == 0:
                cache.write_text(json.dumps(done, ensure_ascii=False))
                print(f"{new} translated, {time.perf_counter() - t0:.0f} s", flush=True)
    cache.write_text(json.dumps(done, ensure_ascii=False))
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eval", type=Path, default=Path(__file__).parents[1] / "../shared/eval")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache/ragchat/tune")
    parser.add_argument("--out", type=Path, default=Path("bench/results/tune_translation.json"))
    parser.add_argument("--sets", default=",".join(SETS), help="some of " + ", ".join(SETS))
    args = parser.parse_args()
    report: dict[str, Any] = {
        "command": "python bench/tune_translation.py --sets " + args.sets,
        "machine": {"cpu": platform.processor() or platform.machine(), "python": "3.11"},
        "sets": {},
        "grid": [],
    }
    data = {}
    for name in args.sets.split(","):
        lang = SETS[name]
        recorded = json.loads((args.cache / f"{name}.rankings2.json").read_text())
        questions = {
            q["id"]: q["question"]
            for q in map(json.loads, (args.eval / name / "questions.jsonl").open())
        }
        rows = [dict(r, question=questions[r["id"]]) for r in recorded["rows"] if r["mini"]]
        bot = Chatbot(Settings(store=str(args.cache / f"store-{name}"), translate=True))
        done = translations(bot, rows, args.cache / f"{name}.translations.json")
        keyword = [
            [[h.chunk_id, "", lang, h.score] for h in bot.keyword.search(done[r["id"]], 50, {lang})]
            for r in rows
        ]
        ids = sorted({i for k in keyword for i, *_ in k})
        doc_of = {c.id: c.record_id for c in bot.store.fetch(ids)}
        for ranking in keyword:
            for item in ranking:
                item[1] = doc_of.get(item[0], "")
        golds = [r["gold"] for r in rows]
        dense = scores([[h[1] for h in r["dense"][:10]] for r in rows], golds)
        alone = scores([[h[1] for h in k[:10]] for k in keyword], golds)
        report["sets"][name] = {
            "questions": len(rows),
            "dense": dense,
            "keyword_of_translation": alone,
            "examples": [[r["question"], done[r["id"]]] for r in rows[:5]],
        }
        data[name] = (rows, keyword, golds, dense)
        print(name, "dense", dense, "keyword of the translation", alone, flush=True)
    for k in RRF_K:
        for w in WEIGHTS:
            fusion = Fusion(translated=w, translated_rrf_k=k)
            entry: dict[str, Any] = {"translated_rrf_k": k, "translated": w, "sets": {}}
            for name, (rows, keyword, golds, dense) in data.items():
                ranked = [
                    [
                        h.chunk.doc_id
                        for h in fuse(hits(r["dense"]), [], "en", 10, fusion, [(hits(kw), w)])
                    ]  # fmt: skip
                    for r, kw in zip(rows, keyword, strict=True)
                ]
                s = scores(ranked, golds)
                entry["sets"][name] = {**s, "margin_r5": s["r5"] - dense["r5"],
                                       "margin_mrr10": s["mrr10"] - dense["mrr10"]}  # fmt: skip
            entry["worst_margin"] = min(
                min(v["margin_r5"], v["margin_mrr10"]) for v in entry["sets"].values()
            )
            report["grid"].append(entry)
    report["grid"].sort(key=lambda e: (-e["worst_margin"], -sum(
        v["r5"] for v in e["sets"].values())))  # fmt: skip
    for entry in report["grid"][:8]:
        print(json.dumps(entry))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
