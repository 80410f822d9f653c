"""Qdrant server (or cluster) through qdrant-client: the same store as Qdrant Edge, remote.

A server may be shared by several appliance processes, so there is no owner lock here. Every
write waits for the server to apply it (`wait=True`), so a returned write is durable and
`flush` has nothing left to do.
"""

from __future__ import annotations

import ipaddress
import logging
import warnings
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from appliance.domain import IndexedChunk, RetrievedPassage, SparseVector
from appliance.errors import ApplianceError, DimensionMismatchError, StoreError
from appliance.keywords import SPARSE_VECTOR
from appliance.store import (
    INTEGER_FIELDS,
    KEYWORD_FIELDS,
    RRF_K,
    CollectionMeta,
    RetrievalMode,
    StoreInfo,
    needs_sparse,
    prefetch_depth,
    scored_passage,
)

log = logging.getLogger(__name__)

BACKEND = "qdrant-server"
TIMEOUT_S = 30
_LOCAL_INDEX_WARNING = "Payload indexes have no effect in the local Qdrant"


@dataclass(frozen=True)
class Layout:
    """How a new collection is spread over a cluster; an existing one keeps its own."""

    shards: int | None = None
    replication: int = 1
    write_consistency: int = 1


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def connect(url: str, api_key: str | None, timeout_s: int = TIMEOUT_S) -> QdrantClient:
    """A client for the server at `url`, exactly as written (a URL without a port uses 80/443).

    Nothing is sent until the first request.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if api_key and parts.scheme == "http" and not _is_loopback(host):
        log.warning(
            "event=qdrant_api_key_over_http host=%s fix=https_in_APPLIANCE_QDRANT_URL", host
        )
    with warnings.catch_warnings():
        # Replaced by the log line above, which spares loopback connections.
        warnings.filterwarnings("ignore", message="Api key is used with an insecure connection")
        return QdrantClient(
            url=url, port=None, api_key=api_key, timeout=timeout_s, check_compatibility=False
        )


def display_url(url: str) -> str:
    """The URL without user, password or query: safe to show and log."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _server_error(exc: Exception, location: str, action: str) -> StoreError:
    if isinstance(exc, ResponseHandlingException):
        return StoreError(
            f"cannot reach the Qdrant server at {location} to {action} ({exc.source}). Check "
            "APPLIANCE_QDRANT_URL (scheme, host and port: Qdrant listens on 6333 unless told "
            "otherwise) and that the server is running."
        )
    if isinstance(exc, UnexpectedResponse) and exc.status_code == 401:
        return StoreError(
            f"the Qdrant server at {location} refused the API key (HTTP 401). Set "
            "APPLIANCE_QDRANT_API_KEY to the server's key (QDRANT__SERVICE__API_KEY)."
        )
    if isinstance(exc, UnexpectedResponse) and exc.status_code == 403:
        return StoreError(
            f"the Qdrant server at {location} does not allow this API key to {action} "
            "(HTTP 403). Set APPLIANCE_QDRANT_API_KEY to a read-write key."
        )
    if isinstance(exc, UnexpectedResponse):
        detail = exc.content.decode("utf-8", "replace")[:300]
        return StoreError(
            f"the Qdrant server at {location} answered HTTP {exc.status_code} to {action}: {detail}"
        )
    return StoreError(f"cannot {action} on the Qdrant server at {location}: {exc}")


@contextmanager
def _translated(location: str, action: str) -> Iterator[None]:
    try:
        yield
    except ApplianceError:
        raise
    except Exception as exc:
        raise _server_error(exc, location, action) from exc


def _match(key: str, value: str) -> models.FieldCondition:
    return models.FieldCondition(key=key, match=models.MatchValue(value=value))


def _of_source(source: str) -> models.Filter:
    return models.Filter(must=[_match("source", source)])


def _filter(source: str | None = None, doc_id: str | None = None) -> models.Filter | None:
    must: list[models.Condition] = []
    if source is not None:
        must.append(_match("source", source))
    if doc_id is not None:
        must.append(_match("doc_id", doc_id))
    return models.Filter(must=must) if must else None


