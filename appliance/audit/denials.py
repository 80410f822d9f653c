"""Refused actions in the audit log: who tried what, so an auditor sees attempts, not only
answers. A refusal is recorded as a `denied` record (the action, its target, the reason);
repeats of the same attempt by the same user within a minute are counted into the next
record instead of each writing one, so hammering a route cannot flood the log.

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


class Denials:
    def __init__(
        self,
        audit: AuditLog,
        window_s: float = REPEAT_WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._audit = audit
        self._window = window_s
        self._clock = clock
        self._lock = threading.Lock()
        # (user, action, target) -> (time of the last record, attempts not recorded since)
        self._recent: dict[tuple[str, str, str], tuple[float, int]] = {}

    def record(
        self,
        user: str,
        action: str,
        target: str,
        reason: str,
        *,
        groups: tuple[str, ...] = (),
        channel: str = "web",
    ) -> str | None:
        """Record one refused attempt; the record's id, or None when it was counted into a
        recent one (or could not be written)."""
        user, target = _bounded(user), _bounded(target)
        repeats = self._repeats((user, action, target))
        if repeats is None:
            return None
        entry = AuditEntry(
            user=user,
            groups=groups,
            question=f"{action}: {target}",
            retrieval={"action": action, "target": target, "earlier_attempts": repeats},
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
            return None

    def _repeats(self, key: tuple[str, str, str]) -> int | None:
        """Attempts counted since the last record of `key`, or None to count this one too."""
        now = self._clock()
        with self._lock:
            last = self._recent.get(key)
            if last is not None and now - last[0] < self._window:
                self._recent[key] = (last[0], last[1] + 1)
                return None
            if len(self._recent) >= MAX_TRACKED:
                cutoff = now - self._window
                self._recent = {k: v for k, v in self._recent.items() if v[0] >= cutoff}
            self._recent[key] = (now, 0)
            return last[1] if last is not None else 0


def _bounded(text: str) -> str:
    return text if len(text) <= TARGET_CHARS else text[:TARGET_CHARS] + "…"
