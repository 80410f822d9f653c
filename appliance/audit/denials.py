"""Refused actions in the audit log: who tried what, so an auditor sees attempts, not only
answers. A refusal is recorded as a `denied` record (the action, its target, the reason);
repeats of the same attempt by the same user within a minute are counted into the next
record instead of each writing one, and at most `MAX_PER_MINUTE` denials are written a minute
per signed-in user, and as many for all refused sign-ins together (whose names are whatever
was typed): the others are counted into that bucket's next record, so hammering cannot flood
the log.

Recording never changes the refusal: if the log cannot be written, the request is refused
all the same and the failure is logged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from appliance.audit.log import AuditLog
from appliance.audit.records import AuditEntry
from appliance.errors import AuditError

log = logging.getLogger(__name__)

TARGET_CHARS = 300
REPEAT_WINDOW_S = 60.0
MAX_TRACKED = 10_000
MAX_PER_MINUTE = 30


class Denials:
    def __init__(
        self,
        audit: AuditLog,
        window_s: float = REPEAT_WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
        max_per_minute: int = MAX_PER_MINUTE,
    ) -> None:
        self._audit = audit
        self._window = window_s
        self._clock = clock
        self._max_per_minute = max_per_minute
        self._lock = threading.Lock()
        # (user, action, target) -> (time of the last record, attempts not recorded since)
        self._recent: dict[tuple[str, str, str], tuple[float, int]] = {}
        # Per bucket: times of the records written in the last minute, and the denials over
        # the rate since, counted into the bucket's next record.
        self._written: dict[str, list[float]] = {}
        self._unwritten: dict[str, int] = {}

    def record(
        self,
        user: str,
        action: str,
        target: str,
        reason: str,
        *,
        groups: tuple[str, ...] = (),
        channel: str = "web",
        signed_in: bool = True,
    ) -> str | None:
        """Record one refused attempt; the record's id, or None when it was counted into a
        recent one (or could not be written). `signed_in=False`: `user` is only what was
        typed at sign-in, and all such refusals share one rate."""
        user, target = _bounded(user), _bounded(target)
        key = (user, action, target)
        bucket = f"user:{user}" if signed_in else "sign-in"
        counts = self._admit(key, bucket)
        if counts is None:
            return None
        repeats, others = counts
        entry = AuditEntry(
            user=user,
            groups=groups,
            question=f"{action}: {target}",
            retrieval={
                "action": action,
                "target": target,
                "earlier_attempts": repeats,
                "other_denials_not_recorded": others,
            },
            passages=(),
            model={},
            prompt_sha256=None,
            answer=None,
            timings={},
            outcome="denied",
            error=reason,
            channel=channel,
        )
        try:
            return self._audit.append(entry).id
        except AuditError as exc:
            log.error("event=denial_not_recorded action=%s error=%s", action, exc)
            with self._lock:  # the next attempt tries again, and carries these counts
                self._recent.pop(key, None)
                self._unwritten[bucket] = self._unwritten.get(bucket, 0) + others + repeats + 1
            return None

    def _admit(self, key: tuple[str, str, str], bucket: str) -> tuple[int, int] | None:
        """(earlier attempts of `key`, other denials not recorded) to write now, or None when
        this one is only counted."""
        now = self._clock()
        with self._lock:
            last = self._recent.get(key)
            if last is not None and now - last[0] < self._window:
                self._recent[key] = (last[0], last[1] + 1)
                return None
            written = [t for t in self._written.get(bucket, []) if now - t < 60.0]
            self._written[bucket] = written
            if len(written) >= self._max_per_minute:
                self._unwritten[bucket] = self._unwritten.get(bucket, 0) + 1
                return None
            if len(self._recent) >= MAX_TRACKED:
                cutoff = now - self._window
                self._recent = {k: v for k, v in self._recent.items() if v[0] >= cutoff}
                if len(self._recent) >= MAX_TRACKED:  # all recent: counted into this record
                    lost = sum(count for _, count in self._recent.values())
                    self._unwritten[bucket] = self._unwritten.get(bucket, 0) + lost
                    self._recent.clear()
                self._written = {b: t for b, t in self._written.items() if t and now - t[-1] < 60}
            self._recent[key] = (now, 0)
            written.append(now)
            self._written[bucket] = written
            others = self._unwritten.pop(bucket, 0)
            return (last[1] if last is not None else 0), others


def _bounded(text: str) -> str:
    return text if len(text) <= TARGET_CHARS else text[:TARGET_CHARS] + "…"
