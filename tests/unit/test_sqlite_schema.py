"""The one write transaction of the appliance's SQLite files (audit log, user store)."""

import sqlite3
from pathlib import Path

import pytest

from appliance.sqlite_schema import migrate, schema_version, write_transaction

MIGRATIONS = [["CREATE TABLE notes (text TEXT NOT NULL)"]]


def open_db(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, timeout=0.1)
    migrate(db, MIGRATIONS, path)
    return db


def test_a_write_is_committed_whole_or_not_at_all(tmp_path: Path) -> None:
    db = open_db(tmp_path / "notes.sqlite3")
    with write_transaction(db):
        db.execute("INSERT INTO notes VALUES ('kept')")
    for stop in (sqlite3.IntegrityError("constraint"), KeyboardInterrupt()):
        with pytest.raises(type(stop)), write_transaction(db):
            db.execute("INSERT INTO notes VALUES ('half')")
            raise stop
    assert db.execute("SELECT text FROM notes").fetchall() == [("kept",)]
    assert not db.in_transaction and schema_version(db) == 1


def test_the_write_lock_is_taken_at_the_start_so_writers_take_turns(tmp_path: Path) -> None:
    path = tmp_path / "notes.sqlite3"
    first, second = open_db(path), open_db(path)
    with write_transaction(first):
        with pytest.raises(sqlite3.OperationalError, match="locked"), write_transaction(second):
            pass  # refused before its block runs
        first.execute("INSERT INTO notes VALUES ('first')")
    with write_transaction(second):
        second.execute("INSERT INTO notes VALUES ('second')")
    assert [r[0] for r in first.execute("SELECT text FROM notes")] == ["first", "second"]
