"""The VectorStore behaviour the appliance relies on, for Qdrant Edge and the Qdrant server."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.domain import IndexedChunk
from appliance.errors import DimensionMismatchError, StoreLockedError
from appliance.store.edge import EdgeStore
from tests.support.stores import BACKENDS, LOCAL_MODE_SEARCH_WARNING, StorePlace

pytestmark = pytest.mark.filterwarnings(f"ignore:{LOCAL_MODE_SEARCH_WARNING}")


def chunk(
    source: str, doc_id: str, position: int, acl: tuple[str, ...] = ("everyone",)
) -> IndexedChunk:
    return IndexedChunk(doc_id, source, position, f"text {doc_id} {position}", acl, "now")


@pytest.fixture(params=BACKENDS)
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StorePlace]:
    opened = StorePlace(request.param, tmp_path)
    yield opened
    opened.close()


def test_points_survive_close_and_reopen(place: StorePlace) -> None:
    store = place.open("docs", 4, "model-a")
    chunks = [chunk("/a.txt", "d1", i) for i in range(3)]
    store.upsert(chunks, [[1.0, 0.0, 0.0, float(i)] for i in range(3)])
    store.flush()
    store.close()
    reopened = place.open("docs", 4, "model-a")
    assert reopened.count() == 3
    assert reopened.source_counts() == {"/a.txt": 3}
    info = reopened.info()
    assert (info.collection, info.dimension, info.embed_model, info.points) == (
        "docs",
        4,
        "model-a",
        3,
    )
    assert info.backend == {"edge": "qdrant-edge", "server": "qdrant-server"}[place.backend]
    reopened.close()


def test_same_chunk_written_twice_is_stored_once(place: StorePlace) -> None:
    store = place.open()
    for _ in range(2):
        store.upsert([chunk("/a.txt", "d1", 0)], [[1.0, 0.0, 0.0, 0.0]])
    assert store.count() == 1
    assert [point_id for point_id, _ in store.iter_payloads()] == [
        chunk("/a.txt", "d1", 0).point_id
    ]
    store.close()


def test_delete_stale_keeps_only_the_named_version(place: StorePlace) -> None:
    store = place.open()
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


def test_delete_source_removes_that_source_only(place: StorePlace) -> None:
    store = place.open()
    chunks = [chunk("/a.txt", "d1", 0), chunk("/a.txt", "d1", 1), chunk("/b.txt", "d2", 0)]
    store.upsert(chunks, [[1.0, 0.0, 0.0, 0.0]] * 3)
    store.delete_source("/a.txt")
    assert store.source_counts() == {"/b.txt": 1}
    store.close()


def test_search_filters_by_group_inside_the_query(place: StorePlace) -> None:
    store = place.open()
    secret = chunk("/salaries.txt", "s", 0, acl=("hr",))
    near = chunk("/wifi.txt", "w", 0, acl=("everyone", "staff"))
    far = chunk("/parking.txt", "p", 0, acl=("everyone",))
    store.upsert(
        [secret, near, far], [[1.0, 0.0, 0.0, 0.0], [0.9, 0.1, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]]
    )
    question = [1.0, 0.0, 0.0, 0.0]

    outsider = store.search(question, ["everyone"], limit=1)
    assert [p.source for p in outsider] == ["/wifi.txt"]  # the closer secret is never returned
    insider = store.search(question, ["staff", "hr"], limit=3)
    assert [p.source for p in insider] == ["/salaries.txt", "/wifi.txt"]
    assert insider[0].score == pytest.approx(1.0, abs=1e-5)  # cosine
    assert (insider[0].chunk_id, insider[0].doc_id, insider[0].position) == (
        secret.point_id,
        "s",
        0,
    )
    assert insider[0].text == secret.text
    assert store.search(question, [], limit=3) == []

    store.set_acl("/salaries.txt", ["everyone"])
    assert store.search(question, ["everyone"], limit=1)[0].source == "/salaries.txt"
    store.close()


def test_other_dimension_is_refused_and_nothing_changes(place: StorePlace) -> None:
    store = place.open("docs", 4, "model-a")
    store.upsert([chunk("/a.txt", "d1", 0)], [[1.0, 0.0, 0.0, 0.0]])
    store.close()
    with pytest.raises(DimensionMismatchError, match="4-dimensional vectors from 'model-a'"):
        place.open("docs", 8, "model-b")
    reopened = place.open("docs", 4, "model-a")
    assert reopened.count() == 1
    assert reopened.info().embed_model == "model-a"
    reopened.close()


def test_second_owner_of_the_embedded_store_gets_a_clear_message(tmp_path: Path) -> None:
    store = EdgeStore.open(tmp_path, "docs", 4, "m")
    with pytest.raises(StoreLockedError, match="in use by another appliance process"):
        EdgeStore.open(tmp_path, "docs", 4, "m")
    store.close()
    EdgeStore.open(tmp_path, "docs", 4, "m").close()


def test_processes_share_a_server_collection(tmp_path: Path) -> None:
    place = StorePlace("server", tmp_path)
    first, second = place.open(), place.open()
    first.upsert([chunk("/a.txt", "d1", 0)], [[1.0, 0.0, 0.0, 0.0]])
    assert second.source_counts() == {"/a.txt": 1}
    first.close()
    second.close()
    place.close()


def test_damaged_manifest_is_a_clear_error(tmp_path: Path) -> None:
    from appliance.errors import StoreError
    from appliance.manifest import Manifest

    damaged = tmp_path / "manifest.sqlite3"
    damaged.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="delete it and ingest again"):
        Manifest(damaged)
