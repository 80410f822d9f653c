from pathlib import Path

import pytest

from appliance.domain import IndexedChunk
from appliance.errors import DimensionMismatchError, StoreLockedError
from appliance.store.edge import EdgeStore


def chunk(source: str, doc_id: str, position: int) -> IndexedChunk:
    return IndexedChunk(doc_id, source, position, f"text {doc_id} {position}", ("everyone",), "now")


def test_points_survive_close_and_reopen(tmp_path: Path) -> None:
    store = EdgeStore.open(tmp_path, "docs", 4, "model-a")
    chunks = [chunk("/a.txt", "d1", i) for i in range(3)]
    store.upsert(chunks, [[1.0, 0.0, 0.0, float(i)] for i in range(3)])
    store.close()
    reopened = EdgeStore.open(tmp_path, "docs", 4, "model-a")
    assert reopened.count() == 3
    assert reopened.source_counts() == {"/a.txt": 3}
    reopened.close()


def test_same_chunk_written_twice_is_stored_once(tmp_path: Path) -> None:
    store = EdgeStore.open(tmp_path, "docs", 4, "m")
    for _ in range(2):
        store.upsert([chunk("/a.txt", "d1", 0)], [[1.0, 0.0, 0.0, 0.0]])
    assert store.count() == 1
    store.close()


def test_delete_stale_keeps_only_the_named_version(tmp_path: Path) -> None:
    store = EdgeStore.open(tmp_path, "docs", 4, "m")
    old = [chunk("/a.txt", "old", i) for i in range(4)]
    new = [chunk("/a.txt", "new", i) for i in range(3)]
    other = [chunk("/b.txt", "old", 0)]
    everything = old + new + other
    store.upsert(everything, [[1.0, 0.0, 0.0, 0.0]] * len(everything))
    store.delete_stale("/a.txt", "new", 2)
    assert store.count(source="/a.txt") == 2
    assert store.count(source="/a.txt", doc_id="new") == 2
    assert store.count(source="/b.txt") == 1
    store.close()


def test_second_owner_gets_a_clear_message(tmp_path: Path) -> None:
    store = EdgeStore.open(tmp_path, "docs", 4, "m")
    with pytest.raises(StoreLockedError, match="in use by another appliance process"):
        EdgeStore.open(tmp_path, "docs", 4, "m")
    store.close()
    EdgeStore.open(tmp_path, "docs", 4, "m").close()


def test_other_dimension_is_refused_and_nothing_changes(tmp_path: Path) -> None:
    store = EdgeStore.open(tmp_path, "docs", 4, "model-a")
    store.upsert([chunk("/a.txt", "d1", 0)], [[1.0, 0.0, 0.0, 0.0]])
    store.close()
    with pytest.raises(DimensionMismatchError, match="4-dimensional vectors from 'model-a'"):
        EdgeStore.open(tmp_path, "docs", 8, "model-b")
    reopened = EdgeStore.open(tmp_path, "docs", 4, "model-a")
    assert reopened.count() == 1
    reopened.close()


def test_damaged_manifest_is_a_clear_error(tmp_path: Path) -> None:
    from appliance.errors import StoreError
    from appliance.manifest import Manifest

    damaged = tmp_path / "manifest.sqlite3"
    damaged.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="delete it and ingest again"):
        Manifest(damaged)
