import hashlib
from pathlib import Path

import pytest

from models.weights import AssembledGGUF, assemble_gguf, resolve_embedder, resolve_gguf
from rag.errors import ModelNotFound


def parts(tmp_path: Path, blobs: list[bytes]) -> list[Path]:
    paths = []
    for i, blob in enumerate(blobs):
        p = tmp_path / f"part{i:02d}.bin"
        p.write_bytes(blob)
        paths.append(p)
    return paths


def spec(data: bytes, sha: str | None = None) -> AssembledGGUF:
    return AssembledGGUF(
        "m.gguf", ("p1", "p2", "p3"), len(data), sha or hashlib.sha256(data).hexdigest()
    )


def test_assembles_once_with_checks(tmp_path: Path) -> None:
    blobs = [b"GGUF" + b"a" * 100, b"b" * 50, b"c" * 7]
    paths = parts(tmp_path, blobs)
    calls = []

    def finder(modules):
        calls.append(modules)
        return paths

    out = assemble_gguf(spec(b"".join(blobs)), tmp_path / "models", finder)
    assert out.read_bytes() == b"".join(blobs)
    assert assemble_gguf(spec(b"".join(blobs)), tmp_path / "models", finder) == out
    assert len(calls) == 1  # second call found the assembled file
    assert not list((tmp_path / "models").glob(".assembling-*"))


def test_corrupt_parts_leave_nothing_behind(tmp_path: Path) -> None:
    paths = parts(tmp_path, [b"x" * 10, b"y" * 10, b"z" * 10])
    bad = spec(b"x" * 10 + b"y" * 10 + b"z" * 10, sha="0" * 64)
    with pytest.raises(ModelNotFound, match="corrupt.*force-reinstall"):
        assemble_gguf(bad, tmp_path / "models", lambda m: paths)
    assert list((tmp_path / "models").iterdir()) == []


def test_packaged_names_resolve_offline(tmp_path: Path) -> None:
    path, packaged = resolve_embedder("all-MiniLM-L6-v2")
    assert packaged is not None and (Path(path) / "modules.json").is_file()
    assert resolve_embedder("sentence-transformers/all-MiniLM-L6-v2")[0] == path
    gguf = resolve_gguf("smollm2-135m-instruct", tmp_path)
    assert gguf.read_bytes()[:4] == b"GGUF"


def test_unknown_model_says_what_to_give(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match="packaged name.*gguf"):
        resolve_gguf("no-such-model", tmp_path)
    with pytest.raises(ModelNotFound, match="hf:OWNER/REPO/FILE.gguf"):
        resolve_gguf("hf:justone", tmp_path)
