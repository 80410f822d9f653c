"""Refused actions are audit records; repeats are counted, not written one by one."""

from pathlib import Path

import pytest

from appliance.audit import AuditEntry, AuditLog, AuditRecord
from appliance.audit.denials import Denials
from appliance.errors import AuditError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_refusal_is_a_chained_denied_record(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "audit.sqlite3") as log:
        record_id = Denials(log).record(
            "bob",
            "download an audit export",
            "audit-export-x.csv",
            "auditors only",
            groups=("everyone",),
        )
        [record] = log.query()
        assert record.id == record_id and record.entry.outcome == "denied"
        assert record.entry.user == "bob" and record.entry.groups == ("everyone",)
        assert record.entry.retrieval["action"] == "download an audit export"
        assert record.entry.error == "auditors only"
        assert log.verify().ok


def test_repeats_within_the_window_are_counted_into_the_next_record(tmp_path: Path) -> None:
    clock = Clock()
    with AuditLog(tmp_path / "audit.sqlite3") as log:
        denials = Denials(log, window_s=60, clock=clock)
        assert denials.record("bob", "POST request", "/upload", "admins only")
        for _ in range(5):
            assert denials.record("bob", "POST request", "/upload", "admins only") is None
        assert denials.record("ann", "POST request", "/upload", "admins only")  # another user
        clock.now += 61
        assert denials.record("bob", "POST request", "/upload", "admins only")
        attempts = [(r.entry.user, r.entry.retrieval["earlier_attempts"]) for r in log.query()]
        assert attempts == [("bob", 0), ("ann", 0), ("bob", 5)]


def test_a_long_target_is_bounded(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "audit.sqlite3") as log:
        Denials(log).record("x" * 5000, "sign in", "from " + "y" * 5000, "locked out")
        [record] = log.query()
        assert len(record.entry.user) <= 301 and len(record.entry.retrieval["target"]) <= 301


def test_a_log_that_cannot_be_written_does_not_turn_a_refusal_into_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with AuditLog(tmp_path / "audit.sqlite3") as log:

        def full(entry: AuditEntry) -> AuditRecord:
            raise AuditError("disk full")

        monkeypatch.setattr(log, "append", full)
        assert Denials(log).record("bob", "sign in", "from 10.0.0.1", "locked out") is None


def test_a_flood_of_different_denials_is_capped_and_counted(tmp_path: Path) -> None:
    """Sign-ins from another site with a new made-up name each time: no two are repeats."""
    clock = Clock()
    with AuditLog(tmp_path / "audit.sqlite3") as log:
        denials = Denials(log, clock=clock, max_per_minute=3)
        written = [
            denials.record(f"name-{n}", "sign in", "from 10.0.0.9", "x", signed_in=False)
            for n in range(10)
        ]
        assert denials.record("bob", "POST request", "/upload", "admins only")  # own budget
        assert sum(1 for w in written if w) == 3
        clock.now += 61
        assert denials.record("name-x", "sign in", "from 10.0.0.9", "x", signed_in=False)
        last = log.query()[-1]
        assert last.entry.retrieval["other_denials_not_recorded"] == 7
        assert log.count() == 5