def _sparse(vector: SparseVector) -> models.SparseVector:
    return models.SparseVector(indices=list(vector.indices), values=list(vector.values))


_WITHOUT_SPARSE = models.Filter(must_not=[models.HasVectorCondition(has_vector=SPARSE_VECTOR)])


def _has_sparse(info: models.CollectionInfo) -> bool:
    return SPARSE_VECTOR in (info.config.params.sparse_vectors or {})


def _inspect(client: QdrantClient, collection: str) -> models.CollectionInfo | None:
    if not client.collection_exists(collection):
        return None
    return client.get_collection(collection)


def _meta_of(info: models.CollectionInfo, collection: str, location: str) -> CollectionMeta:
    vectors = info.config.params.vectors
    if not isinstance(vectors, models.VectorParams) or vectors.distance != models.Distance.COSINE:
        raise StoreError(
            f"collection '{collection}' on the Qdrant server at {location} was not made by the "
            "appliance (it needs one unnamed cosine vector per point): set "
            "APPLIANCE_COLLECTION to another name"
        )
    metadata = info.config.metadata or {}
    return CollectionMeta(int(vectors.size), str(metadata.get("embed_model", "")))


def read_meta(client: QdrantClient, collection: str, location: str) -> CollectionMeta | None:
    """The collection's dimension and embedding model, or None when it does not exist yet."""
    with _translated(location, f"read collection '{collection}'"):
        info = _inspect(client, collection)
        return None if info is None else _meta_of(info, collection, location)


