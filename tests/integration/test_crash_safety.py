"""`kill -9` in the middle of `appliance ingest`, then the same command: the clean run's index,
on Qdrant Edge and on the Qdrant server backend."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from qdrant_client import QdrantClient

from appliance.store.server import QdrantServerStore, read_meta
from tests.integration.cli import (
    chunk_rows,
    cli_env,
    command,
    index_snapshot,
    run_cli,
    run_json,
)

pytestmark = pytest.mark.integration

SMALL_CHUNKS = {"APPLIANCE_CHUNK_SIZE": "48", "APPLIANCE_CHUNK_OVERLAP": "8"}
REPOSITORY = Path(__file__).resolve().parents[2]


def write_docs(folder: Path, count: int = 24) -> None:
    folder.mkdir()
    for n in range(count):
        sentences = [
            f"Document {n} states fact number {k} about topic {n * k % 17}." for k in range(180)
        ]
        (folder / f"doc-{n:02d}.txt").write_text(" ".join(sentences), encoding="utf-8")


def manifest_rows(data: Path) -> int:
    path = data / "manifest-documents.sqlite3"
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1) as db:
            return int(db.execute("SELECT COUNT(*) FROM documents").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


@dataclass(frozen=True)
class Backend:
    """How to run `appliance ingest` on one store backend, and read back what it stored."""

    name: str

    def command(self, *args: str) -> list[str]:
        if self.name == "edge":
            return command(*args)
        return [sys.executable, "-m", "tests.integration.local_qdrant_cli", *args]

    def env(self, data: Path) -> dict[str, str]:
        if self.name == "edge":
            return cli_env(data, **SMALL_CHUNKS)
        return cli_env(
            data,
            **SMALL_CHUNKS,
            APPLIANCE_QDRANT_URL="http://qdrant.test:6333",
            QDRANT_LOCAL_PATH=str(self.server_dir(data)),
            PYTHONPATH=str(REPOSITORY),
        )

    @staticmethod
    def server_dir(data: Path) -> Path:
        return data.parent / f"{data.name}-server"

    def collection_created(self, data: Path) -> bool:
        if self.name == "edge":
            return (data / "qdrant" / "documents.json").exists()
        meta = self.server_dir(data) / "meta.json"
        return meta.exists() and '"documents"' in meta.read_text(encoding="utf-8")

    def ingest(self, data: Path, docs: Path) -> tuple[int, dict[str, Any]]:
        result = subprocess.run(
            self.command("ingest", str(docs), "--json"),
            env=self.env(data),
            cwd=data.parent,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert "Traceback" not in result.stderr, result.stderr
        return result.returncode, json.loads(result.stdout)

    def snapshot(self, data: Path) -> dict[str, tuple[Any, ...]]:
        if self.name == "edge":
            return index_snapshot(data)
        client = QdrantClient(path=str(self.server_dir(data)))
        meta = read_meta(client, "documents", "local")
        assert meta is not None
        store = QdrantServerStore.open(
            client, "documents", meta.dimension, meta.embed_model, location="local"
        )
        return chunk_rows(store)


def kill_when(backend: Backend, data: Path, docs: Path, ready: Callable[[], bool]) -> None:
    child = subprocess.Popen(
        backend.command("ingest", str(docs), "--json"),
        env=backend.env(data),
        cwd=data.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while not ready() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert child.poll() is None, "the ingest finished before it could be killed"
    os.killpg(child.pid, signal.SIGKILL)  # the parser worker dies with it
    child.wait()


@pytest.fixture(scope="module")
def clean_index(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The documents, and the index a clean run makes of them: the same on either backend
    (stable point ids, same payloads), so it is made once."""
    root = tmp_path_factory.mktemp("crash")
    docs = root / "docs"
    write_docs(docs)
    assert run_json(root / "clean", "ingest", str(docs), **SMALL_CHUNKS)[0] == 0
    return docs, index_snapshot(root / "clean")


@pytest.mark.parametrize("backend", [Backend("edge"), Backend("server")], ids=lambda b: b.name)
def test_killed_ingest_resumes_to_the_clean_index(
    tmp_path: Path, clean_index: tuple[Path, dict[str, Any]], backend: Backend
) -> None:
    docs, expected = clean_index
    crashed = tmp_path / "crashed"
    kill_when(backend, crashed, docs, lambda: backend.collection_created(crashed))
    kill_when(backend, crashed, docs, lambda: manifest_rows(crashed) >= 1)
    assert 0 < manifest_rows(crashed) < 24, "the second kill did not land mid-ingest"
    code, report = backend.ingest(crashed, docs)
    assert code == 0
    assert report["files"]["failed"] == []
    assert report["files"]["new"] + report["files"]["unchanged"] == 24
    assert backend.snapshot(crashed) == expected


def test_second_process_is_told_the_store_is_in_use(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    write_docs(docs, count=12)
    data = tmp_path / "data"
    owner = subprocess.Popen(
        command("ingest", str(docs), "--json"),
        env=cli_env(data, **SMALL_CHUNKS),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lock = data / "qdrant" / "documents.lock"
    deadline = time.monotonic() + 300
    while not (lock.exists() and lock.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)
    second = run_cli(data, "status")
    _out, err = owner.communicate(timeout=600)
    assert owner.returncode == 0, err
    assert second.returncode == 2
    assert f"in use by another appliance process (pid {owner.pid})" in second.stderr
    assert "Traceback" not in second.stderr
    assert run_json(data, "status")[1]["documents"] == 12
