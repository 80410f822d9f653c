"""`appliance audit verify`, `head` and `export` in a child process, on a log filled through
the Python API (keyed with an audit key outside the data directory) and then tampered with as
an attacker with the file, but not the key, would."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import sqlite3
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from appliance.audit import AuditLog, AuditRecord
from appliance.audit.guards import GUARD_TRIGGERS
from tests.integration.cli import run_cli, run_json
from tests.support.audit import DOC_A, DOC_B, make_entry, make_passage

pytestmark = pytest.mark.integration


def audit_path(data: Path) -> Path:
    return data / "audit.sqlite3"


def key_path(data: Path) -> Path:
    return data.parent / "secrets" / "audit.key"


def key_env(data: Path) -> dict[str, str]:
    return {"APPLIANCE_AUDIT_KEY_FILE": str(key_path(data))}


def fill(data: Path, docs: Path) -> list[AuditRecord]:
    leave, vpn = str(docs / "hr" / "leave.pdf"), str(docs / "it" / "vpn.md")
    with AuditLog(audit_path(data), key_file=key_path(data)) as log:
        return [
            log.append(make_entry(user="alice", passages=(make_passage(1, DOC_A, leave),))),
            log.append(make_entry(user="bob", passages=(make_passage(1, DOC_B, vpn),))),
            log.append(make_entry(user="alice", question="VPN setup?", answer=None)),
        ]


def run(data: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    result = run_cli(data, "audit", *args, **{**key_env(data), **env})
    assert "Traceback" not in result.stderr, result.stderr
    return result


def tamper(data: Path, statement: str, *, put_guards_back: bool = True) -> None:
    """Drop the guards, run `statement`, and put the guards back to cover the tracks."""
    db = sqlite3.connect(audit_path(data), isolation_level=None)
    try:
        db.execute("DROP TRIGGER records_no_update")
        db.execute("DROP TRIGGER records_no_delete")
        db.execute(statement)
        if put_guards_back:
            db.execute(GUARD_TRIGGERS["records_no_update"])
            db.execute(GUARD_TRIGGERS["records_no_delete"])
    finally:
        db.close()


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    return (tmp_path / "docs").resolve()


def test_a_missing_log_holds_no_records_and_is_not_created(data: Path) -> None:
    result = run(data, "verify")
    assert (result.returncode, result.stdout.strip()) == (0, "0 records verified")
    assert "empty" in run(data, "head").stdout
    assert run_json(data, "audit", "head", **key_env(data)) == (0, {"seq": 0, "hash": "0" * 64})
    export = run(data, "export", "--format", "csv")
    assert export.returncode == 0
    assert export.stdout.splitlines()[0].startswith("seq,id,created_at,user")
    assert not data.exists() and not key_path(data).exists()
    assert run(data, "verify", "--expect-head", "1" * 64).returncode == 1


def test_verify_and_head_on_a_clean_log(data: Path, docs: Path) -> None:
    records = fill(data, docs)
    key = key_path(data)
    summary = f"3 records verified, keyed with HMAC-SHA256 (key file {key}, key id "
    result = run(data, "verify")
    assert result.returncode == 0 and result.stdout.startswith(summary)
    code, report = run_json(data, "audit", "verify", **key_env(data))
    assert code == 0
    assert report["message"].startswith(summary)
    assert report == {
        "ok": True,
        "records": 3,
        "message": report["message"],
        "seq": None,
        "keyed": 3,
        "key_file": str(key),
    }
    assert key.read_text().strip() not in result.stdout + json.dumps(report)
    head = run(data, "head")
    assert head.returncode == 0
    assert "3" in head.stdout and records[-1].hash in head.stdout
    assert run_json(data, "audit", "head", **key_env(data)) == (
        0,
        {"seq": 3, "hash": records[-1].hash},
    )
    assert run(data, "verify", "--expect-head", records[-1].hash).returncode == 0


def test_verify_reports_an_altered_record(data: Path, docs: Path) -> None:
    records = fill(data, docs)
    tamper(data, "UPDATE records SET body = replace(body, 'Twenty-five', 'Fifty') WHERE seq = 1")
    result = run(data, "verify")
    assert result.returncode == 1
    assert f"record 1 (id {records[0].id}) was altered" in result.stderr
    code, report = run_json(data, "audit", "verify", **key_env(data))
    assert (code, report["ok"], report["seq"], report["records"]) == (1, False, 1, 0)


def test_verify_reports_a_rewrite_without_the_key(data: Path, docs: Path) -> None:
    records = fill(data, docs)
    db = sqlite3.connect(audit_path(data))
    body, prev_hash = db.execute("SELECT body, prev_hash FROM records WHERE seq = 3").fetchone()
    db.close()
    forged = json.loads(body)
    forged["question"] = "something else"
    text = json.dumps(forged, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    plain = hashlib.sha256(text.encode("utf-8")).hexdigest()
    tamper(
        data,
        f"UPDATE records SET body = '{text}', hash = '{plain}', hash_scheme = 'sha256' "
        "WHERE seq = 3",
    )
    result = run(data, "verify")
    assert result.returncode == 1
    assert f"record 3 (id {records[2].id}) was altered" in result.stderr
    assert "downgrade" in result.stderr
    assert prev_hash == records[1].hash


def test_verify_reports_dropped_guards(data: Path, docs: Path) -> None:
    fill(data, docs)
    tamper(data, "SELECT 1", put_guards_back=False)
    result = run(data, "verify")
    assert result.returncode == 1
    assert "records_no_update, records_no_delete are missing" in result.stderr


def test_verify_without_the_key_file_cannot_check_a_keyed_log(
    data: Path, docs: Path, tmp_path: Path
) -> None:
    fill(data, docs)
    missing = tmp_path / "elsewhere" / "audit.key"
    result = run(data, "verify", APPLIANCE_AUDIT_KEY_FILE=str(missing))
    assert result.returncode == 1
    assert "cannot be checked" in result.stderr and str(missing) in result.stderr
    assert not missing.exists()


def test_verify_reports_a_deleted_record(data: Path, docs: Path) -> None:
    fill(data, docs)
    tamper(data, "DELETE FROM records WHERE seq = 2")
    result = run(data, "verify")
    assert result.returncode == 1
    assert "record 2 was deleted" in result.stderr


def test_verify_reports_a_truncated_log_against_a_kept_head(data: Path, docs: Path) -> None:
    fill(data, docs)
    kept = run_json(data, "audit", "head")[1]["hash"]
    tamper(data, "DELETE FROM records WHERE seq = 3")
    assert run(data, "verify").returncode == 0
    result = run(data, "verify", "--expect-head", kept)
    assert result.returncode == 1
    assert "truncated" in result.stderr and kept in result.stderr
    audit_path(data).unlink()
    assert run(data, "verify", "--expect-head", kept).returncode == 1


def test_verify_reports_a_damaged_file(data: Path) -> None:
    data.mkdir()
    audit_path(data).write_bytes(b"garbage" * 1000)
    result = run(data, "verify")
    assert result.returncode == 1
    assert "cannot open the audit log" in result.stderr


def test_a_bad_expected_head_is_a_usage_error(data: Path, docs: Path) -> None:
    fill(data, docs)
    result = run(data, "verify", "--expect-head", "not-a-hash")
    assert result.returncode == 2
    assert "not a chain hash" in result.stderr


def test_export_filters_and_formats(data: Path, docs: Path, tmp_path: Path) -> None:
    records = fill(data, docs)

    def exported(*args: str) -> list[dict[str, object]]:
        result = run(data, "export", "--format", "jsonl", *args)
        assert result.returncode == 0, result.stderr
        return [json.loads(line) for line in result.stdout.splitlines()]

    assert [r["id"] for r in exported()] == [r.id for r in records]
    assert [r["seq"] for r in exported("--user", "alice")] == [1, 3]
    assert [r["seq"] for r in exported("--document", str(docs / "hr"))] == [1]
    assert [r["seq"] for r in exported("--document", DOC_B)] == [2]
    assert [r["seq"] for r in exported("--document", str(docs))] == [1, 2]
    assert [r["seq"] for r in exported("--text", "vpn")] == [3]
    today = datetime.now(UTC).date()
    assert len(exported("--since", today.isoformat(), "--until", today.isoformat())) == 3
    assert exported("--until", (today - timedelta(days=1)).isoformat()) == []
    assert exported("--since", f"{today + timedelta(days=1)}T00:00:00+00:00") == []

    out = tmp_path / "export.csv"
    result = run(data, "export", "--format", "csv", "--user", "bob", "--out", str(out))
    assert result.returncode == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert [(r["user"], r["sources"]) for r in rows] == [("bob", str(docs / "it" / "vpn.md"))]


@pytest.mark.parametrize("option", ["--since", "--until"])
def test_a_bad_date_names_the_option(data: Path, option: str) -> None:
    result = run(data, "export", "--format", "csv", option, "yesterday")
    assert result.returncode == 2
    assert option in result.stderr and "yesterday" in result.stderr


def test_a_bad_format_is_a_usage_error(data: Path) -> None:
    result = run(data, "export", "--format", "xml")
    assert result.returncode == 2
