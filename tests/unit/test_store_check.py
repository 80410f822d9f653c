"""A damaged embedded store is found, named with its fix, and reported by /healthz; a volume
too small for the store's mapped files is refused before they are mapped."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from appliance.domain import DocumentEntry, IndexedChunk
from appliance.errors import IndexDamagedError, StoreSpaceError
from appliance.metrics import Metrics
from appliance.store import space
from appliance.store.check import IndexHealth, check_index
from appliance.store.edge import EdgeStore, read_collection_meta
from appliance.web import ops

SOURCES = ("/docs/a.txt", "/docs/b.txt", "/docs/c.txt")
PER_SOURCE = 5


def chunks(source: str, doc_id: str, count: int = PER_SOURCE) -> list[IndexedChunk]:
    return [IndexedChunk(doc_id, source, n, f"{source} {n}", ("staff",), "t") for n in range(count)]


def vectors(count: int) -> list[list[float]]:
    return [[1.0, float(n), 0.5, 0.25] for n in range(count)]


def fill(root: Path) -> tuple[EdgeStore, list[DocumentEntry]]:
    store = EdgeStore.open(root, "docs", 4, "m")
    entries = []
    for n, source in enumerate(SOURCES):
        store.upsert(chunks(source, f"v{n}"), vectors(PER_SOURCE))
        entries.append(DocumentEntry(source, f"v{n}", 10, PER_SOURCE, ("staff",), "t"))
    store.flush()
    return store, entries


def segment_file(root: Path, pattern: str) -> Path:
    return next(root.glob(f"docs/segments/*/{pattern}"))


def test_missing_points_are_damage_but_an_unfinished_run_is_not(tmp_path: Path) -> None:
    store, entries = fill(tmp_path)
    try:
        assert check_index(store, entries).ok
        # Killed runs: points not yet in the manifest, and a newer version without its row.
        store.upsert(chunks("/docs/new.txt", "v9"), vectors(PER_SOURCE))
        store.upsert(chunks(SOURCES[2], "v2-new", 2), vectors(2))
        store.delete_stale(SOURCES[2], "v2-new", 2)
        assert check_index(store, entries).ok

        # What a truncated id tracker leaves: the manifest vouches for points that are gone.
        store.delete_source(SOURCES[0])
        store.delete_stale(SOURCES[1], "v1", 2)
        result = check_index(store, entries)
        assert not result.ok
        assert result.missing_chunks == PER_SOURCE + PER_SOURCE - 2
        assert result.damaged_sources == (SOURCES[0], SOURCES[1])
        assert "appliance repair" in result.message()
        with pytest.raises(IndexDamagedError, match="8 missing"):
            result.raise_if_damaged()
    finally:
        store.close()


@pytest.mark.parametrize(
    "pattern", ["payload_storage/page_0.dat", "vector_storage/vectors/chunk_0.mmap"]
)
def test_truncated_store_file_is_damage_that_healthz_reports(tmp_path: Path, pattern: str) -> None:
    store, entries = fill(tmp_path)
    store.close()
    os.truncate(segment_file(tmp_path, pattern), 0)
    store = EdgeStore.open(tmp_path, "docs", 4, "m")
    try:
        assert check_index(store, entries).ok  # the counts alone look whole
        result = check_index(store, entries, full=True)
        assert not result.ok and result.unreadable
        assert "cannot be read" in result.message() and "appliance repair" in result.message()
        with pytest.raises(IndexDamagedError, match="appliance repair"):
            store.search([1.0, 0.0, 0.0, 0.0], ["staff"], 5)

        health = IndexHealth(store, lambda: entries)
        assert health.full_check().ok is False
        report = {"model_loaded": True, "store_open": True, "audit_writable": True}
        check = health.current()
        assert check is not None
        report.update(index_ok=check.ok, index_error=check.message())
        app = FastAPI()
        app.include_router(ops.build_router(lambda: dict(report), Metrics(lambda: {})))
        response = TestClient(app).get("/healthz")
        assert response.status_code == 503
        assert response.json()["status"] == "unavailable"
        assert response.json()["index_ok"] is False
        assert "index_error" not in response.json()  # it names paths: the log has it
    finally:
        store.close()


class CountingStore:
    """Counts the queries /healthz makes."""

    def __init__(self, store: EdgeStore) -> None:
        self.store = store
        self.facets = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)

    def source_counts(self) -> dict[str, int]:
        self.facets += 1
        return self.store.source_counts()


def test_healthz_compares_counts_at_most_once_per_interval(tmp_path: Path) -> None:
    store, entries = fill(tmp_path)
    counting = CountingStore(store)
    now = [0.0]
    health = IndexHealth(counting, lambda: entries, ttl_s=30, clock=lambda: now[0])  # type: ignore[arg-type]
    try:
        for _ in range(5):
            check = health.current()
            assert check is not None and check.ok
        assert counting.facets == 1
        store.delete_source(SOURCES[0])
        now[0] = 10.0
        check = health.current()
        assert check is not None and check.ok  # cached
        now[0] = 31.0
        assert health.current(writing=True).ok  # type: ignore[union-attr]  # not while writing
        check = health.current()
        assert check is not None and not check.ok and check.missing_chunks == PER_SOURCE
    finally:
        store.close()


def test_truncated_collection_file_names_the_file_and_the_fix(tmp_path: Path) -> None:
    store, _entries = fill(tmp_path)
    store.close()
    meta = tmp_path / "docs.json"
    meta.write_text(meta.read_text(encoding="utf-8")[:20], encoding="utf-8")
    with pytest.raises(IndexDamagedError) as caught:
        read_collection_meta(tmp_path, "docs")
    assert str(meta) in str(caught.value) and "appliance repair" in str(caught.value)


def test_small_volume_is_refused_before_the_store_maps_its_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(space, "free_bytes", lambda path: 40 * space.MB)
    with pytest.raises(StoreSpaceError) as caught:
        EdgeStore.open(tmp_path, "docs", 4, "m")
    message = str(caught.value)
    assert "40 MB free" in message and "224 MB" in message and "APPLIANCE_DATA_DIR" in message
    assert not (tmp_path / "docs").exists()

    monkeypatch.undo()
    store, _entries = fill(tmp_path)
    store.close()
    need = space.required_bytes(tmp_path / "docs")
    # An existing store needs what its sparse files have not written yet, plus room to grow.
    assert need == space.unbacked_bytes(tmp_path / "docs") + space.GROWTH_BYTES
    assert need > space.GROWTH_BYTES + 100 * space.MB
    monkeypatch.setattr(space, "free_bytes", lambda path: need - 1)
    with pytest.raises(StoreSpaceError, match=f"{need / space.MB:.0f} MB more"):
        EdgeStore.open(tmp_path, "docs", 4, "m")
    monkeypatch.setattr(space, "free_bytes", lambda path: need)
    EdgeStore.open(tmp_path, "docs", 4, "m").close()


def test_a_forget_killed_between_its_two_writes_leaves_no_damage(tmp_path: Path) -> None:
    """The manifest row says "no chunk need be there" before the chunks go, so a process
    killed after they went (here: before the rows are removed) leaves an index the check
    finds whole, not one every command refuses as damaged."""
    from appliance.manifest import Manifest
    from ingest.pipeline import forget

    store, entries = fill(tmp_path / "qdrant")
    manifest = Manifest(tmp_path / "manifest.sqlite3")
    try:
        for entry in entries:
            manifest.put(entry)

        def killed(source: str) -> None:
            raise KeyboardInterrupt

        removing = manifest.remove
        manifest.remove = killed  # type: ignore[method-assign]
        with pytest.raises(KeyboardInterrupt):
            forget(store, manifest, SOURCES[0])
        assert store.source_counts().get(SOURCES[0], 0) == 0
        assert check_index(store, manifest.entries()).ok
        manifest.remove = removing  # type: ignore[method-assign]
        forget(store, manifest, SOURCES[0])  # run again: done
        assert manifest.get(SOURCES[0]) is None and check_index(store, manifest.entries()).ok
    finally:
        manifest.close()
        store.close()
