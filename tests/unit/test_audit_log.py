"""The audit log on real SQLite: appending, querying, migrations, fail-closed writes, and
`verify` catching each kind of tampering an attacker with the file could do, with and without
the audit key (the keyed chain also resists someone who recomputes the hashes)."""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
import uuid
from collections import namedtuple
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from appliance.audit import GENESIS_HASH, AuditLog, AuditRecord
from appliance.audit.guards import GUARD_TRIGGERS
from appliance.audit.log import ABOUT, MIGRATIONS, SCHEMA_VERSION
from appliance.audit.records import body_hash, build_body, canonical_json
from appliance.errors import AuditError
from appliance.settings import Settings
from tests.support.audit import DOC_A, DOC_B, make_entry, make_passage


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "audit.sqlite3"


@pytest.fixture
def audit(log_path: Path) -> Iterator[AuditLog]:
    log = AuditLog(log_path)
    yield log
    log.close()


def fill(log: AuditLog, count: int) -> list[AuditRecord]:
    return [
        log.append(
            make_entry(
                user=f"user{i % 2}",
                question=f"question {i}",
                passages=(make_passage(1, DOC_A, "/docs/a.pdf", cited=True),),
            )
        )
        for i in range(1, count + 1)
    ]


def raw(
    path: Path, *statements: str, params: tuple[Any, ...] = (), put_guards_back: bool = True
) -> None:
    """Tamper as an attacker with the file would: drop the guards, change rows, and (unless
    told not to) put the guards back to cover the tracks."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        for name in GUARD_TRIGGERS:
            db.execute(f"DROP TRIGGER IF EXISTS {name}")
        for statement in statements:
            db.execute(statement, params if "?" in statement else ())
        if put_guards_back:
            for sql in GUARD_TRIGGERS.values():
                db.execute(sql)
    finally:
        db.close()


# Appending and reading back


def test_append_links_records_into_a_chain(audit: AuditLog) -> None:
    assert audit.head() is None
    first, second = fill(audit, 2)
    assert (first.seq, second.seq) == (1, 2)
    assert first.prev_hash == GENESIS_HASH
    assert second.prev_hash == first.hash
    assert audit.head() == (2, second.hash)
    assert first.created_at.endswith("Z")
    assert datetime.fromisoformat(first.created_at) <= datetime.now(UTC)
    assert audit.get(second.id) == second
    assert audit.get(str(uuid.uuid4())) is None


def test_record_keeps_every_field_with_floats_rounded(audit: AuditLog) -> None:
    passage = make_passage(1, DOC_A, "/docs/a.pdf", cited=True)
    entry = make_entry(
        passages=(passage,),
        timings={"total_ms": 1.123456789, "tokens_per_s": float("inf")},
        retrieval={"k": 3, "path": Path("/x"), "nested": [0.1234567891]},
        channel="web",
    )
    record = audit.append(entry)
    assert record.entry.passages[0].score == round(passage.score, 6)
    assert record.entry.timings == {"total_ms": 1.123457, "tokens_per_s": None}
    assert record.entry.retrieval == {"k": 3, "path": "/x", "nested": [0.123457]}
    assert record.entry.groups == ("staff", "hr")
    assert record.entry.channel == "web"
    data = record.to_json()
    assert list(data)[:4] == ["seq", "id", "created_at", "user"]
    assert data["passages"][0]["cited"] is True
    assert (
        data["hash"]
        == record.hash
        == body_hash(
            build_body(record.seq, record.id, record.created_at, record.prev_hash, record.entry)
        )
    )
    assert json.loads(json.dumps(data)) == data


def test_a_machine_read_passage_is_recorded_as_ocr_and_a_typed_one_as_before(
    audit: AuditLog,
) -> None:
    from dataclasses import replace

    scanned = replace(
        make_passage(1, DOC_A, "/docs/scan.pdf", cited=True), ocr=True, ocr_confidence=91.4
    )
    typed = make_passage(2, DOC_B, "/docs/b.md")
    record = audit.append(make_entry(passages=(scanned, typed)))
    first, second = record.to_json()["passages"]
    assert (first["ocr"], first["ocr_confidence"], first["page"]) == (True, 91.4, 1)
    assert "ocr" not in second and "ocr_confidence" not in second
    stored = audit.get(record.id)
    assert stored is not None
    assert [(p.ocr, p.ocr_confidence) for p in stored.entry.passages] == [
        (True, 91.4),
        (False, None),
    ]
    assert audit.verify().ok


def test_bad_values_are_refused_and_nothing_is_written(audit: AuditLog) -> None:
    with pytest.raises(AuditError, match="cannot record"):
        audit.append(make_entry(retrieval={"k": object()}))
    with pytest.raises(AuditError, match="outcome"):
        audit.append(make_entry(outcome="maybe"))
    assert audit.head() is None
    assert audit.append(make_entry()).seq == 1


def test_question_and_answer_never_reach_the_application_log(
    audit: AuditLog, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    audit.append(make_entry(question="secret salary of Bob", answer="a secret answer"))
    audit.verify()
    assert "audit_append" in caplog.text
    assert "secret" not in caplog.text


# Queries


def test_query_filters_by_user_time_and_text(audit: AuditLog) -> None:
    records = fill(audit, 4)
    audit.append(make_entry(user="émile", question="Congés d'ÉTÉ ?", answer=None))
    assert [r.seq for r in audit.query(user="user1")] == [1, 3]
    assert [r.seq for r in audit.query(text="QUESTION 2")] == [2]
    assert [r.seq for r in audit.query(text="été")] == [5]
    assert [r.seq for r in audit.query(text="twenty-five", user="user0")] == [2, 4]
    since = datetime.fromisoformat(records[1].created_at)
    until = datetime.fromisoformat(records[3].created_at)
    assert [r.seq for r in audit.query(since=since, until=until)] == [2, 3]
    naive = since.astimezone(UTC).replace(tzinfo=None)
    assert [r.seq for r in audit.query(since=naive, limit=2)] == [2, 3]
    assert audit.query(until=since - timedelta(days=1)) == []
    assert [r.seq for r in audit.query(newest_first=True, limit=2)] == [5, 4]
    assert [r.seq for r in audit.query(limit=2, offset=2)] == [3, 4]
    assert audit.count() == 5


def test_query_by_document_id_file_and_folder(
    audit: AuditLog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = (tmp_path / "docs").resolve()
    (docs / "hr").mkdir(parents=True)
    (docs / "it").mkdir()
    a, b = str(docs / "hr" / "leave.pdf"), str(docs / "it" / "vpn.md")
    other = str(tmp_path / "docs-old" / "leave.pdf")
    audit.append(make_entry(passages=(make_passage(1, DOC_A, a, cited=True),)))
    audit.append(make_entry(passages=(make_passage(1, DOC_B, b), make_passage(2, DOC_A, a))))
    audit.append(make_entry(passages=(make_passage(1, "e" * 64, other, cited=True),)))
    audit.append(make_entry(outcome="nothing-found", answer=None))

    def seqs(document: str, **options: Any) -> list[int]:
        return [r.seq for r in audit.query(document=document, **options)]

    assert seqs(DOC_A) == [1, 2]
    assert seqs(DOC_A.upper()) == [1, 2]
    assert seqs(DOC_A, cited_only=True) == [1]
    assert seqs(DOC_B) == [2]
    assert seqs(a) == [1, 2]
    assert seqs(str(docs)) == [1, 2]
    assert seqs(str(docs / "it")) == [2]
    assert seqs(str(docs) + "/") == [1, 2]
    monkeypatch.chdir(docs)
    assert seqs("hr/leave.pdf") == [1, 2]
    assert seqs("../docs/it/../hr") == [1, 2]
    assert seqs(str(docs / "none")) == []


# Verification


def test_verify_a_clean_chain(audit: AuditLog) -> None:
    assert audit.verify().message == "0 records verified"
    assert audit.verify(GENESIS_HASH).ok
    records = fill(audit, 3)
    result = audit.verify()
    assert (result.ok, result.count, result.keyed) == (True, 3, 0)
    assert result.message == (
        "3 records verified, unkeyed (plain SHA-256: whoever can write the file can rewrite "
        "them); no audit key configured"
    )
    assert audit.verify(records[1].hash.upper()).ok
    with pytest.raises(AuditError, match="not a chain hash"):
        audit.verify("abc")


def test_verify_catches_an_altered_body(audit: AuditLog, log_path: Path) -> None:
    records = fill(audit, 4)
    body = json.loads(_body(log_path, 2))
    body["answer"] = "Fifty days."
    raw(log_path, "UPDATE records SET body = ? WHERE seq = 2", params=(json.dumps(body),))
    result = audit.verify()
    assert not result.ok
    assert (result.count, result.seq) == (1, 2)
    assert result.message == (
        f"record 2 (id {records[1].id}) was altered: its hash does not match its content"
    )


def test_verify_catches_an_altered_body_with_its_hash_recomputed(
    audit: AuditLog, log_path: Path
) -> None:
    fill(audit, 4)
    body = json.loads(_body(log_path, 2))
    body["user"] = "mallory"
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    raw(
        log_path,
        "UPDATE records SET body = ?, hash = ?, user_name = 'mallory' WHERE seq = 2",
        params=(text, body_hash(text)),
    )
    result = audit.verify()
    assert (result.ok, result.seq) == (False, 2)
    assert "record 2" in result.message and "was altered" in result.message


def test_verify_catches_unreadable_content(audit: AuditLog, log_path: Path) -> None:
    fill(audit, 2)
    raw(log_path, "UPDATE records SET body = 'not json' WHERE seq = 1")
    result = audit.verify()
    assert (result.ok, result.seq) == (False, 1)
    assert "cannot be read" in result.message


@pytest.mark.parametrize(
    ("statement", "column"),
    [
        ("UPDATE records SET user_name = 'bob' WHERE seq = 3", "user"),
        ("UPDATE records SET created_at = '2020-01-01' WHERE seq = 3", "created_at"),
        ("UPDATE records SET outcome = 'refused' WHERE seq = 3", "outcome"),
        ("UPDATE records SET id = 'forged' WHERE seq = 3", "id"),
    ],
)
def test_verify_catches_an_altered_indexed_column(
    audit: AuditLog, log_path: Path, statement: str, column: str
) -> None:
    fill(audit, 4)
    raw(log_path, statement)
    result = audit.verify()
    assert (result.ok, result.count, result.seq) == (False, 2, 3)
    assert "was altered" in result.message and f"stored {column}" in result.message


def test_verify_catches_altered_document_rows(audit: AuditLog, log_path: Path) -> None:
    fill(audit, 3)
    raw(log_path, f"UPDATE record_documents SET doc_id = '{DOC_B}' WHERE seq = 2")
    result = audit.verify()
    assert (result.ok, result.seq) == (False, 2)
    assert "documents indexed for it" in result.message
    assert audit.query(document=DOC_A)[0].seq == 1


def test_verify_catches_a_deleted_record(audit: AuditLog, log_path: Path) -> None:
    records = fill(audit, 5)
    raw(
        log_path,
        "DELETE FROM records WHERE seq = 3",
        "DELETE FROM record_documents WHERE seq = 3",
    )
    result = audit.verify()
    assert (result.ok, result.count, result.seq) == (False, 2, 4)
    assert result.message.startswith("record 3 was deleted: ")
    assert records[3].id in result.message and "chain broken" in result.message


def test_verify_catches_deleted_first_records(audit: AuditLog, log_path: Path) -> None:
    fill(audit, 4)
    raw(log_path, "DELETE FROM records WHERE seq <= 2", "DELETE FROM record_documents")
    result = audit.verify()
    assert (result.ok, result.seq) == (False, 3)
    assert result.message.startswith("records 1 to 2 were deleted")


def _body(path: Path, seq: int) -> str:
    db = sqlite3.connect(path)
    try:
        return str(db.execute("SELECT body FROM records WHERE seq = ?", (seq,)).fetchone()[0])
    finally:
        db.close()


def _shift_from(seq: int) -> list[str]:
    """Statements that move records `seq`.. one place up, making room for a forgery."""
    tables = ("records", "record_documents")
    return [f"UPDATE {t} SET seq = seq + 1000 WHERE seq >= {seq}" for t in tables] + [
        f"UPDATE {t} SET seq = seq - 999 WHERE seq >= 1000" for t in tables
    ]


def _insert_forged(path: Path, seq: int, prev_hash: str) -> str:
    record_id = str(uuid.uuid4())
    created_at = "2026-01-01T00:00:00.000000Z"
    body = build_body(seq, record_id, created_at, prev_hash, make_entry(user="mallory"))
    row = (prev_hash, body_hash(body), body)
    raw(
        path,
        *_shift_from(seq),
        "INSERT INTO records (seq, id, created_at, user_name, channel, outcome, prev_hash, "
        "hash, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        params=(seq, record_id, created_at, "mallory", "cli", "answered", *row),
    )
    return record_id


def test_verify_catches_an_inserted_record_that_links_in(audit: AuditLog, log_path: Path) -> None:
    records = fill(audit, 4)
    forged = _insert_forged(log_path, 3, records[1].hash)
    result = audit.verify()
    assert (result.ok, result.seq) == (False, 3)
    assert result.message.startswith(f"record 3 (id {forged}) was inserted")


def test_verify_catches_an_inserted_record_with_a_made_up_link(
    audit: AuditLog, log_path: Path
) -> None:
    fill(audit, 4)
    forged = _insert_forged(log_path, 2, "f" * 64)
    result = audit.verify()
    assert (result.ok, result.count, result.seq) == (False, 1, 2)
    assert result.message.startswith(f"record 2 (id {forged}) was inserted")


def test_verify_catches_two_swapped_records(audit: AuditLog, log_path: Path) -> None:
    records = fill(audit, 5)
    columns = "id, created_at, user_name, channel, outcome, prev_hash, hash, body, hash_scheme"
    raw(
        log_path,
        "CREATE TABLE swap AS SELECT * FROM records WHERE seq IN (2, 3)",
        "DELETE FROM records WHERE seq IN (2, 3)",
        f"INSERT INTO records SELECT 5 - seq, {columns} FROM swap",
    )
    result = audit.verify()
    assert (result.ok, result.count, result.seq) == (False, 1, 2)
    assert result.message.startswith(f"record 2 (id {records[2].id}) was reordered")


def test_verify_catches_swapped_sequence_numbers(audit: AuditLog, log_path: Path) -> None:
    fill(audit, 4)
    raw(
        log_path,
        "UPDATE records SET seq = 100 WHERE seq = 3",
        "UPDATE records SET seq = 3 WHERE seq = 4",
        "UPDATE records SET seq = 4 WHERE seq = 100",
    )
    result = audit.verify()
    assert (result.ok, result.seq) == (False, 3)
    assert "was reordered" in result.message


def test_verify_catches_a_truncated_tail(audit: AuditLog, log_path: Path) -> None:
    records = fill(audit, 5)
    kept_head = records[-1].hash
    raw(
        log_path,
        "DELETE FROM records WHERE seq >= 4",
        "DELETE FROM record_documents WHERE seq >= 4",
    )
    assert audit.verify().ok, "a clean cut is only visible against a head kept elsewhere"
    result = audit.verify(kept_head)
    assert (result.ok, result.count) == (False, 3)
    assert result.message == (
        f"the log was truncated or rewritten: head {kept_head} not found "
        f"(the log ends at record 3 (id {records[2].id}))"
    )
    assert audit.verify(records[2].hash).ok


def test_verify_catches_a_truncated_tail_from_leftover_document_rows(
    audit: AuditLog, log_path: Path
) -> None:
    fill(audit, 3)
    raw(log_path, "DELETE FROM records WHERE seq = 3")
    result = audit.verify()
    assert (result.ok, result.seq) == (False, 3)
    assert result.message.startswith("record 3 was deleted")


def test_verify_catches_an_emptied_log(audit: AuditLog, log_path: Path) -> None:
    records = fill(audit, 2)
    raw(log_path, "DELETE FROM records", "DELETE FROM record_documents")
    result = audit.verify(records[-1].hash)
    assert not result.ok
    assert "truncated" in result.message and "the log is empty" in result.message


# Schema, guards and failures


def test_migrations_run_once_and_reopening_keeps_the_records(log_path: Path) -> None:
    with AuditLog(log_path) as first:
        records = fill(first, 2)
    with AuditLog(log_path) as again:
        assert again.head() == (2, records[-1].hash)
        assert again.append(make_entry()).prev_hash == records[-1].hash
        assert again.verify().ok
    db = sqlite3.connect(log_path)
    try:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        db.close()


def test_an_older_log_gets_the_feedback_indexes_when_opened(log_path: Path) -> None:
    """Feedback and reviews are found by index, not by reading every record."""
    with AuditLog(log_path) as log:
        answered = fill(log, 2)[0]
        log.append(make_entry(outcome="feedback", retrieval={"record_id": answered.id}))
    version = SCHEMA_VERSION - 1  # before the indexes
    raw(log_path, "DROP INDEX records_outcome", "DROP INDEX records_about")
    raw(log_path, f"PRAGMA user_version = {version}")
    with AuditLog(log_path) as log:
        [found] = log.by_outcome(("feedback", "review"), about=answered.id)
        assert found.entry.outcome == "feedback"
        assert log.by_outcome(("feedback",), about="another") == []
    db = sqlite3.connect(log_path)
    try:
        names = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        assert {"records_outcome", "records_about"} <= names
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        for sql in (
            "SELECT seq FROM records WHERE outcome IN ('feedback', 'review') ORDER BY seq",
            f"SELECT seq FROM records WHERE outcome IN ('review') AND {ABOUT} = 'x'",
        ):
            plan = " ".join(str(row[-1]) for row in db.execute(f"EXPLAIN QUERY PLAN {sql}"))
            assert plan.startswith("SEARCH records USING") and "INDEX records_" in plan, plan
    finally:
        db.close()


def test_a_log_from_a_newer_appliance_is_refused(log_path: Path) -> None:
    AuditLog(log_path).close()
    raw(log_path, f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(AuditError, match="newer"):
        AuditLog(log_path)


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE records SET user_name = 'bob'",
        "DELETE FROM records WHERE seq = 1",
        "UPDATE record_documents SET cited = 0",
        "DELETE FROM record_documents",
    ],
)
def test_updates_and_deletes_are_refused(audit: AuditLog, log_path: Path, statement: str) -> None:
    fill(audit, 2)
    db = sqlite3.connect(log_path)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute(statement)
    finally:
        db.close()
    assert audit.verify().ok


def test_a_damaged_file_is_a_clear_error(log_path: Path) -> None:
    log_path.parent.mkdir(parents=True)
    log_path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(AuditError, match="cannot open the audit log"):
        AuditLog(log_path)


def test_a_data_dir_that_is_a_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("not a folder")
    with pytest.raises(AuditError, match="cannot open the audit log"):
        AuditLog(tmp_path / "data" / "audit.sqlite3")


def test_read_only_opening_never_writes(log_path: Path) -> None:
    with pytest.raises(AuditError):
        AuditLog(log_path, read_only=True)
    assert not log_path.parent.exists()
    with AuditLog(log_path) as log:
        fill(log, 2)
    with AuditLog(log_path, read_only=True) as reader:
        assert reader.verify().ok and reader.head() is not None
        with pytest.raises(AuditError, match="read-only"):
            reader.append(make_entry())
        with pytest.raises(AuditError, match="read-only"):
            reader.check_writable()


def test_paths_with_uri_characters_open_read_only(tmp_path: Path) -> None:
    path = tmp_path / "odd ?#% näme" / "audit.sqlite3"
    with AuditLog(path) as log:
        fill(log, 1)
    with AuditLog(path, read_only=True) as reader:
        assert reader.verify().count == 1


def test_append_fails_closed_while_another_writer_holds_the_lock(log_path: Path) -> None:
    log = AuditLog(log_path, busy_timeout_s=0.1)
    fill(log, 1)
    other = sqlite3.connect(log_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(AuditError, match="no answer may be returned") as caught:
            log.append(make_entry())
        assert not isinstance(caught.value, sqlite3.Error)
        assert isinstance(caught.value.__cause__, sqlite3.OperationalError)  # for the operator
        with pytest.raises(AuditError):
            log.check_writable()
    finally:
        other.execute("ROLLBACK")
        other.close()
    log.check_writable()
    assert log.append(make_entry()).seq == 2
    assert log.verify().ok
    log.close()


def test_append_on_a_closed_log_fails_closed(audit: AuditLog) -> None:
    audit.close()
    with pytest.raises(AuditError):
        audit.append(make_entry())


def test_check_writable_refuses_a_full_disk(
    audit: AuditLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr("appliance.audit.log.shutil.disk_usage", lambda _: usage(10, 10, 0))
    with pytest.raises(AuditError, match="full"):
        audit.check_writable()


@pytest.mark.parametrize("where", ["/proc/audit.sqlite3", "/proc/appliance/audit.sqlite3"])
def test_opening_on_a_read_only_file_system_fails_closed(where: str) -> None:
    """/proc refuses new files even to root, unlike a chmod-ed folder."""
    with pytest.raises(AuditError, match="cannot open the audit log"):
        AuditLog(Path(where))


def test_concurrent_appends_keep_the_chain_linear(log_path: Path) -> None:
    shared = AuditLog(log_path)
    separate = [AuditLog(log_path) for _ in range(2)]
    logs = [shared, shared, *separate]
    errors: list[BaseException] = []

    def work(log: AuditLog, worker: int) -> None:
        try:
            for i in range(20):
                log.append(make_entry(user=f"worker{worker}", question=f"q{i}"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(log, n)) for n, log in enumerate(logs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    result = shared.verify()
    assert (result.ok, result.count) == (True, 80)
    assert [r.seq for r in shared.query()] == list(range(1, 81))
    assert all(len(shared.query(user=f"worker{n}")) == 20 for n in range(4))
    for log in [shared, *separate]:
        log.close()


# The audit key (HMAC-SHA256) and the guard triggers


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    """Outside the data directory, as IT mounts it."""
    return tmp_path / "config" / "appliance" / "audit.key"


@pytest.fixture
def keyed(log_path: Path, key_file: Path) -> Iterator[AuditLog]:
    log = AuditLog(log_path, key_file=key_file)
    yield log
    log.close()


def _execute(path: Path, *statements: str) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    try:
        for statement in statements:
            db.execute(statement)
    finally:
        db.close()


def _rewrite_without_the_key(path: Path, first: int, *, claim_plain: bool) -> None:
    """What someone who can write the file but not read the key can do: change record
    `first`, then recompute plain SHA-256 hashes and links from there to the end."""
    db = sqlite3.connect(path)
    try:
        rows = db.execute("SELECT seq, body FROM records WHERE seq >= ? ORDER BY seq", (first,))
        bodies = [(int(seq), json.loads(body)) for seq, body in rows.fetchall()]
        prev_hash = db.execute("SELECT hash FROM records WHERE seq = ?", (first - 1,)).fetchone()
    finally:
        db.close()
    previous = str(prev_hash[0]) if prev_hash else GENESIS_HASH
    statements, params = [], []
    for seq, body in bodies:
        if seq == first:
            body["answer"] = "Fifty days."
        body["prev_hash"] = previous
        text = canonical_json(body)
        previous = hashlib.sha256(text.encode("utf-8")).hexdigest()
        scheme = ", hash_scheme = 'sha256'" if claim_plain else ""
        statements.append(
            f"UPDATE records SET body = ?, hash = ?, prev_hash = ?{scheme} WHERE seq = {seq}"
        )
        params.append((text, previous, body["prev_hash"]))
    for statement, values in zip(statements, params, strict=True):
        raw(path, statement, params=values)


@pytest.mark.parametrize("claim_plain", [False, True], ids=["keyed-label", "plain-label"])
def test_a_keyed_chain_catches_an_edit_with_the_hashes_recomputed(
    keyed: AuditLog, log_path: Path, claim_plain: bool
) -> None:
    records = fill(keyed, 6)
    assert keyed.verify().keyed == 6
    _rewrite_without_the_key(log_path, 3, claim_plain=claim_plain)
    result = keyed.verify()
    assert (result.ok, result.count, result.seq) == (False, 2, 3)
    assert result.message.startswith(f"record 3 (id {records[2].id}) was altered: ")
    expected = "a downgrade" if claim_plain else "its hash does not match its content"
    assert expected in result.message


def test_a_whole_keyed_chain_rewritten_as_plain_is_caught_and_refused(
    keyed: AuditLog, log_path: Path, key_file: Path
) -> None:
    """Marking every record plain (the column is outside the hash) does not make them so:
    the key file, not the data directory, says which records predate the key."""
    fill(keyed, 4)
    _rewrite_without_the_key(log_path, 1, claim_plain=True)
    result = keyed.verify()
    assert (result.ok, result.seq) == (False, 1)
    assert "accepts no record as written before the key" in result.message
    with pytest.raises(AuditError, match="rewritten without the key"):
        AuditLog(log_path, key_file=key_file)


def test_a_key_created_for_an_older_log_accepts_its_records_and_no_more(
    log_path: Path, key_file: Path
) -> None:
    with AuditLog(log_path) as old:
        fill(old, 3)
    with AuditLog(log_path, key_file=key_file) as upgraded:
        assert key_file.read_text().splitlines()[1] == "plain-until: 3"
        fill(upgraded, 2)
        assert upgraded.verify().ok and upgraded.verify().keyed == 2


def test_a_key_provided_by_it_for_an_older_log_needs_the_plain_until_line(
    log_path: Path, key_file: Path
) -> None:
    with AuditLog(log_path) as old:
        fill(old, 3)
    key_file.parent.mkdir(parents=True)
    key_file.write_text("ab" * 32 + "\n")
    with pytest.raises(AuditError, match="add the line `plain-until: 3`"):
        AuditLog(log_path, key_file=key_file)
    with AuditLog(log_path, read_only=True, key_file=key_file) as reader:
        assert not reader.verify().ok
    key_file.write_text("ab" * 32 + "\nplain-until: 3\n")
    with AuditLog(log_path, key_file=key_file) as accepted:
        fill(accepted, 1)
        assert accepted.verify().ok


def test_without_the_key_the_same_rewrite_goes_unnoticed(audit: AuditLog, log_path: Path) -> None:
    """What the key adds: an unkeyed chain only resists edits that leave the hashes alone."""
    records = fill(audit, 6)
    _rewrite_without_the_key(log_path, 3, claim_plain=True)
    assert audit.verify().ok
    assert not audit.verify(records[-1].hash).ok, "only a head kept elsewhere catches it"


def test_verify_reports_dropped_changed_and_foreign_triggers(
    keyed: AuditLog, log_path: Path, key_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fill(keyed, 2)
    _execute(log_path, "DROP TRIGGER records_no_update")
    result = keyed.verify()
    assert (result.ok, result.count, result.seq) == (False, 2, None)
    assert "records_no_update" in result.message and "missing" in result.message
    assert "records_no_delete" not in result.message
    _execute(
        log_path,
        "DROP TRIGGER records_no_delete",
        "CREATE TRIGGER records_no_delete BEFORE DELETE ON records BEGIN SELECT 1; END",
        "CREATE TRIGGER sneaky AFTER INSERT ON records BEGIN SELECT 1; END",
    )
    message = keyed.verify().message
    assert "records_no_delete" in message and "records_no_update" in message
    assert "sneaky" in message
    with AuditLog(log_path, read_only=True, key_file=key_file) as reader:
        assert not reader.verify().ok, "a read-only open changes nothing"
    caplog.set_level(logging.WARNING)
    with AuditLog(log_path, key_file=key_file) as reopened:
        assert "audit_guards_restored" in caplog.text and "sneaky" in caplog.text
        assert reopened.verify().ok
        # The restore is in the chain too: a restart does not erase the evidence.
        last = reopened.query()[-1]
        assert (last.entry.user, last.entry.channel) == ("appliance", "system")
        assert "records_no_delete" in (last.entry.error or "")
    with AuditLog(log_path, key_file=key_file) as again:
        assert again.count() == 3  # nothing to restore, nothing recorded
    db = sqlite3.connect(log_path)
    try:
        for statement in ("UPDATE records SET user_name = 'x'", "DELETE FROM records"):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                db.execute(statement)
    finally:
        db.close()


def test_a_chain_problem_also_names_dropped_guards(keyed: AuditLog, log_path: Path) -> None:
    fill(keyed, 3)
    raw(log_path, "DELETE FROM records WHERE seq = 2", put_guards_back=False)
    result = keyed.verify()
    assert (result.ok, result.seq) == (False, 3)
    assert result.message.startswith("record 2 was deleted")
    assert "also" in result.message and "records_no_delete" in result.message


def test_a_log_opened_with_another_key_fails(
    keyed: AuditLog, log_path: Path, key_file: Path, tmp_path: Path
) -> None:
    records = fill(keyed, 2)
    other = tmp_path / "other.key"
    other.write_text("f" * 64 + "\n")
    with AuditLog(log_path, read_only=True, key_file=other) as reader:
        result = reader.verify()
    assert (result.ok, result.count, result.seq) == (False, 0, 1)
    assert result.message.startswith(f"record 1 (id {records[0].id}) was keyed with another")
    with pytest.raises(AuditError, match="not the key the audit log"):
        AuditLog(log_path, key_file=other)
    with AuditLog(log_path, read_only=True, key_file=tmp_path / "missing.key") as reader:
        result = reader.verify()
    assert (result.ok, result.seq) == (False, 1)
    assert "cannot be checked" in result.message and "missing.key" in result.message
    with AuditLog(log_path) as unkeyed, pytest.raises(AuditError, match="is keyed"):
        unkeyed.append(make_entry())
    assert keyed.verify().ok and keyed.count() == 2


def test_a_keyed_log_whose_key_file_is_gone_is_refused_not_rekeyed(
    keyed: AuditLog, log_path: Path, key_file: Path
) -> None:
    fill(keyed, 1)
    keyed.close()
    key_file.unlink()
    with pytest.raises(AuditError, match=r"key file .* is missing: restore"):
        AuditLog(log_path, key_file=key_file)
    assert not key_file.exists()


def _version_1_log(path: Path, count: int) -> list[str]:
    """A log as appliances before the key wrote it: schema 1, plain SHA-256 hashes."""
    path.parent.mkdir(parents=True)
    db = sqlite3.connect(path, isolation_level=None)
    hashes, prev_hash = [], GENESIS_HASH
    try:
        for statement in MIGRATIONS[0]:
            db.execute(statement)
        db.execute("PRAGMA user_version = 1")
        for seq in range(1, count + 1):
            record_id, created_at = str(uuid.uuid4()), f"2025-01-0{seq}T00:00:00.000000Z"
            body = build_body(seq, record_id, created_at, prev_hash, make_entry())
            record_hash = hashlib.sha256(body.encode("utf-8")).hexdigest()
            db.execute(
                "INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    seq,
                    record_id,
                    created_at,
                    "alice",
                    "cli",
                    "answered",
                    prev_hash,
                    record_hash,
                    body,
                ),
            )
            hashes.append(record_hash)
            prev_hash = record_hash
    finally:
        db.close()
    return hashes


def test_an_old_unkeyed_log_still_verifies_and_goes_on_keyed(
    log_path: Path, key_file: Path
) -> None:
    old = _version_1_log(log_path, 3)
    with AuditLog(log_path, key_file=key_file) as log:
        result = log.verify(old[-1])
        assert (result.ok, result.count, result.keyed) == (True, 3, 0)
        assert "unkeyed" in result.message and str(key_file) in result.message
        new = [log.append(make_entry()) for _ in range(2)]
        assert new[0].prev_hash == old[-1]
        result = log.verify()
        assert (result.ok, result.count, result.keyed) == (True, 5, 2)
        assert "records 1 to 3 unkeyed" in result.message
        assert "records 4 to 5 keyed with HMAC-SHA256" in result.message
    _rewrite_without_the_key(log_path, 5, claim_plain=True)
    with AuditLog(log_path, read_only=True, key_file=key_file) as reader:
        result = reader.verify()
    assert (result.ok, result.seq) == (False, 5)
    assert "a downgrade" in result.message


def test_the_key_file_is_created_private_and_never_logged(
    log_path: Path, key_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with AuditLog(log_path, key_file=key_file) as log:
        fill(log, 1)
        assert log.key is not None
        secret = key_file.read_text().strip()
        assert len(secret) == 64
        assert secret not in repr(log.key) and log.key.id not in secret
        result = log.verify()
        assert result.keyed == 1 and str(key_file) in result.message
        assert secret not in result.message
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert key_file.parent.stat().st_mode & 0o777 == 0o700
    assert "audit_key_created" in caplog.text and secret not in caplog.text
    with AuditLog(log_path, key_file=key_file) as again:
        assert again.verify().keyed == 1 and key_file.read_text().strip() == secret


def test_a_key_file_in_the_data_directory_or_too_short_is_refused(
    log_path: Path, tmp_path: Path
) -> None:
    with pytest.raises(AuditError, match="inside the data directory"):
        AuditLog(log_path, key_file=log_path.parent / "audit.key")
    short = tmp_path / "short.key"
    short.write_text("secret\n")
    with pytest.raises(AuditError, match="fewer than 32"):
        AuditLog(log_path, key_file=short)
    with pytest.raises(AuditError, match="cannot read the audit key file"):
        AuditLog(log_path, key_file=tmp_path)


def test_the_key_file_setting_defaults_outside_the_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    settings = Settings(data_dir=tmp_path / "data")
    assert settings.resolved_audit_key_file == tmp_path / "xdg" / "appliance" / "audit.key"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    default = Path.home() / ".config" / "appliance" / "audit.key"
    assert Settings().resolved_audit_key_file == default
    monkeypatch.setenv("APPLIANCE_AUDIT_KEY_FILE", "/run/secrets/audit_key")
    assert Settings().resolved_audit_key_file == Path("/run/secrets/audit_key")
