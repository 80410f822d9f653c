"""`kill -9` in the middle of `appliance ingest`, then the same command: the clean run's index."""

import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.cli import cli_env, command, index_snapshot, run_cli, run_json

pytestmark = pytest.mark.integration

SMALL_CHUNKS = {"APPLIANCE_CHUNK_SIZE": "48", "APPLIANCE_CHUNK_OVERLAP": "8"}


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


def kill_when(data: Path, docs: Path, ready: Callable[[], bool]) -> None:
    child = subprocess.Popen(
        command("ingest", str(docs), "--json"),
        env=cli_env(data, **SMALL_CHUNKS),
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


def test_killed_ingest_resumes_to_the_clean_index(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    write_docs(docs)
    clean, crashed = tmp_path / "clean", tmp_path / "crashed"
    assert run_json(clean, "ingest", str(docs), **SMALL_CHUNKS)[0] == 0
    expected = index_snapshot(clean)

    kill_when(crashed, docs, lambda: (crashed / "qdrant" / "documents.json").exists())
    kill_when(crashed, docs, lambda: manifest_rows(crashed) >= 1)
    assert 0 < manifest_rows(crashed) < 24, "the second kill did not land mid-ingest"
    code, report = run_json(crashed, "ingest", str(docs), **SMALL_CHUNKS)
    assert code == 0
    assert report["files"]["failed"] == []
    assert report["files"]["new"] + report["files"]["unchanged"] == 24
    assert index_snapshot(crashed) == expected


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
