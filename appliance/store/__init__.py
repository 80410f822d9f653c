"""The vector store as the rest of the appliance sees it."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from appliance.domain import IndexedChunk, RetrievedPassage

# Payload fields the stores filter on, and so index.
KEYWORD_FIELDS = ("doc_id", "source", "acl")
INTEGER_FIELDS = ("position",)


@dataclass(frozen=True)
class CollectionMeta:
    """What a collection was built with: its vector dimension and the embedding model."""

    dimension: int
    embed_model: str


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

    def iter_payloads(self, page: int = 1000) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every point's id and payload."""

    def verify(self) -> None:
        """Read every point's payload and score every vector; raise IndexDamagedError, naming
        what cannot be read, where the store's files are damaged."""

    @property
    def damage(self) -> str | None:
        """The read error this store met since it was opened (a damaged file), if any."""

    def flush(self) -> None:
        """Make every write so far durable."""

    def close(self) -> None: ...


def scored_passage(point: Any) -> RetrievedPassage:
    """A search hit of either backend (both name its id, payload and score alike)."""
    payload = dict(point.payload or {})
    return RetrievedPassage(
        chunk_id=str(point.id),
        doc_id=str(payload.get("doc_id", "")),
        source=str(payload.get("source", "")),
        position=int(payload.get("position", 0)),
        text=str(payload.get("text", "")),
        score=float(point.score),
        page=payload.get("page"),
        section=payload.get("section"),
    )
