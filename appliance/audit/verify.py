"""Checking the audit chain, and naming the first record that was altered, deleted, inserted
or reordered (or the truncation, when a head hash kept elsewhere is no longer in the log).

Records are named by the sequence number they are stored under; the content of each record
(its body) is what its hash covers, so the stored columns are checked against it. A keyed
record's hash is checked with the audit key; a plain SHA-256 record after a keyed one is a
downgrade (someone without the key rewrote the chain from there). The append-only guard
triggers are checked too.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from appliance.audit.guards import describe_guard_problems, guard_problems
from appliance.audit.keys import PLAIN_SCHEME, AuditKey, scheme_key_id
from appliance.audit.records import (
    GENESIS_HASH,
    AuditRecord,
    body_hash,
    canonical_json,
    document_rows,
    record_from_body,
)

ROWS_SQL = (
    "SELECT seq, id, created_at, user_name, channel, outcome, prev_hash, hash, body, "
    "hash_scheme FROM records ORDER BY seq"
)


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    count: int
    message: str
    seq: int | None = None
    keyed: int = 0  # records hashed with the audit key (the others: plain SHA-256)


@dataclass(frozen=True)
class _Row:
    seq: int
    id: str
    created_at: str
    user: str
    channel: str
    outcome: str
    prev_hash: str
    hash: str
    body: str
    hash_scheme: str

    @property
    def name(self) -> str:
        return f"record {self.seq} (id {self.id})"


_Previous = tuple[_Row, AuditRecord] | None


class _Problem(Exception):
    def __init__(self, message: str, seq: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.seq = seq


def verify_chain(
    db: sqlite3.Connection,
    expected_head: str | None,
    key: AuditKey | None = None,
    key_file: Path | None = None,
) -> VerifyResult:
    """Walk the whole log in one read snapshot; the first problem found is reported.

    `key` checks keyed records; `key_file` is where it was looked for (named in messages).
    """
    db.execute("BEGIN")
    try:
        return _verify(db, expected_head, _Keys(key, key_file))
    finally:
        db.execute("COMMIT")


@dataclass(frozen=True)
class _Keys:
    key: AuditKey | None
    key_file: Path | None

    def describe(self) -> str:
        if self.key is not None:
            return f"key file {self.key.path}, key id {self.key.id}"
        if self.key_file is not None:
            return f"no key file at {self.key_file}"
        return "no audit key configured"


def _verify(db: sqlite3.Connection, expected_head: str | None, keys: _Keys) -> VerifyResult:
    count = keyed = 0
    previous: _Previous = None
    guards = describe_guard_problems(*guard_problems(db))
    try:
        for values in db.execute(ROWS_SQL):
            row = _Row(*values)
            previous = (row, _check_row(db, row, previous, count + 1, keys))
            count += 1
            keyed += row.hash_scheme != PLAIN_SCHEME
        _check_orphan_documents(db)
        _check_head(db, expected_head, previous[0] if previous else None)
    except _Problem as problem:
        also = f"; also, {guards}" if guards else ""
        return VerifyResult(False, count, problem.message + also, problem.seq, keyed)
    if guards:
        return VerifyResult(False, count, guards[0].upper() + guards[1:], None, keyed)
    message = f"{count} records verified" + _scheme_summary(count, keyed, keys)
    if expected_head is not None:
        message += f"; head {expected_head} is in the chain"
    return VerifyResult(True, count, message, None, keyed)


def _scheme_summary(count: int, keyed: int, keys: _Keys) -> str:
    """Which records the key protects (keyed records always follow the unkeyed ones)."""
    if count == 0:
        return ""
    if keyed == count:
        return f", keyed with HMAC-SHA256 ({keys.describe()})"
    unkeyed = "unkeyed (plain SHA-256: whoever can write the file can rewrite them)"
    if keyed == 0:
        return f", {unkeyed}; {keys.describe()}"
    first = count - keyed + 1
    return (
        f": records 1 to {first - 1} {unkeyed}, records {first} to {count} keyed with "
        f"HMAC-SHA256 ({keys.describe()})"
    )


def _check_row(
    db: sqlite3.Connection, row: _Row, previous: _Previous, position: int, keys: _Keys
) -> AuditRecord:
    record = _check_content(row, previous, keys)
    if record.prev_hash != (previous[0].hash if previous else GENESIS_HASH):
        raise _link_problem(db, row, record, previous)
    _check_columns(row, record)
    if record.seq != position:
        raise _Problem(
            f"{row.name} is out of sequence: it says it is record {record.seq}, expected "
            f"{position} (records were inserted or deleted and the chain rewritten)",
            row.seq,
        )
    _check_documents(db, row, record)
    return record


def _check_content(row: _Row, previous: _Previous, keys: _Keys) -> AuditRecord:
    try:
        record = record_from_body(row.body, row.hash)
        canonical = canonical_json(json.loads(row.body))
    except (ValueError, KeyError, TypeError):
        raise _Problem(f"{row.name} was altered: its content cannot be read", row.seq) from None
    if body_hash(canonical, _secret(row, previous, keys)) != row.hash:
        raise _Problem(f"{row.name} was altered: its hash does not match its content", row.seq)
    return record


def _secret(row: _Row, previous: _Previous, keys: _Keys) -> bytes | None:
    """The key `row`'s hash is checked with (None: plain SHA-256), or the problem why not."""
    if row.hash_scheme == PLAIN_SCHEME:
        if keys.key is not None and row.seq > keys.key.plain_until:
            accepted = keys.key.plain_until
            raise _Problem(
                f"{row.name} was altered: it is hashed without the audit key, but the key "
                f"file {keys.key.path} accepts "
                f"{f'only records 1 to {accepted}' if accepted else 'no record'} as written "
                "before the key (a downgrade: the chain was rewritten without the key)",
                row.seq,
            )
        if previous is not None and previous[0].hash_scheme != PLAIN_SCHEME:
            raise _Problem(
                f"{row.name} was altered: it is hashed without the audit key after keyed "
                "records (a downgrade: the chain was rewritten from here without the key)",
                row.seq,
            )
        return None
    key_id = scheme_key_id(row.hash_scheme)
    if key_id is None:
        raise _Problem(f"{row.name} was altered: unknown hash scheme {row.hash_scheme!r}", row.seq)
    if keys.key is None:
        raise _Problem(
            f"{row.name} is keyed (HMAC-SHA256, key id {key_id}) and cannot be checked: "
            f"{keys.describe()} (set APPLIANCE_AUDIT_KEY_FILE to the log's key file)",
            row.seq,
        )
    if key_id != keys.key.id:
        raise _Problem(
            f"{row.name} was keyed with another audit key (key id {key_id}, not the "
            f"{keys.describe()}): use the key file this log was written with, or the record "
            "was altered",
            row.seq,
        )
    return keys.key.secret


