"""Build the concrete parts from the settings; everything else receives them as arguments."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from appliance.audit import AuditLog
from appliance.embedding import (
    Embedder,
    SentenceTransformerEmbedder,
    declared_dimension,
    model_display_name,
)
from appliance.errors import ConfigError, ModelError
from appliance.filehash import hash_cache_path
from appliance.gate import ModelGate
from appliance.generation import Generator
from appliance.manifest import Manifest
from appliance.models import known_model, resolve_embed_model, resolve_llm
from appliance.rag import AnswerPolicy, Assistant
from appliance.retrieval import Retriever
from appliance.settings import Settings
from appliance.store import CollectionMeta, VectorStore
from appliance.store.check import check_index
from appliance.store.factory import open_store
from appliance.store.lock import OwnerLock

if TYPE_CHECKING:
    from appliance.remote_llm import RemoteConfig


@dataclass
class IndexServices:
    settings: Settings
    embed_model_dir: Path
    store: VectorStore
    manifest: Manifest
    lock: OwnerLock | None = None

    def close(self) -> None:
        self.manifest.close()
        self.store.close()
        if self.lock is not None:
            self.lock.release()


def _check_backend(settings: Settings) -> None:
    if not settings.qdrant_url:
        if settings.qdrant_api_key is not None:
            raise ConfigError(
                "APPLIANCE_QDRANT_API_KEY is set but APPLIANCE_QDRANT_URL is not: set the "
                "server's URL, or unset the key to use the embedded store"
            )
        return
    if settings.qdrant_path is not None:
        raise ConfigError(
            "APPLIANCE_QDRANT_URL and APPLIANCE_QDRANT_PATH are both set: the Qdrant server "
            "replaces the embedded store, so unset one of them"
        )
    parts = urlsplit(settings.qdrant_url)
    if parts.username or parts.password:
        raise ConfigError(
            "APPLIANCE_QDRANT_URL must not contain a user or password: put the server's key "
            "in APPLIANCE_QDRANT_API_KEY"
        )


def build_embedder(settings: Settings) -> Embedder:
    return SentenceTransformerEmbedder(
        resolve_embed_model(settings.embed_model),
        batch_size=settings.embed_batch_size,
        device=settings.embed_device,
    )


def open_index(
    settings: Settings,
    embedder: Embedder | None = None,
    *,
    rebuild: bool = False,
    allow_damaged: bool = False,
) -> IndexServices:
    """Open the store and manifest. Without an embedder, the collection's own dimension is used.

    An index holding fewer chunks than the manifest records is refused (IndexDamagedError,
    naming `appliance repair`) unless `allow_damaged`; `rebuild` starts the collection empty.
    """
    _check_backend(settings)
    model_dir = resolve_embed_model(settings.embed_model)

    def vectors(meta: CollectionMeta | None) -> tuple[int, str]:
        if embedder is not None:
            return embedder.dimension, embedder.name
        if meta is not None:
            return meta.dimension, meta.embed_model
        dimension = declared_dimension(model_dir)
        if dimension:
            return dimension, model_display_name(model_dir)
        built = build_embedder(settings)
        return built.dimension, built.name

    lock = _lock_data_dir(settings) if settings.qdrant_url else None
    try:
        store = open_store(settings, vectors, rebuild)
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    try:
        manifest = Manifest(settings.manifest_path)
    except Exception:
        store.close()
        if lock is not None:
            lock.release()
        raise
    index = IndexServices(settings, model_dir, store, manifest, lock)
    if not (rebuild or allow_damaged):
        try:
            check_index(store, manifest.entries()).raise_if_damaged()
        except BaseException:
            index.close()
            raise
    return index


def _lock_data_dir(settings: Settings) -> OwnerLock:
    """A Qdrant server takes writers from anywhere, but the manifest in the data folder has
    one writer at a time, as with the embedded store."""
    lock = OwnerLock(
        settings.manifest_path.with_suffix(".lock"),
        f"the document index in {settings.manifest_path.parent}",
    )
    lock.acquire()
    return lock


def resolve_llm_model(settings: Settings) -> Path:
    """The configured GGUF, or the known (default) model, joined from its packages on first
    use. Only for the in-process model: with APPLIANCE_LLM_URL no local GGUF is needed."""
    return resolve_llm(settings.llm_model, settings.models_dir)


def check_llm_files(settings: Settings) -> None:
    """Report a wrong model or adapter path at start-up, not at the first relevant question."""
    if settings.llm_url:
        # The server loads its own weights; an adapter set here would silently not apply.
        if settings.llm_adapter is not None:
            raise ConfigError(
                "APPLIANCE_LLM_ADAPTER is set, but APPLIANCE_LLM_URL sends questions to an LLM "
                "server, which loads its own adapters: unset one of the two"
            )
        return
    model = settings.llm_model
    if model is not None and known_model(model) is None and not Path(model).is_file():
        resolve_llm(model, settings.models_dir)  # raises the error that names the choices
    adapter = settings.llm_adapter
    if adapter is not None and not adapter.is_file():
        raise ModelError(f"APPLIANCE_LLM_ADAPTER={adapter} is not a file: point it at a .gguf file")


def remote_config(settings: Settings) -> RemoteConfig:
    from appliance.remote_llm import RemoteConfig

    if not settings.llm_url:
        raise ConfigError("APPLIANCE_LLM_URL is not set: no LLM server is configured")
    key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
    return RemoteConfig(
        url=settings.llm_url,
        api_key=key,
        model=settings.llm_remote_model,
        timeout_s=settings.llm_timeout_s,
        context_size=settings.llm_context_size,
        temperature=settings.llm_temperature,
        prompt_mode=settings.llm_prompt_mode,
    )


def build_generator(settings: Settings) -> Generator:
    """The LLM server at APPLIANCE_LLM_URL when set, else the GGUF model in this process."""
    from appliance.generation import LlamaCppGenerator
    from appliance.remote_llm import OpenAICompatibleGenerator

    if settings.llm_url:
        return OpenAICompatibleGenerator(remote_config(settings))
    return LlamaCppGenerator(
        resolve_llm_model(settings),
        adapter_path=settings.llm_adapter,
        context_size=settings.llm_context_size,
        threads=settings.llm_threads,
        gpu_layers=settings.llm_gpu_layers,
        temperature=settings.llm_temperature,
        prompt_mode=settings.llm_prompt_mode,
        hash_cache=hash_cache_path(settings.models_dir),
    )


@dataclass
class AnswerServices:
    index: IndexServices
    embedder: Embedder
    audit: AuditLog
    assistant: Assistant

    def close(self) -> None:
        self.audit.close()
        self.index.close()


def build_answer_services(
    settings: Settings,
    load_generator: Callable[[], Generator] | None = None,
    allow_damaged: bool = False,
) -> AnswerServices:
    """Everything a question needs. The model itself loads on the first generated answer.

    `allow_damaged`: open a damaged index anyway (the server reports it on /healthz)."""
    check_llm_files(settings)
    embedder = build_embedder(settings)
    index = open_index(settings, embedder, allow_damaged=allow_damaged)
    try:
        audit = AuditLog(settings.audit_path, key_file=settings.resolved_audit_key_file)
    except Exception:
        index.close()
        raise
    assistant = Assistant(
        Retriever(embedder, index.store, settings.retrieval),
        audit,
        ModelGate(settings.llm_queue_size, settings.llm_queue_timeout_s),
        load_generator or (lambda: build_generator(settings)),
        AnswerPolicy(
            score_threshold=settings.score_threshold,
            max_tokens=settings.llm_max_tokens,
            collection=settings.collection,
        ),
    )
    return AnswerServices(index, embedder, audit, assistant)
