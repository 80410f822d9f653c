"""The audit log: an append-only, hash-chained SQLite file in the data directory.

Each record stores its canonical body, the hash of that body and the previous record's hash,
so changing, removing, adding or moving a record breaks the chain and `verify` names it.
UPDATE and DELETE are refused by triggers; a side table of the documents each answer used
(written in the same transaction) serves "which answers used this document".

A record is written in one BEGIN IMMEDIATE transaction, so threads (one lock) and processes
(SQLite's write lock, waited on with a busy timeout) append one after the other. Anything that
stops a record being written is an AuditError: the caller must then return no answer.
"""

from __future__ import annotations

import logging
import re
import shutil
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from appliance.audit.guards import GUARD_TRIGGERS, restore_guards
from appliance.audit.keys import PLAIN_SCHEME, AuditKey, open_key, scheme_key_id
from appliance.audit.records import (
    GENESIS_HASH,
    AuditEntry,
    AuditRecord,
    build_body,
    document_rows,
    record_from_body,
)
from appliance.audit.records import body_hash as compute_hash
from appliance.audit.verify import VerifyResult, verify_chain
from appliance.errors import AuditError
from appliance.sqlite_schema import check_not_newer, migrate, write_transaction

log = logging.getLogger(__name__)

__all__ = ["GENESIS_HASH", "AuditLog", "VerifyResult"]

MIN_FREE_BYTES = 1_000_000
DOC_ID = re.compile(r"[0-9a-f]{64}")

# json_valid first: a damaged body must stay readable by `verify`, not fail every write.
STARTED_ID = "CASE WHEN json_valid(body) THEN json_extract(body, '$.started_id') END"
# The answer a feedback or review record is about (see AuditLog.by_outcome).
ABOUT = "CASE WHEN json_valid(body) THEN json_extract(body, '$.retrieval.record_id') END"
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE records (
            seq INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL,
            user_name TEXT NOT NULL,
            channel TEXT NOT NULL,
            outcome TEXT NOT NULL,
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL UNIQUE,
            body TEXT NOT NULL
        )""",
        "CREATE INDEX records_created_at ON records (created_at)",
        "CREATE INDEX records_user ON records (user_name, seq)",
        "CREATE INDEX records_prev_hash ON records (prev_hash)",
        """CREATE TABLE record_documents (
            seq INTEGER NOT NULL,
            doc_id TEXT NOT NULL,
            source TEXT NOT NULL,
            cited INTEGER NOT NULL,
            PRIMARY KEY (seq, doc_id, source)
        )""",
        "CREATE INDEX record_documents_doc_id ON record_documents (doc_id, seq)",
        "CREATE INDEX record_documents_source ON record_documents (source, seq)",
        *GUARD_TRIGGERS.values(),
    ),
    # The completion record of a streamed answer names its "started" record.
    (f"CREATE INDEX records_started_id ON records ({STARTED_ID})",),
    # How each record's hash was made: plain sha256 (records written before the chain was
    # keyed) or "hmac-sha256:<key id>" (see appliance.audit.keys).
    (f"ALTER TABLE records ADD COLUMN hash_scheme TEXT NOT NULL DEFAULT '{PLAIN_SCHEME}'",),
    # Feedback and reviews are read by outcome (the review queue, an answer's feedback).
    (
        "CREATE INDEX IF NOT EXISTS records_outcome ON records (outcome, seq)",
        f"CREATE INDEX IF NOT EXISTS records_about ON records ({ABOUT})",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)


def utc_timestamp(moment: datetime) -> str:
    """ISO 8601 UTC with microseconds and a Z; a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def chain_hash(value: str) -> str:
    """`value` as a chain hash (64 lowercase hex digits), else AuditError."""
    text = value.strip().lower()
    if not DOC_ID.fullmatch(text):
        raise AuditError(
            f"{value!r} is not a chain hash: expected the 64 hexadecimal digits "
            "printed by `appliance audit head`"
        )
    return text


def _read_only_uri(path: Path) -> str:
    return path.resolve().as_uri() + "?mode=ro"


def _contains_folded(haystack: str | None, needle: str) -> bool:
    return haystack is not None and needle.casefold() in haystack.casefold()


