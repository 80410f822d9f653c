"""The vector store as the rest of the appliance sees it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from appliance.domain import IndexedChunk, RetrievedPassage


@dataclass(frozen=True)
class StoreInfo:
    backend: str
    location: str
    collection: str
    dimension: int
    embed_model: str
    points: int


class VectorStore(Protocol):
    def info(self) -> StoreInfo: ...

    def upsert(self, chunks: Sequence[IndexedChunk], vectors: Sequence[Sequence[float]]) -> None:
        """Write chunks with their vectors; the same chunk written twice is stored once."""

    def delete_stale(self, source: str, doc_id: str, chunk_count: int) -> None:
        """Remove every chunk of `source` that is not part of version `doc_id` with that count."""

    def delete_source(self, source: str) -> None: ...

    def set_acl(self, source: str, acl: Sequence[str]) -> None: ...

    def count(self, source: str | None = None, doc_id: str | None = None) -> int: ...

    def source_counts(self) -> dict[str, int]:
        """Chunks per source path, for every source in the collection."""

    def search(
        self, vector: Sequence[float], groups: Sequence[str], limit: int
    ) -> list[RetrievedPassage]:
        """The `limit` nearest chunks whose ACL shares a group with `groups`, best first.

        The group filter runs inside the vector query: a chunk the groups may not read is
        never returned, whatever its score.
        """

    def flush(self) -> None:
        """Make every write so far durable."""

    def close(self) -> None: ...
