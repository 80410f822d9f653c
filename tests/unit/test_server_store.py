"""What only the Qdrant server backend has: settings, the wire requests, and its errors.

The requests go over real loopback HTTP to a small recorder that answers as Qdrant does; what
the store does with a collection is the shared suite in test_vector_store.py.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from qdrant_client import QdrantClient, models

from appliance.errors import ConfigError, DimensionMismatchError, StoreError, StoreLockedError
from appliance.services import open_index
from appliance.settings import Settings, load_settings
from appliance.store import factory
from appliance.store.server import connect
from tests.support.stores import _Connection

OK = {"status": "ok", "time": 0.0}


class Recorder(ThreadingHTTPServer):
    """Answers every request with `status`, or as a Qdrant server without the collection."""

    def __init__(self, status: int = 200) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.status = status
        self.requests: list[tuple[str, str, dict[str, str], Any]] = []
        self.collection_info: dict[str, Any] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def answer(self, method: str, path: str) -> Any:
        path = path.split("?")[0]
        if path.endswith("/exists"):
            return {"exists": any(m == "PUT" and p == path[:-7] for m, p, _, _ in self.requests)}
        if method == "PUT" and path.endswith("/index"):
            return {"operation_id": 1, "status": "completed"}
        if method == "PUT":
            return True
        return self.collection_info


class _Handler(BaseHTTPRequestHandler):
    server: Recorder

    def _reply(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        path = self.path.split("?")[0]
        self.server.requests.append((self.command, path, dict(self.headers), body))
        status = self.server.status
        payload: Any = {"status": {"error": "Unauthorized"}, "time": 0.0}
        if status == 200:
            payload = {**OK, "result": self.server.answer(self.command, path)}
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_PUT = do_POST = _reply

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def recorder_factory() -> Iterator[Any]:
    started: list[Recorder] = []

    def start(status: int = 200) -> Recorder:
        recorder = Recorder(status)
        threading.Thread(target=recorder.serve_forever, daemon=True).start()
        started.append(recorder)
        return recorder

    yield start
    for recorder in started:
        recorder.shutdown()
        recorder.server_close()


def collection_info(**create: Any) -> dict[str, Any]:
    """What a server answers about a new 4-d cosine collection, as qdrant-client models it."""
    model = QdrantClient(":memory:")
    vectors = models.VectorParams(size=4, distance=models.Distance.COSINE)
    model.create_collection("docs", vectors_config=vectors, **create)
    info = json.loads(model.get_collection("docs").model_dump_json())
    model.close()
    return dict(info)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def settings(tmp_path: Path, **values: Any) -> Settings:
    return load_settings(data_dir=tmp_path / "data", **values)


def choose_4(meta: object) -> tuple[int, str]:
    return 4, "model-a"


def test_unreachable_server_names_the_url_setting(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    with pytest.raises(StoreError) as caught:
        factory.open_store(settings(tmp_path, qdrant_url=url), choose_4)
    message = str(caught.value)
    assert f"cannot reach the Qdrant server at {url}" in message
    assert "APPLIANCE_QDRANT_URL" in message and "running" in message


@pytest.mark.parametrize(
    ("status", "expected"),
    [(401, "refused the API key (HTTP 401)"), (403, "(HTTP 403). Set APPLIANCE_QDRANT_API_KEY")],
)
def test_rejected_api_key_names_the_key_setting(
    tmp_path: Path, recorder_factory: Any, status: int, expected: str
) -> None:
    server = recorder_factory(status)
    configured = settings(tmp_path, qdrant_url=server.url, qdrant_api_key="wrong-key")
    with pytest.raises(StoreError, match="APPLIANCE_QDRANT_API_KEY") as caught:
        factory.open_store(configured, choose_4)
    assert expected in str(caught.value)
    assert "wrong-key" not in str(caught.value)
    assert server.requests[0][2].get("api-key") == "wrong-key"


def test_new_collection_gets_the_layout_metadata_and_payload_indexes(
    tmp_path: Path, recorder_factory: Any
) -> None:
    server = recorder_factory()
    server.collection_info = collection_info(metadata={"embed_model": "model-a"})
    configured = settings(
        tmp_path,
        qdrant_url=server.url,
        qdrant_shards=3,
        qdrant_replication=2,
        qdrant_write_consistency=2,
    )
    factory.open_store(configured, choose_4).close()

    [create] = [
        body
        for method, path, _, body in server.requests
        if path == "/collections/documents" and method == "PUT"
    ]
    assert create["vectors"] == {"size": 4, "distance": "Cosine"}
    assert (create["shard_number"], create["replication_factor"]) == (3, 2)
    assert create["write_consistency_factor"] == 2
    assert create["metadata"]["embed_model"] == "model-a"
    indexes = {
        body["field_name"]: body["field_schema"]
        for method, path, _, body in server.requests
        if path == "/collections/documents/index"
    }
    assert indexes == {
        "doc_id": "keyword",
        "source": "keyword",
        "acl": "keyword",
        "position": "integer",
    }


def test_unreachable_server_after_opening_is_a_store_error(
    tmp_path: Path, recorder_factory: Any
) -> None:
    server = recorder_factory()
    server.collection_info = collection_info()
    store = factory.open_store(settings(tmp_path, qdrant_url=server.url), choose_4)
    server.shutdown()
    server.server_close()
    with pytest.raises(StoreError, match="cannot reach the Qdrant server"):
        store.count()
    store.close()


def test_api_key_over_plain_http_to_another_host_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="appliance.store.server")
    for url in ("http://127.0.0.1:6333", "http://localhost:6333", "https://qdrant.example:6333"):
        connect(url, "secret").close()
    assert caplog.records == []
    connect("http://qdrant.example:6333", "secret").close()
    [record] = caplog.records
    assert "qdrant_api_key_over_http" in record.getMessage()
    assert "secret" not in record.getMessage()


def test_index_reads_the_collection_meta_through_the_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = _Connection(":memory:")
    monkeypatch.setattr(factory, "server_client", lambda settings: server)
    configured = settings(tmp_path, qdrant_url="https://qdrant.internal:6333")
    factory.open_store(configured, lambda meta: (8, "hash-embedder")).close()

    index = open_index(configured)  # no embedder: the collection's own dimension and model
    info = index.store.info()
    index.close()
    assert (info.backend, info.location) == ("qdrant-server", "https://qdrant.internal:6333")
    assert (info.dimension, info.embed_model) == (8, "hash-embedder")

    class Embedder384:
        name, dimension = "all-MiniLM-L6-v2", 384

    with pytest.raises(DimensionMismatchError, match="APPLIANCE_EMBED_MODEL"):
        open_index(configured, Embedder384())  # type: ignore[arg-type]
    server.shut_down()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"qdrant_url": "qdrant:6333"}, "APPLIANCE_QDRANT_URL: Value error, must be an http://"),
        ({"qdrant_url": "ftp://qdrant"}, "APPLIANCE_QDRANT_URL: Value error, must be an http://"),
        (
            {"qdrant_url": "http://q:6333", "qdrant_replication": 2, "qdrant_write_consistency": 3},
            "qdrant_write_consistency (3) must not exceed qdrant_replication (2)",
        ),
    ],
)
def test_bad_server_settings_are_refused(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_settings(**values)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"qdrant_url": "http://admin:hunter2@q:6333"}, "must not contain a user or password"),
        ({"qdrant_url": "http://q:6333", "qdrant_path": "/srv/q"}, "unset one of them"),
        ({"qdrant_api_key": "k"}, "APPLIANCE_QDRANT_URL is not"),
    ],
)
def test_conflicting_store_settings_are_refused_before_connecting(
    tmp_path: Path, values: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        open_index(settings(tmp_path, **values))
    assert "hunter2" not in str(caught.value)
    assert not (tmp_path / "data").exists()


def test_one_process_at_a_time_writes_a_data_folder_with_a_server_backend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The server takes writers from anywhere; the manifest in the data folder does not.
    server = _Connection(":memory:")
    monkeypatch.setattr(factory, "server_client", lambda settings: server)
    configured = settings(tmp_path, qdrant_url="https://qdrant.internal:6333")
    factory.open_store(configured, lambda meta: (8, "hash-embedder")).close()

    first = open_index(configured)
    try:
        with pytest.raises(StoreLockedError, match="in use by another appliance process"):
            open_index(configured)
    finally:
        first.close()
    open_index(configured).close()  # released on close
    server.shut_down()
