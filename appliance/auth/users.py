"""Local accounts, API keys and browser sessions, in one SQLite file in the data directory.

Passwords are stored as argon2id hashes. API keys and session tokens are random 256-bit
secrets of which only the SHA-256 is stored: a fast hash is right for high-entropy secrets,
and a stolen file then holds nothing that logs in. Every lookup reads the user's current
groups and role, so removing a user or changing their groups takes effect on the next request.

Writes run in one BEGIN IMMEDIATE transaction under a lock, so the web app's threads and a
CLI process change the file one after the other. Argon2 runs outside the lock.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from appliance.audit.log import utc_timestamp
from appliance.auth.accounts import (
    ApiKeyInfo,
    Role,
    User,
    check_groups,
    check_name,
    check_password,
    check_role,
    valid_name,
)
from appliance.errors import AuthError, ConfigError
from appliance.sqlite_schema import migrate, write_transaction

log = logging.getLogger(__name__)

KEY_PATTERN = re.compile(r"apl_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
MAX_TOKEN_LENGTH = 256

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE users (
            name TEXT PRIMARY KEY,
            password_hash TEXT NOT NULL,
            groups TEXT NOT NULL,
            role TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )""",
        "CREATE UNIQUE INDEX users_name_nocase ON users (name COLLATE NOCASE)",
        """CREATE TABLE api_keys (
            key_id TEXT PRIMARY KEY,
            user_name TEXT NOT NULL,
            secret_sha256 TEXT NOT NULL,
            created_at TEXT NOT NULL,
            last_used_at TEXT,
            revoked_at TEXT
        )""",
        "CREATE INDEX api_keys_user ON api_keys (user_name)",
        """CREATE TABLE sessions (
            token_sha256 TEXT PRIMARY KEY,
            user_name TEXT NOT NULL,
            created_at TEXT NOT NULL,
            expires_at TEXT NOT NULL
        )""",
        "CREATE INDEX sessions_user ON sessions (user_name)",
        "CREATE INDEX sessions_expires_at ON sessions (expires_at)",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

USER_COLUMNS = "u.name, u.groups, u.role"