def _check_columns(row: _Row, record: AuditRecord) -> None:
    pairs = (
        ("seq", row.seq, record.seq),
        ("id", row.id, record.id),
        ("created_at", row.created_at, record.created_at),
        ("user", row.user, record.entry.user),
        ("channel", row.channel, record.entry.channel),
        ("outcome", row.outcome, record.entry.outcome),
        ("prev_hash", row.prev_hash, record.prev_hash),
    )
    for column, stored, content in pairs:
        if stored != content:
            raise _Problem(
                f"{row.name} was altered: its stored {column} {stored!r} does not match "
                f"its content {content!r}",
                row.seq,
            )


def _check_documents(db: sqlite3.Connection, row: _Row, record: AuditRecord) -> None:
    stored = {
        (str(doc_id), str(source), int(cited))
        for doc_id, source, cited in db.execute(
            "SELECT doc_id, source, cited FROM record_documents WHERE seq = ?", (row.seq,)
        )
    }
    if stored != document_rows(record):
        raise _Problem(
            f"{row.name} was altered: the documents indexed for it do not match its content",
            row.seq,
        )


def _check_orphan_documents(db: sqlite3.Connection) -> None:
    orphan = db.execute(
        "SELECT min(seq) FROM record_documents WHERE seq NOT IN (SELECT seq FROM records)"
    ).fetchone()[0]
    if orphan is not None:
        raise _Problem(
            f"record {orphan} was deleted: the document index still names it "
            "(the log was truncated or rewritten)",
            int(orphan),
        )


def _check_head(db: sqlite3.Connection, expected_head: str | None, last: _Row | None) -> None:
    if expected_head is None or expected_head == GENESIS_HASH:
        return
    if db.execute("SELECT 1 FROM records WHERE hash = ?", (expected_head,)).fetchone():
        return
    end = f"the log ends at {last.name}" if last else "the log is empty"
    raise _Problem(
        f"the log was truncated or rewritten: head {expected_head} not found ({end})", None
    )


def _find(db: sqlite3.Connection, sql: str, *params: object) -> tuple[int, str] | None:
    found = db.execute(sql, params).fetchone()
    return (int(found[0]), str(found[1])) if found else None


def _link_problem(
    db: sqlite3.Connection, row: _Row, record: AuditRecord, previous: _Previous
) -> _Problem:
    """Why `record` does not link to the record stored before it."""
    before = previous[0].seq if previous else 0
    linked = (
        (0, "")
        if record.prev_hash == GENESIS_HASH
        else _find(db, "SELECT seq, id FROM records WHERE hash = ?", record.prev_hash)
    )
    if linked is not None and linked[0] < before:
        first = _find(db, "SELECT seq, id FROM records WHERE seq > ? ORDER BY seq", linked[0])
        assert first is not None
        target = f"record {linked[0]}" if linked[0] else "the start of the log"
        return _Problem(
            f"record {first[0]} (id {first[1]}) was inserted: it is not part of the chain "
            f"({row.name} links to {target}, stored before it)",
            first[0],
        )
    if linked is not None and linked[0] > row.seq:
        return _Problem(
            f"{row.name} was reordered: it links to record {linked[0]} (id {linked[1]}), "
            "which is stored after it",
            row.seq,
        )
    return _unlinked_problem(db, row, record, previous)


def _unlinked_problem(
    db: sqlite3.Connection, row: _Row, record: AuditRecord, previous: _Previous
) -> _Problem:
    """`record` links to a hash that is not in the log."""
    expected = previous[0].hash if previous else GENESIS_HASH
    later = _find(
        db,
        "SELECT seq, id FROM records WHERE prev_hash = ? AND seq > ? ORDER BY seq",
        expected,
        row.seq,
    )
    if later is not None:
        return _Problem(
            f"{row.name} was inserted: it is not part of the chain (record {later[0]} "
            f"(id {later[1]}) links to the record stored before it)",
            row.seq,
        )
    before_seq = previous[1].seq if previous else 0
    if previous is not None and before_seq == record.seq - 1:
        return _Problem(
            f"{previous[0].name} was altered: its hash was recomputed, so {row.name}, "
            "the record after it, no longer links to it",
            previous[0].seq,
        )
    gap = record.seq - before_seq
    missing = (
        f"record {before_seq + 1} was"
        if gap == 2
        else f"records {before_seq + 1} to {record.seq - 1} were"
        if gap > 2
        else "a record before it was"
    )
    return _Problem(
        f"{missing} deleted: {row.name} links to a record that is not in the log (chain broken)",
        row.seq,
    )
