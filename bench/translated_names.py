"""The cosine at which a name is held by its translation (rag/support.py Rules.translated).

    .venv/bin/python bench/translated_names.py [EVAL_DIR] [--sample 120] [--seed 0]

On English questions over Spanish passages (xquad_en_q_es_mini), each gold answer is given
in both languages. Positives: the English and the Spanish gold, where they differ ("Sweden",
"Suecia"). Negatives: the English gold against the other runs of capitalised words of the
passage sentence that holds the Spanish gold ("Sweden", "Energiprojekt AB"). Both sides are
embedded as queries with the default embedder, as SupportChecker compares them. Prints the
share of positives kept and of negatives let through at each threshold. Tune on *_mini only.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rag.chunking import split_sentences  # noqa: E402
from rag.config import Settings  # noqa: E402
from rag.factory import build_embedder  # noqa: E402
from rag.language import fold  # noqa: E402
from rag.support import _name_runs  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("eval_dir", nargs="?", default=str(ROOT.parent / "shared/eval"))
    parser.add_argument("--sample", type=int, default=120)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    folder = Path(args.eval_dir) / "xquad_en_q_es_mini"
    docs = {
        d["id"]: d for d in map(json.loads, (folder / "documents.jsonl").open(encoding="utf-8"))
    }
    rows = [json.loads(line) for line in (folder / "questions.jsonl").open(encoding="utf-8")]
    rows = random.Random(args.seed).sample(rows, min(args.sample, len(rows)))
    embedder = build_embedder(Settings())
    vectors: dict[str, np.ndarray] = {}

    def vector(text: str) -> np.ndarray:
        if text not in vectors:
            vectors[text] = np.asarray(embedder.embed_query(text))
        return vectors[text]

    positives, negatives = [], []
    for row in rows:
        en, es = row["answers_question_lang"][0], row["answers"][0]
        if fold(en) == fold(es) or not en[:1].isupper():
            continue
        text = docs[row["context_id"]]["text"]
        sentence = next((text[a:b] for a, b in split_sentences(text) if es in text[a:b]), None)
        if sentence is None:
            continue
        positives.append(float(vector(en) @ vector(es)))
        for run in _name_runs(sentence):
            if fold(run) in fold(es) or fold(es) in fold(run):
                continue
            negatives.append((float(vector(en) @ vector(run)), en, run))
    print(f"{len(positives)} positive pairs, {len(negatives)} negative pairs")
    for threshold in (0.85, 0.87, 0.88, 0.9, 0.92):
        kept = np.mean([p >= threshold for p in positives])
        through = np.mean([n >= threshold for n, _, _ in negatives])
        print(f"threshold {threshold}: positives kept {kept:.3f}, negatives through {through:.3f}")
    print("closest negatives:", sorted(negatives, reverse=True)[:8])


if __name__ == "__main__":
    main()
