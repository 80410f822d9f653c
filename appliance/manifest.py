"""The ingestion manifest: which version of which file the index holds.

A row is written only after that file's points are durable in the store, so a run killed
at any point leaves the manifest describing a subset of what the store holds; the next run
re-does whatever the manifest does not vouch for.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from appliance.domain import DocumentEntry
from appliance.errors import StoreError

MIGRATIONS = [
    """
    CREATE TABLE documents (
        source TEXT PRIMARY KEY,
        doc_id TEXT NOT NULL,
        size INTEGER NOT NULL,
        chunks INTEGER NOT NULL,
        acl TEXT NOT NULL,
        ingested_at TEXT NOT NULL
    );
    CREATE INDEX documents_doc_id ON documents (doc_id);
    """,
]


class Manifest:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"cannot open the ingestion manifest {path} ({exc}): restore it from backup, "
                "or delete it and ingest again (unchanged files are then re-embedded)"
            ) from None

    def _migrate(self) -> None:
        version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            self._db.executescript(f"BEGIN; {script} PRAGMA user_version={number}; COMMIT;")

    @staticmethod
    def _entry(row: tuple[str, str, int, int, str, str]) -> DocumentEntry:
        source, doc_id, size, chunks, acl, ingested_at = row
        return DocumentEntry(source, doc_id, size, chunks, tuple(json.loads(acl)), ingested_at)

    def get(self, source: str) -> DocumentEntry | None:
        row = self._db.execute(
            "SELECT source, doc_id, size, chunks, acl, ingested_at FROM documents WHERE source=?",
            (source,),
        ).fetchone()
        return self._entry(row) if row else None

    def entries(self) -> Iterator[DocumentEntry]:
        rows = self._db.execute(
            "SELECT source, doc_id, size, chunks, acl, ingested_at FROM documents ORDER BY source"
        ).fetchall()
        return (self._entry(row) for row in rows)

    def by_doc_id(self, doc_id: str) -> list[DocumentEntry]:
        rows = self._db.execute(
            "SELECT source, doc_id, size, chunks, acl, ingested_at FROM documents"
            " WHERE doc_id=? ORDER BY source",
            (doc_id,),
        ).fetchall()
        return [self._entry(row) for row in rows]

    def put(self, entry: DocumentEntry) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO documents VALUES (?, ?, ?, ?, ?, ?)",
            (
                entry.source,
                entry.doc_id,
                entry.size,
                entry.chunks,
                json.dumps(list(entry.acl)),
                entry.ingested_at,
            ),
        )

    def remove(self, source: str) -> None:
        self._db.execute("DELETE FROM documents WHERE source=?", (source,))

    def close(self) -> None:
        self._db.close()
