"""The login limiter with a fake clock: locking, unlocking, sliding windows, bounded memory."""

from __future__ import annotations

import threading

import pytest

from appliance.auth import LoginLimiter
from appliance.errors import ConfigError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def limiter(clock: Clock) -> LoginLimiter:
    return LoginLimiter(max_failures=3, lockout_s=60, clock=clock)


def test_locks_after_max_failures_and_unlocks_after_lockout(
    limiter: LoginLimiter, clock: Clock
) -> None:
    keys = ("user:alice", "ip:10.0.0.7")
    for _ in range(2):
        limiter.failed(*keys)
        assert limiter.retry_after(*keys) == 0.0
    limiter.failed(*keys)
    assert limiter.retry_after(*keys) == 60.0
    assert limiter.retry_after("user:alice") == 60.0
    assert limiter.retry_after("ip:10.0.0.7", "user:bob") == 60.0
    assert limiter.retry_after("user:bob", "ip:10.0.0.8") == 0.0
    clock.now += 45
    assert limiter.retry_after(*keys) == 15.0
    clock.now += 15
    assert limiter.retry_after(*keys) == 0.0
    limiter.failed(*keys)  # a fresh count after the lockout
    assert limiter.retry_after(*keys) == 0.0


def test_failures_spread_beyond_the_window_do_not_lock(limiter: LoginLimiter, clock: Clock) -> None:
    for _ in range(10):
        limiter.failed("user:alice")
        clock.now += 31  # never three within 60 s
    assert limiter.retry_after("user:alice") == 0.0
    limiter.failed("user:alice")
    clock.now += 1
    limiter.failed("user:alice")
    assert limiter.retry_after("user:alice") == 60.0


def test_success_clears_only_the_keys_named(limiter: LoginLimiter) -> None:
    for _ in range(2):
        limiter.failed("user:alice", "ip:10.0.0.7")
    limiter.succeeded("user:alice")
    limiter.failed("user:alice", "ip:10.0.0.7")
    assert limiter.retry_after("user:alice") == 0.0
    assert limiter.retry_after("ip:10.0.0.7") == 60.0
    limiter.succeeded("ip:10.0.0.7", "user:nobody")
    assert limiter.retry_after("ip:10.0.0.7") == 0.0


def test_failures_while_locked_do_not_extend_the_lock(limiter: LoginLimiter, clock: Clock) -> None:
    for _ in range(3):
        limiter.failed("user:alice")
    clock.now += 30
    for _ in range(10):
        limiter.failed("user:alice")
    assert limiter.retry_after("user:alice") == 30.0
    clock.now += 30
    assert limiter.retry_after("user:alice") == 0.0


def test_one_failure_allowed(clock: Clock) -> None:
    limiter = LoginLimiter(max_failures=1, lockout_s=5, clock=clock)
    limiter.failed("ip:::1")
    assert limiter.retry_after("ip:::1") == 5.0
    assert limiter.retry_after() == 0.0


def test_stale_entries_are_dropped(limiter: LoginLimiter, clock: Clock) -> None:
    for n in range(100):
        limiter.failed(f"ip:10.0.0.{n}")
    for _ in range(3):
        limiter.failed("user:alice")
    assert len(limiter) == 101
    clock.now += 61
    limiter.failed("user:bob")
    assert len(limiter) == 1


def test_memory_is_bounded_and_unlocked_entries_go_first(clock: Clock) -> None:
    limiter = LoginLimiter(max_failures=2, lockout_s=60, clock=clock, max_entries=50)
    limiter.failed("user:alice")
    limiter.failed("user:alice")  # locked, and the oldest entry
    for n in range(1000):
        limiter.failed(f"user:guess{n}")
    assert len(limiter) <= 50
    assert limiter.retry_after("user:alice") == 60.0


def test_threads_count_every_failure(clock: Clock) -> None:
    limiter = LoginLimiter(max_failures=400, lockout_s=60, clock=clock)

    def fail() -> None:
        for _ in range(50):
            limiter.failed("user:alice")

    threads = [threading.Thread(target=fail) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert limiter.retry_after("user:alice") == 60.0


def test_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="APPLIANCE_LOGIN_MAX_FAILURES"):
        LoginLimiter(0, 60)
    with pytest.raises(ConfigError, match="APPLIANCE_LOGIN_LOCKOUT_S"):
        LoginLimiter(5, 0)


def test_the_default_clock_is_monotonic() -> None:
    limiter = LoginLimiter(max_failures=1, lockout_s=60)
    limiter.failed("user:alice")
    assert 59 < limiter.retry_after("user:alice") <= 60


def test_made_up_names_from_one_address_never_lock_a_real_account(limiter: LoginLimiter) -> None:
    from appliance.auth.ratelimit import login_keys

    proxy = "10.0.0.1"  # behind a reverse proxy, every user comes from this address
    for n in range(10):
        guess = login_keys(f"nobody{n}", proxy, account_exists=False)
        if limiter.retry_after(*guess) == 0.0:
            limiter.failed(*guess)
    # More made-up names from that address are paused...
    assert limiter.retry_after(*login_keys("nobody99", proxy, account_exists=False)) == 60.0
    # ...but a real account from the same address is not.
    alice = login_keys("alice", proxy, account_exists=True)
    assert limiter.retry_after(*alice) == 0.0
    # Failures against a real account lock that account only, from every address.
    for _ in range(3):
        limiter.failed(*alice)
    assert limiter.retry_after(*login_keys(" ALICE ", "10.9.9.9", account_exists=True)) == 60.0
    assert limiter.retry_after(*login_keys("bob", proxy, account_exists=True)) == 0.0