class AuditLog:
    def __init__(
        self,
        path: Path,
        *,
        read_only: bool = False,
        busy_timeout_s: float = 10.0,
        key_file: Path | None = None,
    ) -> None:
        """Open (creating and migrating unless `read_only`) the audit log at `path`.

        With `key_file` (kept outside the data directory) the chain is keyed: new records are
        hashed with HMAC-SHA256 under that key, created (0600) if missing while the log holds
        no keyed record. Without it, records are hashed with plain SHA-256, and appending to a
        keyed log is refused. A writable open restores the append-only guard triggers.
        """
        self.path = path
        self.read_only = read_only
        self.key_file = key_file
        self.key: AuditKey | None = None
        self._timeout = busy_timeout_s
        self._lock = threading.Lock()
        self._restored: list[str] = []
        try:
            if not read_only:
                path.parent.mkdir(parents=True, exist_ok=True)
            self._db = self._connect()
        except (OSError, sqlite3.Error) as exc:
            raise AuditError(
                f"cannot open the audit log {path} ({exc}): check that the data directory is "
                "writable and the file is an audit log; restore a damaged one from backup"
            ) from None
        try:
            self.key = open_key(
                key_file,
                log_path=path,
                log_key_id=self._log_key_id(),
                last_plain_seq=self._last_plain_seq(),
                read_only=read_only,
            )
        except BaseException:
            self._db.close()
            raise
        if self._restored:
            self._record_restored_guards()

    def _record_restored_guards(self) -> None:
        """The restore itself goes into the chain, so a restart does not erase the evidence."""
        entry = AuditEntry(
            user="appliance",
            groups=(),
            question="audit log opened: its append-only guard triggers were restored",
            retrieval={"restored_triggers": list(self._restored)},
            passages=(),
            model={},
            prompt_sha256=None,
            answer=None,
            timings={},
            outcome="error",
            error=(
                f"the guard triggers {', '.join(self._restored)} were missing or changed: the "
                "file was edited outside the appliance; run `appliance audit verify`"
            ),
            channel="system",
        )
        try:
            self.append(entry)
        except AuditError as exc:
            log.error("event=audit_guards_restored_not_recorded error=%s", exc)

    def _log_key_id(self) -> str | None:
        """The key id of the latest keyed record, or None when no record is keyed."""
        rows = self._read(
            "SELECT hash_scheme FROM records WHERE hash_scheme != ? ORDER BY seq DESC LIMIT 1",
            (PLAIN_SCHEME,),
        )
        if not rows:
            return None
        return scheme_key_id(str(rows[0][0])) or str(rows[0][0])

    def _last_plain_seq(self) -> int:
        rows = self._read("SELECT max(seq) FROM records WHERE hash_scheme = ?", (PLAIN_SCHEME,))
        return int(rows[0][0] or 0)

    def _connect(self) -> sqlite3.Connection:
        if self.read_only and not self.path.is_file():
            raise FileNotFoundError(2, "no such file", str(self.path))
        target = _read_only_uri(self.path) if self.read_only else str(self.path)
        db = sqlite3.connect(
            target,
            uri=self.read_only,
            timeout=self._timeout,
            isolation_level=None,
            check_same_thread=False,
        )
        try:
            if not self.read_only:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            self._migrate(db)
            if not self.read_only:
                self._restore_guards(db)
            db.create_function("contains_folded", 2, _contains_folded, deterministic=True)
        except BaseException:
            db.close()
            raise
        return db

    def _migrate(self, db: sqlite3.Connection) -> None:
        version = check_not_newer(db, MIGRATIONS)
        if version < SCHEMA_VERSION and self.read_only:
            raise sqlite3.DatabaseError(
                f"schema version {version} needs migrating to {SCHEMA_VERSION}, "
                "which a read-only open cannot do"
            )
        migrate(db, MIGRATIONS, self.path)

    def _restore_guards(self, db: sqlite3.Connection) -> None:
        with write_transaction(db):
            changed = restore_guards(db)
        self._restored = changed
        if changed:
            log.warning(
                "event=audit_guards_restored path=%s triggers=%s (the file was edited outside "
                "the appliance: run `appliance audit verify`)",
                self.path,
                ",".join(changed),
            )

    @contextmanager
    def _write(self, action: str) -> Iterator[sqlite3.Connection]:
        """One BEGIN IMMEDIATE transaction under the lock; any failure becomes AuditError."""
        if self.read_only:
            raise AuditError(f"the audit log {self.path} was opened read-only: cannot {action}")
        with self._lock:
            try:
                with write_transaction(self._db) as db:
                    yield db
            except sqlite3.Error as exc:
                raise AuditError(
                    f"cannot {action} in the audit log {self.path} ({exc}): no answer may be "
                    "returned without its audit record; check the disk space and the "
                    "permissions of the data directory"
                ) from exc

    def append(self, entry: AuditEntry) -> AuditRecord:
        """Write one record at the end of the chain and return it as stored."""
        with self._write("write a record") as db:
            last = db.execute(
                "SELECT seq, hash, hash_scheme FROM records ORDER BY seq DESC LIMIT 1"
            ).fetchone()
            if last and self.key is None and last[2] != PLAIN_SCHEME:
                raise AuditError(
                    f"the audit log {self.path} is keyed: it takes records only from an "
                    "appliance that has its key file (APPLIANCE_AUDIT_KEY_FILE)"
                )
            seq, prev_hash = (last[0] + 1, last[1]) if last else (1, GENESIS_HASH)
            created_at = utc_timestamp(datetime.now(UTC))
            body = build_body(seq, str(uuid.uuid4()), created_at, prev_hash, entry)
            secret = self.key.secret if self.key else None
            record = record_from_body(body, compute_hash(body, secret))
            db.execute(
                "INSERT INTO records (seq, id, created_at, user_name, channel, outcome, "
                "prev_hash, hash, body, hash_scheme) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    seq,
                    record.id,
                    created_at,
                    record.entry.user,
                    record.entry.channel,
                    record.entry.outcome,
                    prev_hash,
                    record.hash,
                    body,
                    self.key.scheme if self.key else PLAIN_SCHEME,
                ),
            )
            db.executemany(
                "INSERT INTO record_documents VALUES (?, ?, ?, ?)",
                [(seq, *row) for row in sorted(document_rows(record))],
            )
        log.info("audit_append seq=%d id=%s outcome=%s", seq, record.id, record.entry.outcome)
        return record

    def check_writable(self) -> None:
        """Raise AuditError if an append would fail now: call it before generating an answer."""
        with self._write("take the write lock"):
            pass
        try:
            free = shutil.disk_usage(self.path.parent).free
        except OSError as exc:
            raise AuditError(f"cannot check the disk of the audit log {self.path}: {exc}") from None
        if free < MIN_FREE_BYTES:
            raise AuditError(
                f"the disk of the audit log {self.path} is full ({free} bytes free): "
                "free some space; no answer may be returned without its audit record"
            )

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise AuditError(f"cannot read the audit log {self.path}: {exc}") from None

    def head(self) -> tuple[int, str] | None:
        """The last record's seq and hash, or None when the log is empty."""
        rows = self._read("SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1")
        return (int(rows[0][0]), str(rows[0][1])) if rows else None

    def count(self) -> int:
        return int(self._read("SELECT count(*) FROM records")[0][0])

    def verify(self, expected_head: str | None = None) -> VerifyResult:
        """Check the whole chain (and that `expected_head`, a hash kept elsewhere, is in it)."""
        if expected_head is not None:
            expected_head = chain_hash(expected_head)
        try:
            with closing(self._reader()) as db:
                result = verify_chain(db, expected_head, self.key, self.key_file)
        except sqlite3.Error as exc:
            raise AuditError(f"cannot read the audit log {self.path}: {exc}") from None
        log.info("audit_verify ok=%s count=%d seq=%s", result.ok, result.count, result.seq)
        return result

    def _reader(self) -> sqlite3.Connection:
        """A connection of its own, so that a long verification does not hold up appends."""
        return sqlite3.connect(
            _read_only_uri(self.path), uri=True, timeout=self._timeout, isolation_level=None
        )

    def get(self, record_id: str) -> AuditRecord | None:
        rows = self._read("SELECT seq, body, hash FROM records WHERE id = ?", (record_id,))
        return self._parse(rows[0]) if rows else None

    def by_outcome(self, outcomes: tuple[str, ...], about: str | None = None) -> list[AuditRecord]:
        """Records of these outcomes, oldest first; with `about`, only those whose details
        name that record (`retrieval.record_id`), as feedback and reviews name an answer."""
        marks = ", ".join("?" for _ in outcomes)
        sql = f"SELECT seq, body, hash FROM records WHERE outcome IN ({marks})"
        params: list[Any] = list(outcomes)
        if about is not None:
            sql += f" AND {ABOUT} = ?"  # the expression of the index records_about
            params.append(about)
        return [self._parse(row) for row in self._read(sql + " ORDER BY seq", tuple(params))]

    def query(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        user: str | None = None,
        document: str | None = None,
        text: str | None = None,
        limit: int | None = None,
        cited_only: bool = False,
        newest_first: bool = False,
        offset: int = 0,
        with_completed_starts: bool = False,
    ) -> list[AuditRecord]:
        """Records matching every filter given, oldest first unless `newest_first`.

        `since` is inclusive, `until` exclusive (naive datetimes are UTC). `document` is a doc
        id, a file path or a folder (every source under it); `cited_only` keeps the answers
        that cited it. `text` is a case-insensitive substring of the question or the answer.
        A "started" record whose answer has its own record is left out (that record says
        more) unless `with_completed_starts`; one left alone marks a stream that was cut.
        """
        where, params = _filters(since, until, user, document, text, cited_only)
        if not with_completed_starts:
            where += (
                " AND NOT (outcome = 'started' AND id IN"
                f" (SELECT {STARTED_ID} FROM records WHERE {STARTED_ID} IS NOT NULL))"
            )
        order = "DESC" if newest_first else "ASC"
        sql = f"SELECT seq, body, hash FROM records WHERE {where} ORDER BY seq {order}"
        sql += " LIMIT ? OFFSET ?"
        params.extend([-1 if limit is None else limit, offset])
        return [self._parse(row) for row in self._read(sql, tuple(params))]

    def _parse(self, row: tuple[int, str, str]) -> AuditRecord:
        seq, body, record_hash = row
        try:
            return record_from_body(body, record_hash)
        except (ValueError, KeyError, TypeError):
            raise AuditError(
                f"audit record {seq} cannot be read: run `appliance audit verify`"
            ) from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _filters(
    since: datetime | None,
    until: datetime | None,
    user: str | None,
    document: str | None,
    text: str | None,
    cited_only: bool,
) -> tuple[str, list[Any]]:
    """The WHERE clause of `AuditLog.query` and its parameters."""
    where, params = ["1 = 1"], list[Any]()
    if since is not None:
        where.append("created_at >= ?")
        params.append(utc_timestamp(since))
    if until is not None:
        where.append("created_at < ?")
        params.append(utc_timestamp(until))
    if user is not None:
        where.append("user_name = ?")
        params.append(user)
    if document is not None:
        clause, values = document_clause(document, cited_only)
        where.append(f"seq IN (SELECT seq FROM record_documents WHERE {clause})")
        params.extend(values)
    if text:
        where.append(
            "(contains_folded(json_extract(body, '$.question'), ?)"
            " OR contains_folded(json_extract(body, '$.answer'), ?))"
        )
        params.extend([text, text])
    return " AND ".join(where), params


def document_clause(document: str, cited_only: bool = False) -> tuple[str, list[str]]:
    """SQL over record_documents for a doc id, a file path or a folder."""
    cited = " AND cited = 1" if cited_only else ""
    if DOC_ID.fullmatch(document.strip().lower()):
        return f"doc_id = ?{cited}", [document.strip().lower()]
    path = str(Path(document).expanduser().resolve())
    prefix = path if path.endswith("/") else path + "/"
    upper = prefix[:-1] + chr(ord("/") + 1)
    return f"(source = ? OR (source >= ? AND source < ?)){cited}", [path, prefix, upper]
