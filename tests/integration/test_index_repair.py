"""A damaged index, end to end: real MiniLM, real Qdrant Edge, the real `appliance` command.

`status --check` names the damage and its fix, `ask` and `ingest` stop with that message
(never raw Qdrant errors, never "unchanged"), and `appliance repair` rebuilds the index from
the documents with their groups, leaving the audit log as it was."""

import os
import sqlite3
from pathlib import Path

import pytest

from appliance.store.edge import EdgeStore
from tests.integration.cli import index_snapshot, run_cli, run_json

pytestmark = pytest.mark.integration

SMALL_CHUNKS = {"APPLIANCE_CHUNK_SIZE": "48", "APPLIANCE_CHUNK_OVERLAP": "8"}


def audit_rows(data: Path) -> int:
    with sqlite3.connect(data / "audit.sqlite3") as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return sum(int(db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]) for t in tables)


def assert_refused(result_code: int, stderr: str) -> None:
    assert result_code == 2, stderr
    assert "is damaged" in stderr and "appliance repair" in stderr
    assert "Traceback" not in stderr


def test_damage_is_reported_refused_and_repaired(tmp_path: Path) -> None:
    docs, board, data = tmp_path / "docs", tmp_path / "board", tmp_path / "data"
    docs.mkdir()
    board.mkdir()
    for n in range(3):
        text = " ".join(f"Document {n} states fact {k} about topic {k % 7}." for k in range(60))
        (docs / f"d{n}.txt").write_text(text, encoding="utf-8")
    (board / "merger.txt").write_text("The merger code name is Bluebird.", encoding="utf-8")
    assert run_json(data, "ingest", str(docs), **SMALL_CHUNKS)[0] == 0
    assert run_json(data, "ingest", str(board), "--acl", "board", **SMALL_CHUNKS)[0] == 0
    code, status = run_json(data, "status", "--check")
    assert code == 0 and status["index"]["ok"] and status["index"]["full"]
    clean = index_snapshot(data)
    code, _ = run_json(data, "ask", "fact 3", "--retrieve-only")
    assert code == 0
    audited = audit_rows(data)

    # 1. A truncated payload file: every count still looks whole.
    shard = data / "qdrant" / "documents"
    os.truncate(next(shard.glob("segments/*/payload_storage/page_0.dat")), 0)
    code, status = run_json(data, "status")
    assert code == 0  # counts only
    result = run_cli(data, "status", "--check")
    assert result.returncode == 1
    assert "DAMAGED" in result.stdout and "appliance repair" in result.stdout
    assert "cannot read the payloads" in result.stdout
    result = run_cli(data, "ask", "fact 3", "--retrieve-only")
    assert "is damaged" in result.stderr and "appliance repair" in result.stderr
    assert result.returncode == 2 and "Traceback" not in result.stderr
    result = run_cli(data, "ingest", str(docs), **SMALL_CHUNKS)
    assert_refused(result.returncode, result.stderr)
    assert "unchanged" not in result.stdout

    result = run_cli(data, "repair", **SMALL_CHUNKS)
    assert result.returncode == 0, result.stderr
    assert "rebuilt: 4 documents" in result.stdout
    assert index_snapshot(data) == clean  # same chunks, ids and groups
    assert not (data / "qdrant" / "documents.damaged").exists()
    assert audit_rows(data) >= audited
    code, status = run_json(data, "status", "--check")
    assert code == 0 and status["index"]["ok"]

    # 2. Points gone (what a truncated id tracker leaves): answers would come from the rest.
    meta = data / "qdrant" / "documents.json"
    store = EdgeStore.open(data / "qdrant", "documents", 384, "m")
    store.delete_source(str((docs / "d0.txt").resolve()))
    store.delete_source(str((board / "merger.txt").resolve()))
    store.close()
    code, status = run_json(data, "status")
    assert code == 1
    assert status["index"]["damaged_documents"] == sorted(
        [str((docs / "d0.txt").resolve()), str((board / "merger.txt").resolve())]
    )
    result = run_cli(data, "ask", "fact 3", "--retrieve-only")
    assert_refused(result.returncode, result.stderr)

    # 3. A truncated collection file.
    meta.write_text(meta.read_text(encoding="utf-8")[:20], encoding="utf-8")
    result = run_cli(data, "status")
    assert_refused(result.returncode, result.stderr)
    assert str(meta) in result.stderr

    code, repaired = run_json(data, "repair", **SMALL_CHUNKS)
    assert code == 0 and repaired["index"]["ok"]
    assert index_snapshot(data) == clean
    assert audit_rows(data) >= audited

    # 4. A recorded file gone (an unmounted share?) and one replaced by a link out of the
    # folder: nothing is touched without --drop-missing, and the link is never followed.
    secret = tmp_path / "elsewhere.txt"
    secret.write_text("The vault combination is 31-41-59.", encoding="utf-8")
    (docs / "d1.txt").rename(tmp_path / "d1.moved")
    (docs / "d2.txt").unlink()
    (docs / "d2.txt").symlink_to(secret)
    result = run_cli(data, "repair", **SMALL_CHUNKS)
    assert result.returncode == 2 and "--drop-missing" in result.stderr, result.stderr
    assert "nothing was changed" in result.stderr and index_snapshot(data) == clean
    code, dropped = run_json(data, "repair", "--drop-missing", **SMALL_CHUNKS)
    assert code == 1 and dropped["index"]["ok"]
    assert sorted(dropped["missing_files"]) == [
        str((docs / "d1.txt").resolve()),
        str(docs.resolve() / "d2.txt"),
    ]
    code, found = run_json(data, "ask", "vault combination", "--retrieve-only")
    assert code == 0 and all("31-41-59" not in s["text"] for s in found["sources"])
