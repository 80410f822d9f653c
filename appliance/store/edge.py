"""Qdrant Edge: the Qdrant engine in-process, on disk, with WAL, HNSW and payload indexes."""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import qdrant_edge as qe

from appliance.domain import IndexedChunk, RetrievedPassage, SparseVector
from appliance.errors import DimensionMismatchError, IndexDamagedError, StoreError
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
from appliance.store.check import REPAIR_HINT
from appliance.store.lock import OwnerLock
from appliance.store.space import check_space

log = logging.getLogger(__name__)


def _match(key: str, value: str) -> qe.FieldCondition:
    return qe.FieldCondition(key=key, match=qe.MatchValue(value))


def _of_source(source: str) -> qe.Filter:
    return qe.Filter(must=[_match("source", source)])


def _filter(source: str | None = None, doc_id: str | None = None) -> qe.Filter | None:
    must: list[Any] = []
    if source is not None:
        must.append(_match("source", source))
    if doc_id is not None:
        must.append(_match("doc_id", doc_id))
    return qe.Filter(must=must) if must else None


def _sparse(vector: SparseVector) -> qe.SparseVector:
    return qe.SparseVector(list(vector.indices), list(vector.values))


def _named(dense: Sequence[float], sparse: SparseVector) -> dict[str, Any]:
    """A point's vectors: the dense one unnamed (as before hybrid retrieval), BM25 named."""
    return {"": list(dense), SPARSE_VECTOR: _sparse(sparse)}


_WITHOUT_SPARSE = qe.Filter(must_not=[qe.HasVectorCondition(SPARSE_VECTOR)])


