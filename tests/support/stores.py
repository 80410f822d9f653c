"""Both vector store backends, for tests that must hold for either of them.

`edge`: Qdrant Edge in a folder. `server`: QdrantServerStore on `QdrantClient(":memory:")`,
which speaks the client API of a Qdrant server (none installs here).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qdrant_client import QdrantClient

from appliance.store import VectorStore
from appliance.store.edge import EdgeStore
from appliance.store.server import QdrantServerStore

BACKENDS = ("edge", "server")
# Local mode always searches exactly, as the appliance asks a server to anyway.
LOCAL_MODE_SEARCH_WARNING = "Local mode performs exact"


class _Connection(QdrantClient):
    """A store closes its connection; the in-memory "server" behind it stays up, as a real
    server outlives its clients."""

    def close(self, grpc_grace: float | None = None, **kwargs: Any) -> None:
        pass

    def shut_down(self) -> None:
        super().close()


class StorePlace:
    """Where stores of one backend are opened: a folder, or one in-memory Qdrant server."""

    def __init__(self, backend: str, root: Path) -> None:
        self.backend = backend
        self.root = root
        self._server: _Connection | None = None

    def open(self, collection: str = "docs", dimension: int = 4, model: str = "m") -> VectorStore:
        if self.backend == "edge":
            return EdgeStore.open(self.root, collection, dimension, model)
        if self._server is None:
            self._server = _Connection(":memory:")
        return QdrantServerStore.open(self._server, collection, dimension, model, location="memory")

    def close(self) -> None:
        if self._server is not None:
            self._server.shut_down()
            self._server = None
