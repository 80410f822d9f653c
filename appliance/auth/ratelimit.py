"""Pausing logins after repeated failures, per account and, for unknown names, per address.

The caller names each attempt by one or more keys (`login_keys`): a login is allowed only when
none of them is locked. A key is locked for `lockout_s` once it has `max_failures` failures
within `lockout_s`. Counters live in memory: a restart clears them.

No key is shared by all the accounts: behind a reverse proxy every user comes from the same
address, so a lock on the address would let anyone lock everyone out with a made-up name.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from appliance.errors import ConfigError

log = logging.getLogger(__name__)

MAX_ENTRIES = 100_000


@dataclass
class _Entry:
    failures: deque[float] = field(default_factory=deque)
    locked_until: float = 0.0


def login_keys(name: str, address: str, account_exists: bool) -> tuple[str, ...]:
    """The keys of one password sign-in for `name` from `address`.

    An existing account is keyed by its name alone: failures lock that account, never the
    address its users share. A name that is no account is also counted in a bucket of its
    address that only unknown names consult, so guessing names from one address is slowed
    without blocking a real user there. The first key is the one a success clears.
    """
    account = f"user:{name.strip().lower()}"
    return (account,) if account_exists else (account, unknown_names_key(address))


def unknown_names_key(address: str) -> str:
    """The bucket of failed sign-ins with names that are no account, from `address`."""
    return f"unknown-name-from:{address}"


class LoginLimiter:
    def __init__(
        self,
        max_failures: int,
        lockout_s: float,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_entries: int = MAX_ENTRIES,
    ) -> None:
        """`max_entries` bounds memory: beyond it, the entries that failed longest ago go."""
        if max_failures < 1:
            raise ConfigError(f"APPLIANCE_LOGIN_MAX_FAILURES must be at least 1 ({max_failures})")
        if lockout_s <= 0:
            raise ConfigError(f"APPLIANCE_LOGIN_LOCKOUT_S must be positive ({lockout_s})")
        self.max_failures = max_failures
        self.lockout_s = lockout_s
        self._clock = clock
        self._max_entries = max(1, max_entries)
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._next_sweep = clock() + lockout_s

    def retry_after(self, *keys: str) -> float:
        """Seconds until a login for all of these keys is allowed again; 0.0 when it is now."""
        with self._lock:
            now = self._clock()
            waits = [
                entry.locked_until - now
                for key in keys
                if (entry := self._entries.get(key)) is not None
            ]
        return max([0.0, *waits])

    def failed(self, *keys: str) -> None:
        """Count one failed login against each key (a locked key stays locked as it is)."""
        with self._lock:
            now = self._clock()
            for key in keys:
                self._fail(key, now)
            self._prune(now)

    def succeeded(self, *keys: str) -> None:
        """Forget the failures of these keys.

        Clear only keys the successful login proves something about (the user's name): an
        address key cleared by any success lets one valid account reset a guesser's counter.
        """
        with self._lock:
            for key in keys:
                self._entries.pop(key, None)

    def _fail(self, key: str, now: float) -> None:
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry()
        self._entries.move_to_end(key)
        if entry.locked_until > now:
            return
        while entry.failures and entry.failures[0] <= now - self.lockout_s:
            entry.failures.popleft()
        entry.failures.append(now)
        if len(entry.failures) >= self.max_failures:
            entry.failures.clear()
            entry.locked_until = now + self.lockout_s
            log.warning("login_locked key=%s seconds=%.0f", key, self.lockout_s)

    def _stale(self, entry: _Entry, now: float) -> bool:
        recent = bool(entry.failures) and entry.failures[-1] > now - self.lockout_s
        return entry.locked_until <= now and not recent

    def _prune(self, now: float) -> None:
        """Drop stale entries now and then; beyond `max_entries`, drop the unlocked entries that
        failed longest ago, then (only under a flood of keys) the oldest locked ones."""
        if now >= self._next_sweep or len(self._entries) > self._max_entries:
            self._next_sweep = now + self.lockout_s
            for key in [k for k, e in self._entries.items() if self._stale(e, now)]:
                del self._entries[key]
        if len(self._entries) > self._max_entries:
            log.warning("login_limiter_full entries=%d", len(self._entries))
            target = self._max_entries * 9 // 10
            unlocked = [k for k, e in self._entries.items() if e.locked_until <= now]
            for key in unlocked[: len(self._entries) - target]:
                del self._entries[key]
            while len(self._entries) > target:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
