"""Question in, the passages this user may read out: embed, then a filtered vector search."""

from __future__ import annotations

from collections.abc import Sequence

from appliance.domain import RetrievedPassage
from appliance.embedding import Embedder
from appliance.store import VectorStore


class Retriever:
    def __init__(self, embedder: Embedder, store: VectorStore) -> None:
        self._embedder = embedder
        self._store = store

    @property
    def embed_model(self) -> str:
        return self._embedder.name

    def search(self, question: str, groups: Sequence[str], k: int) -> list[RetrievedPassage]:
        """The k best passages among those readable by `groups`, best first."""
        if not groups:
            return []
        vector = self._embedder.embed([question])[0]
        return self._store.search(vector, groups, k)