def sha256_hex(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _create_private_file(path: Path) -> None:
    """Create `path` readable by its owner only (SQLite gives its WAL the same mode)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)


def _user(row: Sequence[Any]) -> User:
    name, groups, role = row
    return User(str(name), tuple(json.loads(groups)), Role(role))


def _key_info(row: Sequence[Any]) -> ApiKeyInfo:
    return ApiKeyInfo(*row)


def _unknown_user(name: str) -> AuthError:
    return AuthError(f"no user named {name!r}: list them with `appliance users list`")


class UserStore:
    def __init__(
        self,
        path: Path,
        session_hours: float = 12,
        *,
        hasher: PasswordHasher | None = None,
        clock: Callable[[], datetime] = _utc_now,
        busy_timeout_s: float = 10.0,
    ) -> None:
        """Open (creating and migrating) the user database at `path`."""
        if session_hours <= 0:
            raise ConfigError(f"APPLIANCE_SESSION_HOURS must be positive (got {session_hours})")
        self.path = path
        self._session = timedelta(hours=session_hours)
        self._hasher = hasher if hasher is not None else PasswordHasher()
        self._clock = clock
        self._lock = threading.Lock()
        self._dummy_lock = threading.Lock()
        self._dummy_hash: str | None = None
        try:
            _create_private_file(path)
            self._db = sqlite3.connect(
                path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise AuthError(
                f"cannot open the user database {path} ({exc}): check that the data directory "
                "is writable"
            ) from None
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._migrate()
        except sqlite3.Error as exc:
            self._db.close()
            raise AuthError(
                f"cannot open the user database {path} ({exc}): restore it from backup"
            ) from None

    def _migrate(self) -> None:
        migrate(self._db, MIGRATIONS, self.path)

    @contextmanager
    def _write(self, action: str) -> Iterator[sqlite3.Connection]:
        """One BEGIN IMMEDIATE transaction under the lock; a database failure is AuthError."""
        with self._lock:
            try:
                with write_transaction(self._db) as db:
                    yield db
            except sqlite3.Error as exc:
                raise AuthError(
                    f"cannot {action} in the user database {self.path} ({exc}): check the disk "
                    "space and the permissions of the data directory"
                ) from exc

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise AuthError(f"cannot read the user database {self.path}: {exc}") from None

    def _now(self) -> str:
        return utc_timestamp(self._clock())

    # Users

    def add_user(
        self, name: str, password: str, groups: Sequence[str], role: Role = Role.USER
    ) -> User:
        user = User(check_name(name), check_groups(groups), check_role(role))
        password_hash = self._hasher.hash(check_password(password))
        now = self._now()
        with self._write("add a user") as db:
            clash = db.execute(
                "SELECT name FROM users WHERE name = ? COLLATE NOCASE", (name,)
            ).fetchone()
            if clash is not None and clash[0] == name:
                raise AuthError(
                    f"user {name!r} already exists: change it with `appliance users set` "
                    "or `appliance users passwd`"
                )
            if clash is not None:
                raise AuthError(
                    f"user {name!r} differs only in case from the existing user {clash[0]!r}: "
                    "choose another name"
                )
            db.execute(
                "INSERT INTO users VALUES (?, ?, ?, ?, ?, ?)",
                (name, password_hash, json.dumps(user.groups), user.role.value, now, now),
            )
        log.info("user_added name=%s role=%s groups=%d", name, user.role, len(user.groups))
        return user

    def remove_user(self, name: str) -> None:
        """Remove the user, end their sessions and revoke their API keys."""
        now = self._now()
        with self._write("remove a user") as db:
            if db.execute("DELETE FROM users WHERE name = ?", (name,)).rowcount == 0:
                raise _unknown_user(name)
            db.execute("DELETE FROM sessions WHERE user_name = ?", (name,))
            db.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE user_name = ? AND revoked_at IS NULL",
                (now, name),
            )
        log.info("user_removed name=%s", name)

    def set_password(self, name: str, password: str) -> None:
        """Change the password and end the user's sessions (API keys stay valid)."""
        password_hash = self._hasher.hash(check_password(password))
        with self._write("change a password") as db:
            changed = db.execute(
                "UPDATE users SET password_hash = ?, updated_at = ? WHERE name = ?",
                (password_hash, self._now(), name),
            )
            if changed.rowcount == 0:
                raise _unknown_user(name)
            db.execute("DELETE FROM sessions WHERE user_name = ?", (name,))
        log.info("user_password_changed name=%s", name)

    def set_groups(self, name: str, groups: Sequence[str]) -> User:
        return self._update(name, "groups", json.dumps(check_groups(groups)))

    def set_role(self, name: str, role: Role) -> User:
        return self._update(name, "role", check_role(role).value)

    def _update(self, name: str, column: str, value: str) -> User:
        with self._write(f"change a user's {column}") as db:
            changed = db.execute(
                f"UPDATE users SET {column} = ?, updated_at = ? WHERE name = ?",
                (value, self._now(), name),
            )
            if changed.rowcount == 0:
                raise _unknown_user(name)
            row = db.execute("SELECT name, groups, role FROM users WHERE name = ?", (name,))
            user = _user(row.fetchone())
        log.info("user_changed name=%s column=%s", name, column)
        return user

    def get(self, name: str) -> User | None:
        rows = self._read("SELECT name, groups, role FROM users WHERE name = ?", (name,))
        return _user(rows[0]) if rows else None

    def list_users(self) -> list[User]:
        return [
            _user(row) for row in self._read("SELECT name, groups, role FROM users ORDER BY name")
        ]

    def authenticate(self, name: str, password: str) -> User | None:
        """The user if the password is theirs, else None.

        An unknown name is checked against a dummy hash, so the time taken does not tell which
        names exist. A hash made with older parameters is replaced on success.
        """
        dummy = self._dummy()
        rows = (
            self._read(
                "SELECT password_hash, name, groups, role FROM users WHERE name = ?", (name,)
            )
            if valid_name(name)
            else []
        )
        stored = str(rows[0][0]) if rows else dummy
        try:
            self._hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return None
        if not rows:
            return None
        if self._hasher.check_needs_rehash(stored):
            self._rehash(name, stored, password)
        return _user(rows[0][1:])

    def _dummy(self) -> str:
        with self._dummy_lock:
            if self._dummy_hash is None:
                self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(32))
            return self._dummy_hash

    def _rehash(self, name: str, stored: str, password: str) -> None:
        fresh = self._hasher.hash(password)
        try:
            with self._write("update a password hash") as db:
                db.execute(
                    "UPDATE users SET password_hash = ? WHERE name = ? AND password_hash = ?",
                    (fresh, name, stored),
                )
        except AuthError as exc:
            log.warning("user_rehash_failed name=%s error=%s", name, exc)
        else:
            log.info("user_rehashed name=%s", name)

    # API keys

    def create_key(self, user: str) -> tuple[ApiKeyInfo, str]:
        """A new key for `user`: its description, and the key itself, which is not kept."""
        key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
        info = ApiKeyInfo(key_id, user, self._now(), None, None)
        with self._write("create an API key") as db:
            if db.execute("SELECT 1 FROM users WHERE name = ?", (user,)).fetchone() is None:
                raise _unknown_user(user)
            db.execute(
                "INSERT INTO api_keys VALUES (?, ?, ?, ?, NULL, NULL)",
                (key_id, user, sha256_hex(secret), info.created_at),
            )
        log.info("api_key_created key_id=%s user=%s", key_id, user)
        return info, f"apl_{key_id}_{secret}"

    def list_keys(self, user: str | None = None) -> list[ApiKeyInfo]:
        sql = "SELECT key_id, user_name, created_at, last_used_at, revoked_at FROM api_keys"
        where, params = (" WHERE user_name = ?", (user,)) if user is not None else ("", ())
        return [
            _key_info(row)
            for row in self._read(f"{sql}{where} ORDER BY created_at, key_id", params)
        ]

    def revoke_key(self, key_id: str) -> None:
        with self._write("revoke an API key") as db:
            changed = db.execute(
                "UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?) WHERE key_id = ?",
                (self._now(), key_id),
            )
            if changed.rowcount == 0:
                raise AuthError(
                    f"no API key with id {key_id!r}: list them with `appliance keys list`"
                )
        log.info("api_key_revoked key_id=%s", key_id)

    def user_for_key(self, key: str) -> User | None:
        """The owner of a valid, unrevoked key, else None; records when the key was used."""
        match = KEY_PATTERN.fullmatch(key) if len(key) <= MAX_TOKEN_LENGTH else None
        if match is None:
            return None
        key_id, secret = match.groups()
        rows = self._read(
            f"SELECT k.secret_sha256, {USER_COLUMNS} FROM api_keys k "
            "JOIN users u ON u.name = k.user_name WHERE k.key_id = ? AND k.revoked_at IS NULL",
            (key_id,),
        )
        if not rows or not hmac.compare_digest(str(rows[0][0]), sha256_hex(secret)):
            return None
        try:
            with self._write("record an API key's use") as db:
                db.execute(
                    "UPDATE api_keys SET last_used_at = ? WHERE key_id = ?", (self._now(), key_id)
                )
        except AuthError as exc:
            log.warning("api_key_touch_failed key_id=%s error=%s", key_id, exc)
        return _user(rows[0][1:])

    # Sessions

    def create_session(self, user: str) -> str:
        """A new session token for `user` (keep it in a cookie; only its hash is stored)."""
        token = secrets.token_urlsafe(32)
        now = self._clock()
        with self._write("create a session") as db:
            if db.execute("SELECT 1 FROM users WHERE name = ?", (user,)).fetchone() is None:
                raise _unknown_user(user)
            db.execute("DELETE FROM sessions WHERE expires_at <= ?", (utc_timestamp(now),))
            db.execute(
                "INSERT INTO sessions VALUES (?, ?, ?, ?)",
                (sha256_hex(token), user, utc_timestamp(now), utc_timestamp(now + self._session)),
            )
        return token

    def user_for_session(self, token: str) -> User | None:
        """The session's user, or None when it is unknown or expired (expired ones are deleted)."""
        if not token or len(token) > MAX_TOKEN_LENGTH:
            return None
        digest = sha256_hex(token)
        rows = self._read(
            f"SELECT s.expires_at, {USER_COLUMNS} FROM sessions s "
            "JOIN users u ON u.name = s.user_name WHERE s.token_sha256 = ?",
            (digest,),
        )
        if not rows:
            return None
        if str(rows[0][0]) <= self._now():
            self._delete_session(digest)
            return None
        return _user(rows[0][1:])

    def end_session(self, token: str) -> None:
        if token and len(token) <= MAX_TOKEN_LENGTH:
            self._delete_session(sha256_hex(token))

    def _delete_session(self, digest: str) -> None:
        with self._write("end a session") as db:
            db.execute("DELETE FROM sessions WHERE token_sha256 = ?", (digest,))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> UserStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
