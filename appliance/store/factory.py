"""Open the configured backend: Qdrant Edge on disk, or a Qdrant server when a URL is set."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from appliance.settings import Settings
from appliance.store import CollectionMeta, VectorStore

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

# Given the collection's meta (None: not created yet), the dimension and embedding model
# name to open it with.
ChooseVectors = Callable[[CollectionMeta | None], tuple[int, str]]


def open_store(settings: Settings, choose: ChooseVectors, rebuild: bool = False) -> VectorStore:
    """`rebuild`: start the collection empty (the embedded store's damaged files are moved
    aside; a server's points are deleted), for `appliance repair` to fill again."""
    if settings.qdrant_url:
        store = _open_server(settings, settings.qdrant_url, choose)
        if rebuild:
            try:
                for source in store.source_counts():
                    store.delete_source(source)
            except BaseException:
                store.close()
                raise
        return store
    from appliance.store.edge import EdgeStore, read_meta

    root = settings.resolved_qdrant_path
    dimension, name = choose(None if rebuild else read_meta(root, settings.collection))
    return EdgeStore.open(root, settings.collection, dimension, name, rebuild=rebuild)


def server_client(settings: Settings) -> QdrantClient:
    from appliance.store import server

    assert settings.qdrant_url is not None
    key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
    return server.connect(settings.qdrant_url, key)


def _open_server(settings: Settings, url: str, choose: ChooseVectors) -> VectorStore:
    from appliance.store import server

    location = server.display_url(url)
    client = server_client(settings)
    try:
        dimension, name = choose(server.read_meta(client, settings.collection, location))
        return server.QdrantServerStore.open(
            client,
            settings.collection,
            dimension,
            name,
            location=location,
            layout=server.Layout(
                settings.qdrant_shards,
                settings.qdrant_replication,
                settings.qdrant_write_consistency,
            ),
        )
    except BaseException:
        client.close()
        raise
