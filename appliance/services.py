"""Build the concrete parts from the settings; everything else receives them as arguments."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from appliance.audit import AuditLog
from appliance.embedding import (
    Embedder,
    SentenceTransformerEmbedder,
    declared_dimension,
    model_display_name,
)
from appliance.errors import ConfigError, ModelError
from appliance.gate import ModelGate
from appliance.generation import Generator
from appliance.manifest import Manifest
from appliance.models import default_llm_path, prepare_default_llm, resolve_embed_model
from appliance.rag import AnswerPolicy, Assistant
from appliance.retrieval import Retriever
from appliance.settings import Settings
from appliance.store import VectorStore
from appliance.store.edge import EdgeStore, read_collection_meta


@dataclass
class IndexServices:
    settings: Settings
    embed_model_dir: Path
    store: VectorStore
    manifest: Manifest

    def close(self) -> None:
        self.manifest.close()
        self.store.close()


def _check_backend(settings: Settings) -> None:
    if settings.qdrant_url:
        raise ConfigError(
            "APPLIANCE_QDRANT_URL is set, but this version only has the embedded Qdrant Edge "
            "store: unset APPLIANCE_QDRANT_URL to use it"
        )


def build_embedder(settings: Settings) -> Embedder:
    return SentenceTransformerEmbedder(
        resolve_embed_model(settings.embed_model),
        batch_size=settings.embed_batch_size,
        device=settings.embed_device,
    )


def open_index(settings: Settings, embedder: Embedder | None = None) -> IndexServices:
    """Open the store and manifest. Without an embedder, the collection's own dimension is used."""
    _check_backend(settings)
    model_dir = resolve_embed_model(settings.embed_model)
    root = settings.resolved_qdrant_path
    if embedder is not None:
        dimension, name = embedder.dimension, embedder.name
    else:
        meta = read_collection_meta(root, settings.collection)
        dimension = int(meta["dimension"]) if meta else (declared_dimension(model_dir) or 0)
        name = str(meta["embed_model"]) if meta else model_display_name(model_dir)
        if dimension == 0:
            embedder = build_embedder(settings)
            dimension, name = embedder.dimension, embedder.name
    store = EdgeStore.open(root, settings.collection, dimension, name)
    try:
        manifest = Manifest(settings.manifest_path)
    except Exception:
        store.close()
        raise
    return IndexServices(settings, model_dir, store, manifest)


def resolve_llm_model(settings: Settings) -> Path:
    """The configured GGUF, or the default one (assembled from its package on first use)."""
    if settings.llm_model is not None:
        return settings.llm_model
    path = default_llm_path(settings.models_dir)
    return path if path.is_file() else prepare_default_llm(settings.models_dir)


def check_llm_files(settings: Settings) -> None:
    """Report a wrong model or adapter path at start-up, not at the first relevant question."""
    for name, path in (("LLM_MODEL", settings.llm_model), ("LLM_ADAPTER", settings.llm_adapter)):
        if path is not None and not path.is_file():
            raise ModelError(f"APPLIANCE_{name}={path} is not a file: point it at a .gguf file")


def build_generator(settings: Settings) -> Generator:
    from appliance.generation import LlamaCppGenerator

    return LlamaCppGenerator(
        resolve_llm_model(settings),
        adapter_path=settings.llm_adapter,
        context_size=settings.llm_context_size,
        threads=settings.llm_threads,
        gpu_layers=settings.llm_gpu_layers,
        temperature=settings.llm_temperature,
        prompt_mode=settings.llm_prompt_mode,
        hash_cache=settings.models_dir / ".sha256-cache.json",
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
    settings: Settings, load_generator: Callable[[], Generator] | None = None
) -> AnswerServices:
    """Everything a question needs. The model itself loads on the first generated answer."""
    check_llm_files(settings)
    embedder = build_embedder(settings)
    index = open_index(settings, embedder)
    try:
        audit = AuditLog(settings.audit_path)
    except Exception:
        index.close()
        raise
    assistant = Assistant(
        Retriever(embedder, index.store),
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
