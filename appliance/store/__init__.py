"""The vector store as the rest of the appliance sees it."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from appliance.domain import IndexedChunk, RetrievedPassage, SparseVector

# Payload fields the stores filter on, and so index.
KEYWORD_FIELDS = ("doc_id", "source", "acl")
INTEGER_FIELDS = ("position",)

# hybrid: one query, a dense and a BM25 prefetch (each with the ACL filter) fused by RRF;
# dense: cosine similarity only; sparse: BM25 only.
RetrievalMode = Literal["hybrid", "dense", "sparse"]
RETRIEVAL_MODES: tuple[RetrievalMode, ...] = ("hybrid", "dense", "sparse")
# Reciprocal rank fusion: each branch adds 1 / (RRF_K + rank), rank from 0. 60 is the
# constant of the RRF paper; the same on both backends.
RRF_K = 60


def prefetch_depth(limit: int) -> int:
    """Candidates each branch of a hybrid query passes to the fusion."""
    return max(4 * limit, 20)


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

    def upsert(
        self,
        chunks: Sequence[IndexedChunk],
        vectors: Sequence[Sequence[float]],
        sparse: Sequence[SparseVector] | None = None,
    ) -> None:
        """Write chunks with their vectors; the same chunk written twice is stored once.

        `sparse`: their BM25 vectors, stored when the collection has a BM25 vector
        (`sparse_enabled`); a collection made before hybrid retrieval gets dense-only points,
        which `add_sparse_vectors` completes."""

    @property
    def sparse_enabled(self) -> bool:
        """Whether the collection has the BM25 sparse vector (collections made before hybrid
        retrieval do not, until `appliance ingest` adds it)."""

    def enable_sparse(self) -> None:
        """Add the BM25 sparse vector (IDF modifier) to the collection; idempotent."""

    def count_without_sparse(self) -> int:
        """Points that have no BM25 vector (every point, while not `sparse_enabled`)."""

    def without_sparse(self, limit: int) -> list[tuple[str, dict[str, Any]]]:
        """Up to `limit` points that have no BM25 vector: their ids and payloads."""

    def set_sparse(self, point_ids: Sequence[str], vectors: Sequence[SparseVector]) -> None:
        """Give existing points their BM25 vectors; their dense vector and payload stay."""

    def delete_stale(self, source: str, doc_id: str, chunk_count: int) -> None:
        """Remove every chunk of `source` that is not part of version `doc_id` with that count."""

    def delete_source(self, source: str) -> None: ...

    def set_acl(self, source: str, acl: Sequence[str]) -> None: ...

    def count(self, source: str | None = None, doc_id: str | None = None) -> int: ...

    def source_counts(self) -> dict[str, int]:
        """Chunks per source path, for every source in the collection."""

    def search(
        self,
        vector: Sequence[float],
        groups: Sequence[str],
        limit: int,
        *,
        sparse: SparseVector | None = None,
        mode: RetrievalMode = "dense",
        depth: int | None = None,
    ) -> list[RetrievedPassage]:
        """The `limit` best chunks whose ACL shares a group with `groups`, best first.

        `mode` dense: nearest to `vector`; sparse: best BM25 match of `sparse`; hybrid: both
        as prefetches of one query, each passing `depth` candidates (default
        `prefetch_depth(limit)`) to the RRF fusion. The group filter runs inside the query (in
        each prefetch): a chunk the groups may not read is never returned, whatever its
        score. Every passage's `score` is its cosine similarity to `vector`; `rank_score`
        the score it was ranked by.
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


def needs_sparse(mode: RetrievalMode, sparse: SparseVector | None) -> SparseVector | None:
    """The BM25 query vector a hybrid or sparse search needs (None for dense)."""
    if mode == "dense":
        return None
    if sparse is None:
        raise ValueError(f"a {mode} search needs the question's sparse vector")
    return sparse


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = math.fsum(x * y for x, y in zip(a, b, strict=True))
    norms = math.sqrt(math.fsum(x * x for x in a)) * math.sqrt(math.fsum(y * y for y in b))
    return dot / norms if norms else 0.0


def _dense_of(vector: Any) -> list[float] | None:
    """The dense vector in a hit's vectors: a list, or the unnamed one in a dict."""
    if isinstance(vector, dict):
        vector = vector.get("")
    return list(vector) if isinstance(vector, list) else None


def scored_passage(point: Any, query: Sequence[float] | None = None) -> RetrievedPassage:
    """A search hit of either backend (both name its id, payload, score and vectors alike).

    With `query`, the hit's score is a rank score (RRF, BM25) and the passage's `score` is
    the cosine of its dense vector (returned with the hit) to `query`."""
    payload = dict(point.payload or {})
    rank_score = float(point.score)
    score = rank_score
    if query is not None:
        dense = _dense_of(point.vector)
        score = cosine(dense, query) if dense is not None else -1.0
    return RetrievedPassage(
        chunk_id=str(point.id),
        doc_id=str(payload.get("doc_id", "")),
        source=str(payload.get("source", "")),
        position=int(payload.get("position", 0)),
        text=str(payload.get("text", "")),
        score=score,
        page=payload.get("page"),
        section=payload.get("section"),
        rank_score=rank_score,
        ocr=bool(payload.get("ocr", False)),
        ocr_confidence=payload.get("ocr_confidence"),
    )
