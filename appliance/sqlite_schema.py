"""Writes and schema migrations for the appliance's SQLite files (audit log, user store).

Every write runs in one `BEGIN IMMEDIATE` transaction (`write_transaction`): SQLite's write
lock is taken at the start, so two processes change a file one after the other, and a
failure leaves the file as it was. A file's `PRAGMA user_version` counts the migrations it
has had; missing ones run in one such transaction, so two processes never both migrate.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

Migration = Sequence[str]


@contextmanager
def write_transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One BEGIN IMMEDIATE transaction: committed when the block ends, rolled back when it
    raises anything (KeyboardInterrupt too). `db` must be in autocommit mode
    (`isolation_level=None`); a caller with threads holds its own lock around this."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def schema_version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def check_not_newer(db: sqlite3.Connection, migrations: Sequence[Migration]) -> int:
    """The file's version; a file written by a newer appliance is refused."""
    version = schema_version(db)
    if version > len(migrations):
        raise sqlite3.DatabaseError(
            f"schema version {version} is newer than this appliance's {len(migrations)}"
        )
    return version


def migrate(db: sqlite3.Connection, migrations: Sequence[Migration], path: Path) -> None:
    """Bring the file at `path` to the latest of `migrations` (statements, in order)."""
    if check_not_newer(db, migrations) == len(migrations):
        return
    with write_transaction(db):
        version = schema_version(db)  # another process may have migrated meanwhile
        for number, statements in enumerate(migrations[version:], start=version + 1):
            for statement in statements:
                db.execute(statement)
            db.execute(f"PRAGMA user_version={number}")
            log.info("event=schema_migrated path=%s version=%d", path, number)
