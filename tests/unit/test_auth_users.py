"""The user store on real SQLite with real argon2id (cheap parameters): passwords, API keys,
sessions, and what an attacker with the file, or with a removed account, can still do."""

from __future__ import annotations

import sqlite3
import stat
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import pytest
from argon2 import PasswordHasher

from appliance.auth import ApiKeyInfo, Role, User, UserStore
from appliance.auth.users import KEY_PATTERN, SCHEMA_VERSION
from appliance.errors import AuthError, ConfigError

PASSWORD = "correct horse battery"


def fast_hasher(time_cost: int = 1) -> PasswordHasher:
    return PasswordHasher(time_cost=time_cost, memory_cost=8, parallelism=1)


class CountingHasher(PasswordHasher):
    """A fast hasher that counts verifications."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=8, parallelism=1)
        self.verified = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        self.verified += 1
        return super().verify(hash, password)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "users.sqlite3"


@pytest.fixture
def store(path: Path, clock: Clock) -> Iterator[UserStore]:
    with UserStore(path, session_hours=12, hasher=fast_hasher(), clock=clock) as opened:
        yield opened


@pytest.fixture
def alice(store: UserStore) -> User:
    return store.add_user("alice", PASSWORD, ["staff", "hr"])


def stored_bytes(path: Path) -> bytes:
    """Every byte of the database, its WAL and shared memory, as an attacker would read them."""
    return b"".join(p.read_bytes() for p in sorted(path.parent.glob(path.name + "*")))


def test_the_right_password_logs_in_and_others_do_not(store: UserStore, alice: User) -> None:
    assert alice == User("alice", ("hr", "staff"), Role.USER)
    assert store.authenticate("alice", PASSWORD) == alice
    assert store.authenticate("alice", PASSWORD + "x") is None
    assert store.authenticate("alice", "") is None
    assert store.authenticate("ALICE", PASSWORD) is None
    assert store.authenticate("mallory", PASSWORD) is None
    assert store.authenticate("bad name", PASSWORD) is None


def test_an_unknown_name_costs_a_hash_verification_too(path: Path) -> None:
    hasher = CountingHasher()
    with UserStore(path, hasher=hasher) as store:
        store.add_user("alice", PASSWORD, ["staff"])
        assert store.authenticate("alice", "wrong password") is None
        assert hasher.verified == 1
        assert store.authenticate("nobody", PASSWORD) is None
        assert store.authenticate("", PASSWORD) is None
        assert hasher.verified == 3


def test_passwords_are_argon2id_and_rehashed_when_parameters_change(path: Path) -> None:
    with UserStore(path, hasher=fast_hasher(time_cost=1)) as store:
        store.add_user("alice", PASSWORD, ["staff"])

    def stored_hash() -> str:
        db = sqlite3.connect(path)
        try:
            return str(db.execute("SELECT password_hash FROM users").fetchone()[0])
        finally:
            db.close()

    assert stored_hash().startswith("$argon2id$v=19$m=8,t=1,p=1$")
    with UserStore(path, hasher=fast_hasher(time_cost=2)) as store:
        assert store.authenticate("alice", "wrong password") is None
        assert stored_hash().startswith("$argon2id$v=19$m=8,t=1,p=1$")
        assert store.authenticate("alice", PASSWORD) is not None
        assert stored_hash().startswith("$argon2id$v=19$m=8,t=2,p=1$")
        assert store.authenticate("alice", PASSWORD) is not None


def test_the_default_hasher_is_argon2ids_own_defaults(path: Path) -> None:
    with UserStore(path) as store:
        hasher = store._hasher
    default = PasswordHasher()
    assert (hasher.time_cost, hasher.memory_cost, hasher.parallelism) == (
        default.time_cost,
        default.memory_cost,
        default.parallelism,
    )


def test_groups_are_normalised(store: UserStore) -> None:
    user = store.add_user("bob", PASSWORD, [" hr", "everyone", "hr ", "", "  "])
    assert user.groups == ("everyone", "hr")
    assert store.get("bob") == user
    assert store.set_groups("bob", ["z", " a ", "z"]).groups == ("a", "z")
    assert store.get("bob") == User("bob", ("a", "z"), Role.USER)


@pytest.mark.parametrize(
    ("name", "password", "groups", "role", "message"),
    [
        ("alice", PASSWORD, ["staff"], Role.USER, "already exists"),
        ("Alice", PASSWORD, ["staff"], Role.USER, "differs only in case"),
        ("bad name", PASSWORD, ["staff"], Role.USER, "not a valid user name"),
        ("", PASSWORD, ["staff"], Role.USER, "not a valid user name"),
        ("x" * 65, PASSWORD, ["staff"], Role.USER, "not a valid user name"),
        ("eve/../x", PASSWORD, ["staff"], Role.USER, "not a valid user name"),
        ("eve\n", PASSWORD, ["staff"], Role.USER, "not a valid user name"),
        ("eve", "short", ["staff"], Role.USER, "too short"),
        ("eve", PASSWORD, [], Role.USER, "at least one group"),
        ("eve", PASSWORD, [" ", ""], Role.USER, "at least one group"),
        ("eve", PASSWORD, ["a,b"], Role.USER, "not a valid group"),
        ("eve", PASSWORD, ["tab\there"], Role.USER, "not a valid group"),
        ("eve", PASSWORD, ["staff"], "root", "not a role"),
    ],
)
def test_add_user_refuses_bad_input(
    store: UserStore,
    alice: User,
    name: str,
    password: str,
    groups: list[str],
    role: Role,
    message: str,
) -> None:
    with pytest.raises(AuthError, match=message):
        store.add_user(name, password, groups, role)
    assert [u.name for u in store.list_users()] == ["alice"]


def test_names_allow_emails_and_dots(store: UserStore) -> None:
    for name in ("a", "j.doe@example.org", "svc_bot-1", "x" * 64):
        store.add_user(name, PASSWORD, ["staff"])
    assert [u.name for u in store.list_users()] == sorted(
        ["a", "j.doe@example.org", "svc_bot-1", "x" * 64]
    )


def test_roles_are_separate(store: UserStore) -> None:
    admin = store.add_user("root", PASSWORD, ["staff"], Role.ADMIN)
    auditor = store.add_user("audit", PASSWORD, ["staff"], Role.AUDITOR)
    user = store.add_user("u", PASSWORD, ["staff"])
    assert (admin.is_admin, admin.is_auditor) == (True, False)
    assert (auditor.is_admin, auditor.is_auditor) == (False, True)
    assert (user.is_admin, user.is_auditor) == (False, False)
    assert store.set_role("u", Role.AUDITOR).role is Role.AUDITOR
    assert store.authenticate("u", PASSWORD) == User("u", ("staff",), Role.AUDITOR)


def test_changing_an_unknown_user_is_an_error(store: UserStore) -> None:
    for change in (
        lambda: store.remove_user("ghost"),
        lambda: store.set_password("ghost", PASSWORD),
        lambda: store.set_groups("ghost", ["staff"]),
        lambda: store.set_role("ghost", Role.ADMIN),
        lambda: store.create_key("ghost"),
        lambda: store.create_session("ghost"),
    ):
        with pytest.raises(AuthError, match="no user named 'ghost'"):
            change()
    assert store.get("ghost") is None


def test_changes_take_effect_on_the_next_lookup(store: UserStore, alice: User) -> None:
    token = store.create_session("alice")
    _, key = store.create_key("alice")
    store.set_groups("alice", ["finance"])
    store.set_role("alice", Role.ADMIN)
    expected = User("alice", ("finance",), Role.ADMIN)
    assert store.user_for_session(token) == expected
    assert store.user_for_key(key) == expected


def test_a_new_password_ends_sessions_and_keeps_keys(store: UserStore, alice: User) -> None:
    token = store.create_session("alice")
    _, key = store.create_key("alice")
    with pytest.raises(AuthError, match="too short"):
        store.set_password("alice", "1234567")
    assert store.user_for_session(token) == alice
    store.set_password("alice", "a whole new password")
    assert store.authenticate("alice", PASSWORD) is None
    assert store.authenticate("alice", "a whole new password") == alice
    assert store.user_for_session(token) is None
    assert store.user_for_key(key) == alice


def test_a_removed_users_sessions_and_keys_stop_working(store: UserStore, alice: User) -> None:
    bob = store.add_user("bob", PASSWORD, ["staff"])
    token, bob_token = store.create_session("alice"), store.create_session("bob")
    info, key = store.create_key("alice")
    _, bob_key = store.create_key("bob")
    store.remove_user("alice")
    assert store.get("alice") is None
    assert store.authenticate("alice", PASSWORD) is None
    assert store.user_for_session(token) is None
    assert store.user_for_key(key) is None
    [listed] = store.list_keys("alice")
    assert listed.key_id == info.key_id and listed.revoked_at is not None
    assert (store.user_for_session(bob_token), store.user_for_key(bob_key)) == (bob, bob)
    # Someone given the same name later does not inherit the old keys or sessions.
    store.add_user("alice", "another password", ["staff"])
    assert store.user_for_session(token) is None
    assert store.user_for_key(key) is None


def test_api_keys(store: UserStore, alice: User, clock: Clock) -> None:
    info, key = store.create_key("alice")
    match = KEY_PATTERN.fullmatch(key)
    assert match is not None and match.group(1) == info.key_id
    assert info == ApiKeyInfo(info.key_id, "alice", "2026-11-23T09:00:00.000000Z", None, None)
    assert store.list_keys() == [info]
    clock.advance(minutes=5)
    assert store.user_for_key(key) == alice
    [used] = store.list_keys("alice")
    assert used.last_used_at == "2026-11-23T09:05:00.000000Z"
    clock.advance(minutes=5)
    store.revoke_key(info.key_id)
    assert store.user_for_key(key) is None
    [revoked] = store.list_keys()
    assert revoked.revoked_at == "2026-11-23T09:10:00.000000Z"
    assert revoked.last_used_at == used.last_used_at
    store.revoke_key(info.key_id)  # revoking twice keeps the first time
    assert store.list_keys()[0].revoked_at == revoked.revoked_at
    with pytest.raises(AuthError, match="no API key with id 'nope'"):
        store.revoke_key("nope")


def test_list_keys_by_user(store: UserStore, alice: User) -> None:
    store.add_user("bob", PASSWORD, ["staff"])
    a1, _ = store.create_key("alice")
    b1, _ = store.create_key("bob")
    a2, _ = store.create_key("alice")
    assert {k.key_id for k in store.list_keys("alice")} == {a1.key_id, a2.key_id}
    assert [k.key_id for k in store.list_keys("bob")] == [b1.key_id]
    assert store.list_keys("nobody") == []
    assert len(store.list_keys()) == 3


def test_wrong_or_malformed_keys_are_refused(store: UserStore, alice: User) -> None:
    _, key = store.create_key("alice")
    other, other_key = store.create_key("alice")
    secret = key.split("_", 2)[2]
    assert store.user_for_key(key) == alice
    for bad in (
        "",
        "apl_",
        key[:-1],
        key + "A",
        key.upper(),
        " " + key,
        key.replace("apl_", "xyz_", 1),
        f"apl_{other.key_id}_{secret}",  # a real id with another key's secret
        f"apl_{'0' * 16}_{secret}",
        secret,
        "apl_" + "a" * 10_000,
    ):
        assert store.user_for_key(bad) is None, bad
    assert store.user_for_key(other_key) == alice


def test_sessions_expire(store: UserStore, alice: User, clock: Clock, path: Path) -> None:
    token = store.create_session("alice")
    assert len(token) >= 43
    assert store.user_for_session(token) == alice
    clock.advance(hours=11, minutes=59)
    assert store.user_for_session(token) == alice
    clock.advance(minutes=1)
    assert store.user_for_session(token) is None
    db = sqlite3.connect(path)
    try:
        assert db.execute("SELECT count(*) FROM sessions").fetchone()[0] == 0
    finally:
        db.close()
    assert store.user_for_session(token) is None


def test_creating_a_session_purges_expired_ones(
    store: UserStore, alice: User, clock: Clock, path: Path
) -> None:
    for _ in range(3):
        store.create_session("alice")
    clock.advance(hours=13)
    fresh = store.create_session("alice")
    db = sqlite3.connect(path)
    try:
        assert db.execute("SELECT count(*) FROM sessions").fetchone()[0] == 1
    finally:
        db.close()
    assert store.user_for_session(fresh) == alice


def test_sessions_end_and_unknown_tokens_are_refused(store: UserStore, alice: User) -> None:
    token, other = store.create_session("alice"), store.create_session("alice")
    assert token != other
    store.end_session(token)
    store.end_session(token)
    store.end_session("never issued")
    store.end_session("")
    assert store.user_for_session(token) is None
    assert store.user_for_session(other) == alice
    for bad in ("", "x", other + "x", other[:-1], "a" * 100_000):
        assert store.user_for_session(bad) is None


def test_the_session_length_comes_from_the_setting(path: Path, clock: Clock) -> None:
    with UserStore(path, session_hours=0.5, hasher=fast_hasher(), clock=clock) as store:
        store.add_user("alice", PASSWORD, ["staff"])
        token = store.create_session("alice")
        clock.advance(minutes=29)
        assert store.user_for_session(token) is not None
        clock.advance(minutes=1)
        assert store.user_for_session(token) is None
    with pytest.raises(ConfigError, match="APPLIANCE_SESSION_HOURS"):
        UserStore(path, session_hours=0)


def test_the_file_is_private_and_holds_no_secret(path: Path, clock: Clock) -> None:
    store = UserStore(path, hasher=fast_hasher(), clock=clock)
    store.add_user("alice", PASSWORD, ["staff"])
    store.set_password("alice", "second password")
    _, key = store.create_key("alice")
    token = store.create_session("alice")
    secrets = [PASSWORD, "second password", key, key.split("_", 2)[2], token]
    for _ in range(2):  # while open (WAL) and after closing (checkpointed)
        files = sorted(path.parent.glob(path.name + "*"))
        assert {stat.S_IMODE(f.stat().st_mode) for f in files} == {0o600}, files
        data = stored_bytes(path)
        assert b"alice" in data
        for secret in secrets:
            assert secret.encode() not in data, secret
        store.close()


def test_an_existing_file_is_made_private(path: Path) -> None:
    path.parent.mkdir(parents=True)
    path.touch(mode=0o644)
    path.chmod(0o644)
    UserStore(path, hasher=fast_hasher()).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_state_survives_reopening(path: Path, clock: Clock) -> None:
    with UserStore(path, hasher=fast_hasher(), clock=clock) as store:
        store.add_user("alice", PASSWORD, ["staff"], Role.ADMIN)
        token = store.create_session("alice")
        _, key = store.create_key("alice")
    with UserStore(path, hasher=fast_hasher(), clock=clock) as store:
        alice = User("alice", ("staff",), Role.ADMIN)
        assert store.list_users() == [alice]
        assert store.authenticate("alice", PASSWORD) == alice
        assert store.user_for_session(token) == alice
        assert store.user_for_key(key) == alice


def test_schema_version_and_a_newer_or_foreign_file(path: Path, tmp_path: Path) -> None:
    UserStore(path, hasher=fast_hasher()).close()
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    finally:
        db.close()
    with pytest.raises(AuthError, match="newer than this appliance"):
        UserStore(path, hasher=fast_hasher())
    garbage = tmp_path / "garbage.sqlite3"
    garbage.write_bytes(b"not a database at all" * 100)
    with pytest.raises(AuthError, match="cannot open the user database"):
        UserStore(garbage, hasher=fast_hasher())


def test_threads_share_one_store(store: UserStore) -> None:
    store.add_user("alice", PASSWORD, ["staff"])
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(10):
                token = store.create_session("alice")
                _, key = store.create_key("alice")
                assert store.user_for_session(token) is not None
                assert store.user_for_key(key) is not None
                assert store.authenticate("alice", PASSWORD) is not None
                store.end_session(token)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(store.list_keys("alice")) == 60


def test_a_write_while_another_process_writes_fails_whole_and_names_the_file(
    path: Path, clock: Clock
) -> None:
    with UserStore(path, hasher=fast_hasher(), clock=clock, busy_timeout_s=0.1) as users:
        users.add_user("alice", PASSWORD, ["staff"])
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        try:
            with pytest.raises(AuthError, match=f"user database {path}") as caught:
                users.set_groups("alice", ["hr"])
            assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert users.get("alice") == User("alice", ("staff",), Role.USER)
        assert users.set_groups("alice", ["hr"]).groups == ("hr",)