def read_collection_meta(root: Path, collection: str) -> dict[str, Any] | None:
    meta_file = root / f"{collection}.json"
    if not meta_file.is_file():
        return None
    try:
        data = json.loads(meta_file.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        int(data["dimension"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise IndexDamagedError(
            f"the collection file {meta_file} is damaged ({exc}). {REPAIR_HINT}."
        ) from None
    return data


def damaged_copy(root: Path, collection: str) -> Path:
    """Where `appliance repair` moves a damaged collection while it rebuilds it."""
    return root / f"{collection}.damaged"


def read_meta(root: Path, collection: str) -> CollectionMeta | None:
    meta = read_collection_meta(root, collection)
    if meta is None:
        return None
    return CollectionMeta(int(meta["dimension"]), str(meta.get("embed_model", "")))


def _write_collection_meta(root: Path, collection: str, meta: dict[str, Any]) -> None:
    target = root / f"{collection}.json"
    temporary = target.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(meta, indent=2), encoding="utf-8")
    with temporary.open("rb") as handle:
        os.fsync(handle.fileno())
    temporary.replace(target)


def _move_aside(root: Path, collection: str) -> None:
    """Keep the damaged collection until its rebuild completes (`discard_damaged_copy`)."""
    aside = damaged_copy(root, collection)
    shard_dir = root / collection
    meta_file = root / f"{collection}.json"
    if shard_dir.exists() or meta_file.exists():
        shutil.rmtree(aside, ignore_errors=True)
        aside.mkdir(parents=True)
        if shard_dir.exists():
            shard_dir.rename(aside / collection)
        if meta_file.exists():
            meta_file.rename(aside / meta_file.name)


def discard_damaged_copy(root: Path, collection: str) -> None:
    shutil.rmtree(damaged_copy(root, collection), ignore_errors=True)


class EdgeStore:
    """One collection = one Edge shard folder under the store root, owned by one process."""

    def __init__(
        self,
        root: Path,
        collection: str,
        shard: qe.EdgeShard,
        lock: OwnerLock,
        meta: dict[str, Any],
    ) -> None:
        self._root = root
        self._collection = collection
        self._shard: qe.EdgeShard | None = shard
        self._lock = lock
        self._meta = meta
        self._damage: str | None = None

    @classmethod
    def open(
        cls,
        root: Path,
        collection: str,
        dimension: int,
        embed_model: str,
        rebuild: bool = False,
    ) -> EdgeStore:
        """Open (or create) the collection for vectors of `dimension` from `embed_model`.

        `rebuild`: move the collection's files aside (to `damaged_copy`) and start it empty.
        """
        lock = OwnerLock(root / f"{collection}.lock")
        lock.acquire()
        try:
            if rebuild:
                _move_aside(root, collection)
            check_space(root / collection)
            meta = read_collection_meta(root, collection)
            if meta is not None and int(meta["dimension"]) != dimension:
                raise DimensionMismatchError(
                    f"collection '{collection}' holds {meta['dimension']}-dimensional vectors "
                    f"from '{meta.get('embed_model')}', but the configured embedding model "
                    f"'{embed_model}' makes {dimension}-dimensional ones. Set "
                    "APPLIANCE_EMBED_MODEL back, or use a new APPLIANCE_COLLECTION and "
                    "ingest again."
                )
            shard = cls._open_shard(root / collection, dimension)
            if meta is None:
                meta = {
                    "dimension": dimension,
                    "embed_model": embed_model,
                    "distance": "cosine",
                    "sparse_vector": SPARSE_VECTOR,
                }
                _write_collection_meta(root, collection, meta)
        except BaseException:
            lock.release()
            raise
        return cls(root, collection, shard, lock, meta)

    @staticmethod
    def _open_shard(shard_dir: Path, dimension: int) -> qe.EdgeShard:
        vectors = qe.EdgeVectorParams(size=dimension, distance=qe.Distance.Cosine)
        try:
            if shard_dir.is_dir() and any(shard_dir.iterdir()):
                # Sparse vectors left unnamed: an existing shard keeps its own (or none).
                shard = qe.EdgeShard.load(str(shard_dir), qe.EdgeConfig(vectors=vectors))
            else:
                sparse = {SPARSE_VECTOR: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)}
                shard = qe.EdgeShard.create(
                    str(shard_dir), qe.EdgeConfig(vectors=vectors, sparse_vectors=sparse)
                )
            for name in KEYWORD_FIELDS:
                shard.update(
                    qe.UpdateOperation.create_field_index(name, qe.PayloadSchemaType.Keyword)
                )
            for name in INTEGER_FIELDS:
                shard.update(
                    qe.UpdateOperation.create_field_index(name, qe.PayloadSchemaType.Integer)
                )
            shard.flush()
        except Exception as exc:
            if "ncompatible" in str(exc):
                raise DimensionMismatchError(
                    f"the collection at {shard_dir} does not accept {dimension}-dimensional "
                    f"vectors ({exc}); use the embedding model it was built with"
                ) from exc
            raise StoreError(f"cannot open Qdrant Edge store at {shard_dir}: {exc}") from exc
        return shard

    @property
    def shard(self) -> qe.EdgeShard:
        if self._shard is None:
            raise StoreError("the store is closed")
        return self._shard

    @property
    def damage(self) -> str | None:
        return self._damage

    @contextmanager
    def _reading(self, action: str) -> Iterator[None]:
        """A read the engine fails (a truncated payload or vector file) is damage: say so,
        name the fix, and remember it for /healthz."""
        try:
            yield
        except StoreError:
            raise
        except Exception as exc:
            if str(exc).startswith("Wrong input"):
                raise StoreError(f"Qdrant Edge refused to {action}: {exc}") from exc
            self._damage = f"cannot {action}: {exc}"
            location = self._root / self._collection
            raise IndexDamagedError(
                f"the document index at {location} is damaged: Qdrant Edge cannot {action} "
                f"({exc}). {REPAIR_HINT}."
            ) from exc

    def info(self) -> StoreInfo:
        return StoreInfo(
            backend="qdrant-edge",
            location=str(self._root / self._collection),
            collection=self._collection,
            dimension=int(self._meta["dimension"]),
            embed_model=str(self._meta.get("embed_model", "")),
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
            qe.Point(
                chunk.point_id,
                list(vector) if keywords is None else _named(vector, keywords[n]),
                chunk.payload(),
            )
            for n, (chunk, vector) in enumerate(zip(chunks, vectors, strict=True))
        ]
        if points:
            self.shard.update(qe.UpdateOperation.upsert_points(points))

    @property
    def sparse_enabled(self) -> bool:
        return self._meta.get("sparse_vector") == SPARSE_VECTOR

    def enable_sparse(self) -> None:
        if self.sparse_enabled:
            return
        # The engine's operation is idempotent: a run killed before the meta file was
        # written does it again.
        self.shard.update(
            qe.UpdateOperation.create_sparse_vector(SPARSE_VECTOR, modifier=qe.Modifier.Idf)
        )
        self.shard.flush()
        meta = {**self._meta, "sparse_vector": SPARSE_VECTOR}
        _write_collection_meta(self._root, self._collection, meta)
        self._meta = meta
        log.info("event=sparse_vector_added collection=%s", self._collection)

    def count_without_sparse(self) -> int:
        if not self.sparse_enabled:
            return self.count()
        return int(self.shard.count(qe.CountRequest(exact=True, filter=_WITHOUT_SPARSE)))

    def without_sparse(self, limit: int) -> list[tuple[str, dict[str, Any]]]:
        with self._reading("read the payloads"):
            records, _ = self.shard.scroll(
                qe.ScrollRequest(limit=limit, filter=_WITHOUT_SPARSE, with_payload=True)
            )
        return [(str(record.id), dict(record.payload or {})) for record in records]

    def set_sparse(self, point_ids: Sequence[str], vectors: Sequence[SparseVector]) -> None:
        updates = [
            qe.PointVectors(point_id, {SPARSE_VECTOR: _sparse(vector)})
            for point_id, vector in zip(point_ids, vectors, strict=True)
        ]
        if updates:
            self.shard.update(qe.UpdateOperation.update_vectors(updates))

    def delete_stale(self, source: str, doc_id: str, chunk_count: int) -> None:
        other_versions = qe.Filter(
            must=[_match("source", source)], must_not=[_match("doc_id", doc_id)]
        )
        beyond_end = qe.Filter(
            must=[
                _match("source", source),
                _match("doc_id", doc_id),
                qe.FieldCondition(key="position", range=qe.RangeFloat(gte=chunk_count)),
            ]
        )
        self.shard.update(qe.UpdateOperation.delete_points_by_filter(other_versions))
        self.shard.update(qe.UpdateOperation.delete_points_by_filter(beyond_end))

    def delete_source(self, source: str) -> None:
        self.shard.update(qe.UpdateOperation.delete_points_by_filter(_of_source(source)))

    def set_acl(self, source: str, acl: Sequence[str]) -> None:
        self.shard.update(
            qe.UpdateOperation.set_payload_by_filter(_of_source(source), {"acl": list(acl)})
        )

    def count(self, source: str | None = None, doc_id: str | None = None) -> int:
        return int(self.shard.count(qe.CountRequest(exact=True, filter=_filter(source, doc_id))))

    def source_counts(self) -> dict[str, int]:
        total = self.count()
        if total == 0:
            return {}
        response = self.shard.facet(qe.FacetRequest(key="source", limit=total, exact=True))
        # Deleted points can leave their value in the facet index with a count of 0.
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
        readable = qe.Filter(must=[qe.FieldCondition(key="acl", match=qe.MatchAny(list(groups)))])
        # Exact search: HNSW recall measured below 1.0 on this engine (DESIGN.md), and exact
        # scoring of a few hundred thousand 384-d vectors costs milliseconds.
        exact = qe.SearchParams(exact=True)
        dense = qe.Query.Nearest(list(vector))
        if keywords is None:
            request = qe.QueryRequest(
                limit=limit, query=dense, filter=readable, with_payload=True, params=exact
            )
        else:
            bm25 = qe.Query.Nearest(_sparse(keywords), using=SPARSE_VECTOR)
            fused = mode == "hybrid"
            depth = depth or prefetch_depth(limit)
            # The stubs type a fusion as `Fusion`, the engine takes its `Fusion.Rrf`.
            scoring: Any = qe.Fusion.Rrf(k=RRF_K) if fused else bm25
            request = qe.QueryRequest(
                limit=limit,
                query=scoring,
                prefetches=[
                    qe.Prefetch(limit=depth, query=dense, filter=readable, params=exact),
                    qe.Prefetch(limit=depth, query=bm25, filter=readable),
                ]
                if fused
                else None,
                filter=readable,
                with_payload=True,
                with_vector=[""],
            )
        with self._reading("search"):
            points = self.shard.query(request)
        query = None if keywords is None else list(vector)
        return [scored_passage(point, query) for point in points]

    def verify(self) -> None:
        # Exact scoring reads every vector; the scroll reads every payload.
        dimension = int(self._meta["dimension"])
        with self._reading("read the vectors"):
            self.shard.query(
                qe.QueryRequest(
                    limit=1,
                    query=qe.Query.Nearest([1.0] * dimension),
                    with_payload=False,
                    params=qe.SearchParams(exact=True),
                )
            )
        for _ in self.iter_payloads():
            pass

    def iter_payloads(self, page: int = 1000) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every point's id and payload, in id order."""
        offset: Any = None
        while True:
            with self._reading("read the payloads"):
                records, offset = self.shard.scroll(
                    qe.ScrollRequest(offset=offset, limit=page, with_payload=True)
                )
            for record in records:
                yield str(record.id), dict(record.payload or {})
            if offset is None:
                return

    def flush(self) -> None:
        self.shard.flush()

    def close(self) -> None:
        if self._shard is not None:
            try:
                self._shard.flush()
                self._shard.close()
            finally:
                self._shard = None
                self._lock.release()
