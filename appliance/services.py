"""Build the concrete parts from the settings; everything else receives them as arguments."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from appliance.embedding import (
    Embedder,
    SentenceTransformerEmbedder,
    declared_dimension,
    model_display_name,
)
from appliance.errors import ConfigError
from appliance.manifest import Manifest
from appliance.models import resolve_embed_model
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
