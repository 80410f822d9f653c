"""Is the index whole? Its points readable, and as many as the manifest records.

Two checks of different cost:

- `compare_counts`: chunks per document in the store against the manifest (one facet query,
  plus one count per document that falls short). Milliseconds; run whenever the index opens
  and, cached, by /healthz.
- `check_index(full=True)`: also reads every point's payload and scores every vector, which
  is where truncated payload or vector files show. About 0.1 s per 10k chunks.

A run killed mid-ingest leaves the store holding more than the manifest records (rows are
written after their points), and a changed file killed between its new points and its row
leaves the new version's points: neither is damage. Fewer points of the recorded version,
with no other version to explain it, is.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from appliance.domain import DocumentEntry
from appliance.errors import IndexDamagedError
from appliance.store import VectorStore

log = logging.getLogger(__name__)

SPARSE_HINT = "run `appliance ingest` to add them from the stored chunks (nothing is parsed again)"

REPAIR_HINT = (
    "Rebuild it from the documents with `appliance repair` (document groups and the audit "
    "log are kept)"
)


@dataclass(frozen=True)
class IndexCheck:
    location: str
    documents: int
    expected_chunks: int
    chunks: int
    missing_chunks: int = 0
    damaged_sources: tuple[str, ...] = ()
    unreadable: str | None = None
    full: bool = False
    problems: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.problems

    def message(self) -> str:
        if self.ok:
            return "ok"
        return (
            f"the document index at {self.location} is damaged: {'; '.join(self.problems)}. "
            f"{REPAIR_HINT}."
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "full": self.full,
            "documents": self.documents,
            "expected_chunks": self.expected_chunks,
            "chunks": self.chunks,
            "missing_chunks": self.missing_chunks,
            "damaged_documents": list(self.damaged_sources),
            "unreadable": self.unreadable,
            "problems": list(self.problems),
            "fix": None if self.ok else "appliance repair",
        }

    def raise_if_damaged(self) -> None:
        if not self.ok:
            raise IndexDamagedError(self.message())


@dataclass(frozen=True)
class SparseState:
    """Whether the collection's chunks have their BM25 vectors (hybrid and sparse search)."""

    enabled: bool  # the collection has the BM25 vector (made before hybrid retrieval: no)
    missing: int  # chunks without one

    @property
    def complete(self) -> bool:
        return self.enabled and self.missing == 0

    def message(self, mode: str) -> str:
        if self.complete:
            return "every chunk has its BM25 vector"
        used = "dense search" if not self.enabled else "hybrid search without them"
        what = (
            "the collection was made before hybrid retrieval and has no BM25 vectors"
            if not self.enabled
            else f"{self.missing:,} chunks have no BM25 vector"
        )
        suffix = f"; {mode} questions use {used} until then" if mode != "dense" else ""
        return f"{what}: {SPARSE_HINT}{suffix}"

    def to_json(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "missing": self.missing, "complete": self.complete}


def sparse_state(store: VectorStore) -> SparseState:
    return SparseState(store.sparse_enabled, store.count_without_sparse())


def warn_missing_sparse(store: VectorStore, mode: str) -> SparseState:
    """Log (at start-up) that the collection lacks BM25 vectors, naming the fix."""
    state = sparse_state(store)
    if not state.complete:
        log.warning("event=bm25_vectors_missing missing=%d %s", state.missing, state.message(mode))
    return state


def _short_sources(sources: list[str], limit: int = 3) -> str:
    shown = ", ".join(sources[:limit])
    return shown + (f" and {len(sources) - limit} more" if len(sources) > limit else "")


def check_index(
    store: VectorStore, entries: Iterable[DocumentEntry], full: bool = False
) -> IndexCheck:
    entries = list(entries)
    location = _location(store)
    expected = sum(e.chunks for e in entries)
    problems: list[str] = []
    unreadable: str | None = None
    if full:
        try:
            store.verify()
        except Exception as exc:
            unreadable = store.damage or str(exc)
            problems.append(f"its points cannot be read: {unreadable}")
    try:
        chunks = store.count()
        per_source = store.source_counts()
    except Exception as exc:
        return IndexCheck(
            location,
            len(entries),
            expected,
            0,
            unreadable=unreadable or str(exc),
            full=full,
            problems=(*problems, f"it cannot be counted ({exc})"),
        )
    short: list[str] = []
    missing = 0
    for entry in entries:
        held = per_source.get(entry.source, 0)
        if held >= entry.chunks:
            continue
        of_version = store.count(source=entry.source, doc_id=entry.doc_id) if held else 0
        if held > of_version and of_version == 0:
            continue  # a newer version was written and the run stopped before its row
        short.append(entry.source)
        missing += entry.chunks - of_version
    if short:
        problems.append(
            f"it holds {expected - missing:,} of the {expected:,} chunks the manifest records "
            f"({missing:,} missing, from {len(short)} of {len(entries)} documents: "
            f"{_short_sources(short)})"
        )
    return IndexCheck(
        location,
        len(entries),
        expected,
        chunks,
        missing,
        tuple(short),
        unreadable,
        full,
        tuple(problems),
    )


def _location(store: VectorStore) -> str:
    try:
        return store.info().location
    except Exception:
        return "the configured store"


class IndexHealth:
    """What /healthz says about the index, without a full scan on every probe.

    The full check runs once (at start); then the count comparison runs at most every
    `ttl_s` seconds, and not while an ingestion is writing (its counts are briefly between
    versions). A mismatch is confirmed by a second comparison before it is reported. A read
    error the store met while answering (a truncated file) is reported until a restart.
    """

    def __init__(
        self,
        store: VectorStore,
        entries: Callable[[], Iterable[DocumentEntry]],
        ttl_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._entries = entries
        self._ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._last: IndexCheck | None = None
        self._checked_at = 0.0
        self._unreadable: IndexCheck | None = None

    def full_check(self) -> IndexCheck:
        result = check_index(self._store, self._entries(), full=True)
        with self._lock:
            self._remember(result)
        return result

    def current(self, writing: bool = False) -> IndexCheck | None:
        with self._lock:
            fresh = self._last is not None and self._clock() - self._checked_at < self._ttl_s
            if not (fresh or writing):
                result = check_index(self._store, self._entries())
                if not result.ok:
                    result = check_index(self._store, self._entries())
                self._remember(result)
            damage = self._store.damage
            if self._unreadable is None and damage:
                self._unreadable = _unreadable(self._last, self._store, damage)
            return self._unreadable or self._last

    def _remember(self, result: IndexCheck) -> None:
        self._last = result
        self._checked_at = self._clock()
        if result.unreadable is not None:
            self._unreadable = result


def _unreadable(last: IndexCheck | None, store: VectorStore, error: str) -> IndexCheck:
    return IndexCheck(
        last.location if last else _location(store),
        last.documents if last else 0,
        last.expected_chunks if last else 0,
        last.chunks if last else 0,
        unreadable=error,
        problems=(f"its points cannot be read: {error}",),
    )
