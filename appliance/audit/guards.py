"""The append-only guards of the audit log: triggers that refuse UPDATE and DELETE.

They stop mistakes, not an attacker: anyone who can write the file can drop them. So `verify`
reports a guard that is missing or changed (and any trigger the appliance did not create), and
a writable open puts the guards back as they should be, with a warning in the application log.
"""

from __future__ import annotations

import sqlite3

GUARDED_TABLES = ("records", "record_documents")
GUARDED_ACTIONS = ("UPDATE", "DELETE")


def guard_trigger(table: str, action: str) -> str:
    return f"""CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table}
            BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END"""


GUARD_TRIGGERS: dict[str, str] = {
    f"{table}_no_{action.lower()}": guard_trigger(table, action)
    for table in GUARDED_TABLES
    for action in GUARDED_ACTIONS
}


def _normal(sql: str | None) -> str:
    return " ".join((sql or "").split()).casefold()


def guard_problems(db: sqlite3.Connection) -> tuple[list[str], list[str]]:
    """(guards missing or changed, triggers that are not guards), by name."""
    found = {
        str(name): str(sql)
        for name, sql in db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'")
    }
    broken = [
        name for name, sql in GUARD_TRIGGERS.items() if _normal(found.get(name)) != _normal(sql)
    ]
    return broken, sorted(set(found) - set(GUARD_TRIGGERS))


def describe_guard_problems(broken: list[str], unexpected: list[str]) -> str | None:
    """One sentence naming what is wrong with the guards, or None when they are intact."""
    parts = []
    if broken:
        parts.append(f"the append-only guard triggers {', '.join(broken)} are missing or changed")
    if unexpected:
        parts.append(f"triggers the appliance did not create are present: {', '.join(unexpected)}")
    if not parts:
        return None
    return " and ".join(parts) + " (the file was edited outside the appliance)"


def restore_guards(db: sqlite3.Connection) -> list[str]:
    """Drop foreign triggers and recreate missing or changed guards, in the caller's
    transaction; returns the names of the triggers changed."""
    broken, unexpected = guard_problems(db)
    for name in [*broken, *unexpected]:
        db.execute(f'DROP TRIGGER IF EXISTS "{name}"')
    for name in broken:
        db.execute(GUARD_TRIGGERS[name])
    return [*broken, *unexpected]