class QdrantServerStore:
    """One collection on a Qdrant server; the store owns `client` and closes it."""

    def __init__(
        self,
        client: QdrantClient,
        collection: str,
        meta: CollectionMeta,
        location: str,
        sparse: bool = True,
    ) -> None:
        self._client: QdrantClient | None = client
        self._collection = collection
        self._meta = meta
        self.location = location
        self._sparse_enabled = sparse

    @classmethod
    def open(
        cls,
        client: QdrantClient,
        collection: str,
        dimension: int,
        embed_model: str,
        *,
        location: str,
        layout: Layout | None = None,
    ) -> QdrantServerStore:
        """Open (or create) the collection for vectors of `dimension` from `embed_model`."""
        with _translated(location, f"open collection '{collection}'"):
            info = _inspect(client, collection)
            if info is None:
                info = cls._create(client, collection, dimension, embed_model, layout or Layout())
            meta = _meta_of(info, collection, location)
            if meta.dimension != dimension:
                raise DimensionMismatchError(
                    f"collection '{collection}' on the Qdrant server at {location} holds "
                    f"{meta.dimension}-dimensional vectors from '{meta.embed_model}', but the "
                    f"configured embedding model '{embed_model}' makes {dimension}-dimensional "
                    "ones. Set APPLIANCE_EMBED_MODEL back, or use a new APPLIANCE_COLLECTION "
                    "and ingest again."
                )
            cls._index_payload(client, collection, info)
        if not meta.embed_model:  # made by another tool, which recorded no model
            meta = CollectionMeta(dimension, embed_model)
        return cls(client, collection, meta, location, _has_sparse(info))

    @staticmethod
    def _create(
        client: QdrantClient, collection: str, dimension: int, embed_model: str, layout: Layout
    ) -> models.CollectionInfo:
        try:
            client.create_collection(
                collection,
                vectors_config=models.VectorParams(size=dimension, distance=models.Distance.COSINE),
                sparse_vectors_config={
                    SPARSE_VECTOR: models.SparseVectorParams(modifier=models.Modifier.IDF)
                },
                shard_number=layout.shards,
                replication_factor=layout.replication,
                write_consistency_factor=layout.write_consistency,
                metadata={"dimension": dimension, "embed_model": embed_model, "distance": "cosine"},
            )
            log.info("event=collection_created collection=%s dimension=%d", collection, dimension)
        except (UnexpectedResponse, ValueError):
            # Another appliance process may have created it meanwhile: then use theirs.
            if not client.collection_exists(collection):
                raise
        return client.get_collection(collection)

    @staticmethod
    def _index_payload(client: QdrantClient, collection: str, info: models.CollectionInfo) -> None:
        wanted = [(name, models.PayloadSchemaType.KEYWORD) for name in KEYWORD_FIELDS] + [
            (name, models.PayloadSchemaType.INTEGER) for name in INTEGER_FIELDS
        ]
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_LOCAL_INDEX_WARNING)
            for name, schema in wanted:
                if name not in (info.payload_schema or {}):
                    client.create_payload_index(collection, name, field_schema=schema, wait=True)

    @property
    def client(self) -> QdrantClient:
        if self._client is None:
            raise StoreError("the store is closed")
        return self._client

    def _errors(self, action: str) -> AbstractContextManager[None]:
        return _translated(self.location, action)

    def info(self) -> StoreInfo:
        return StoreInfo(
            backend=BACKEND,
            location=self.location,
            collection=self._collection,
            dimension=self._meta.dimension,
            embed_model=self._meta.embed_model,
            points=self.count(),
        )

    def upsert(
        self,
        chunks: Sequence[IndexedChunk],
        vectors: Sequence[Sequence[float]],
        sparse: Sequence[SparseVector] | None = None,
    ) -> None:
        keywords = list(sparse) if sparse is not None and self.sparse_enabled else None
        if keywords is not None and len(keywords) != len(chunks):
            raise ValueError("one sparse vector per chunk")
        points = [
            models.PointStruct(
                id=chunk.point_id,
                vector=list(vector)
                if keywords is None
                else {"": list(vector), SPARSE_VECTOR: _sparse(keywords[n])},
                payload=chunk.payload(),
            )
            for n, (chunk, vector) in enumerate(zip(chunks, vectors, strict=True))
        ]
        if points:
            with self._errors("write chunks"):
                self.client.upsert(self._collection, points=points, wait=True)

    @property
    def sparse_enabled(self) -> bool:
        return self._sparse_enabled

    def enable_sparse(self) -> None:
        if self._sparse_enabled:
            return
        with self._errors("add the BM25 sparse vector to the collection (needs Qdrant 1.18+)"):
            info = self.client.get_collection(self._collection)
            if not _has_sparse(info):  # another process may have added it meanwhile
                self.client.create_vector_name(
                    self._collection,
                    SPARSE_VECTOR,
                    models.SparseVectorNameConfig(
                        sparse=models.SparseVectorConfig(modifier=models.Modifier.IDF)
                    ),
                    wait=True,
                )
        self._sparse_enabled = True
        log.info("event=sparse_vector_added collection=%s", self._collection)

    def count_without_sparse(self) -> int:
        if not self._sparse_enabled:
            return self.count()
        with self._errors("count chunks"):
            result = self.client.count(self._collection, count_filter=_WITHOUT_SPARSE, exact=True)
        return int(result.count)

    def without_sparse(self, limit: int) -> list[tuple[str, dict[str, Any]]]:
        with self._errors("read chunks"):
            records, _ = self.client.scroll(
                self._collection, scroll_filter=_WITHOUT_SPARSE, limit=limit, with_payload=True
            )
        return [(str(record.id), dict(record.payload or {})) for record in records]

    def set_sparse(self, point_ids: Sequence[str], vectors: Sequence[SparseVector]) -> None:
        updates = [
            models.PointVectors(id=point_id, vector={SPARSE_VECTOR: _sparse(vector)})
            for point_id, vector in zip(point_ids, vectors, strict=True)
        ]
        if updates:
            with self._errors("write BM25 vectors"):
                self.client.update_vectors(self._collection, points=updates, wait=True)

    def delete_stale(self, source: str, doc_id: str, chunk_count: int) -> None:
        other_versions = models.Filter(
            must=[_match("source", source)], must_not=[_match("doc_id", doc_id)]
        )
        beyond_end = models.Filter(
            must=[
                _match("source", source),
                _match("doc_id", doc_id),
                models.FieldCondition(key="position", range=models.Range(gte=chunk_count)),
            ]
        )
        self._delete(other_versions)
        self._delete(beyond_end)

    def delete_source(self, source: str) -> None:
        self._delete(_of_source(source))

    def _delete(self, selected: models.Filter) -> None:
        with self._errors("delete chunks"):
            self.client.delete(
                self._collection, points_selector=models.FilterSelector(filter=selected), wait=True
            )

    def set_acl(self, source: str, acl: Sequence[str]) -> None:
        with self._errors("change the groups of chunks"):
            self.client.set_payload(
                self._collection,
                payload={"acl": list(acl)},
                points=models.FilterSelector(filter=_of_source(source)),
                wait=True,
            )

    def count(self, source: str | None = None, doc_id: str | None = None) -> int:
        with self._errors("count chunks"):
            result = self.client.count(
                self._collection, count_filter=_filter(source, doc_id), exact=True
            )
        return int(result.count)

    def source_counts(self) -> dict[str, int]:
        total = self.count()
        if total == 0:
            return {}
        with self._errors("count chunks per document"):
            response = self.client.facet(self._collection, key="source", limit=total, exact=True)
        return {str(hit.value): int(hit.count) for hit in response.hits if hit.count > 0}

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
        if not groups:
            return []
        keywords = needs_sparse(mode, sparse)
        readable = models.Filter(
            must=[models.FieldCondition(key="acl", match=models.MatchAny(any=list(groups)))]
        )
        # Exact search, as on Qdrant Edge: no answer lost to HNSW recall (DESIGN.md).
        exact = models.SearchParams(exact=True)
        with self._errors("search"):
            if keywords is None:
                response = self.client.query_points(
                    self._collection,
                    query=list(vector),
                    query_filter=readable,
                    limit=limit,
                    with_payload=True,
                    search_params=exact,
                )
            elif mode == "sparse":
                response = self.client.query_points(
                    self._collection,
                    query=_sparse(keywords),
                    using=SPARSE_VECTOR,
                    query_filter=readable,
                    limit=limit,
                    with_payload=True,
                    with_vectors=[""],
                )
            else:
                response = self._fused(vector, keywords, readable, limit, depth)
        query = None if keywords is None else list(vector)
        return [scored_passage(point, query) for point in response.points]

    def _fused(
        self,
        vector: Sequence[float],
        keywords: SparseVector,
        readable: models.Filter,
        limit: int,
        depth: int | None,
    ) -> models.QueryResponse:
        """One query: a dense and a BM25 prefetch, each filtered, fused by RRF."""
        depth = depth or prefetch_depth(limit)
        exact = models.SearchParams(exact=True)
        return self.client.query_points(
            self._collection,
            prefetch=[
                models.Prefetch(query=list(vector), filter=readable, limit=depth, params=exact),
                models.Prefetch(
                    query=_sparse(keywords), using=SPARSE_VECTOR, filter=readable, limit=depth
                ),
            ],
            query=models.RrfQuery(rrf=models.Rrf(k=RRF_K)),
            query_filter=readable,
            limit=limit,
            with_payload=True,
            with_vectors=[""],
        )

    def iter_payloads(self, page: int = 1000) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every point's id and payload, in id order."""
        offset: Any = None
        while True:
            with self._errors("read chunks"):
                records, offset = self.client.scroll(
                    self._collection, offset=offset, limit=page, with_payload=True
                )
            for record in records:
                yield str(record.id), dict(record.payload or {})
            if offset is None:
                return

    def verify(self) -> None:
        """Read every payload back. The server keeps its own files whole (WAL, replicas); what
        this can show is points it cannot return."""
        for _ in self.iter_payloads():
            pass

    @property
    def damage(self) -> str | None:
        return None

    def flush(self) -> None:
        """Nothing to do: every write waited for the server to apply it."""

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()
