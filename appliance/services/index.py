"""The document index: the store, its manifest and the embedders that fill it."""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from appliance.embedding import (
    Embedder,
    LazyEmbedder,
    SentenceTransformerEmbedder,
    declared_dimension,
    model_display_name,
)
from appliance.errors import ConfigError
from appliance.manifest import Manifest
from appliance.models import resolve_embed_model
from appliance.settings import Settings
from appliance.store import CollectionMeta, VectorStore
from appliance.store.check import check_index
from appliance.store.factory import open_store
from appliance.store.lock import OwnerLock


@dataclass
class IndexServices:
    settings: Settings
    embed_model_dir: Path
    store: VectorStore
    manifest: Manifest
    # What close() releases: empty when a larger set of services owns these parts.
    resources: ExitStack = field(default_factory=ExitStack, repr=False)

    def close(self) -> None:
        self.resources.close()


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


def build_ingest_embedder(settings: Settings) -> LazyEmbedder:
    """The embedder of `appliance ingest`: loaded only when a file needs embedding."""
    return LazyEmbedder(
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
    with ExitStack() as stack:
        index = enter_index(stack, settings, embedder, rebuild=rebuild, allow_damaged=allow_damaged)
        index.resources = stack.pop_all()
    return index


def enter_index(
    stack: ExitStack,
    settings: Settings,
    embedder: Embedder | None = None,
    *,
    rebuild: bool = False,
    allow_damaged: bool = False,
) -> IndexServices:
    """open_index, with every part it opens closed by `stack`."""
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

    if settings.qdrant_url:
        stack.callback(_lock_data_dir(settings).release)
    store = open_store(settings, vectors, rebuild)
    stack.callback(store.close)
    manifest = Manifest(settings.manifest_path)
    stack.callback(manifest.close)
    if not (rebuild or allow_damaged):
        check_index(store, manifest.entries()).raise_if_damaged()
    return IndexServices(settings, model_dir, store, manifest)


def _lock_data_dir(settings: Settings) -> OwnerLock:
    """A Qdrant server takes writers from anywhere, but the manifest in the data folder has
    one writer at a time, as with the embedded store."""
    lock = OwnerLock(
        settings.manifest_path.with_suffix(".lock"),
        f"the document index in {settings.manifest_path.parent}",
    )
    lock.acquire()
    return lock
