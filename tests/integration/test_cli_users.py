"""`appliance users` and `appliance keys` in a child process, checked through the Python API
on the same file: what the web app will see after an administrator's command."""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from appliance.auth import Role, User, UserStore
from appliance.auth.users import KEY_PATTERN
from tests.integration.cli import cli_env, command

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery"


def run(data: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        command(*args),
        input=stdin,
        env=cli_env(data),
        cwd=data.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result


def listed(data: Path, *args: str) -> Any:
    result = run(data, *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def add(data: Path, name: str, *args: str, password: str = PASSWORD) -> None:
    result = run(data, "users", "add", name, *args, "--password-stdin", stdin=password + "\n")
    assert result.returncode == 0, result.stderr
    assert password not in result.stdout + result.stderr


def open_store(data: Path) -> UserStore:
    return UserStore(data / "users.sqlite3")


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


def test_listing_without_users_creates_nothing(data: Path) -> None:
    assert listed(data, "users", "list") == {"users": []}
    assert listed(data, "keys", "list") == {"keys": []}
    assert "no users yet" in run(data, "users", "list").stdout
    assert not data.exists()


def test_add_list_change_and_log_in(data: Path) -> None:
    add(data, "alice", "--groups", " hr,everyone,hr ", "--role", "admin")
    prompted = run(
        data, "users", "add", "bob", "--groups", "everyone", stdin=f"{PASSWORD}\n{PASSWORD}\n"
    )
    assert prompted.returncode == 0, prompted.stderr
    assert PASSWORD not in prompted.stdout + prompted.stderr
    assert stat.S_IMODE((data / "users.sqlite3").stat().st_mode) == 0o600
    assert listed(data, "users", "list") == {
        "users": [
            {"name": "alice", "role": "admin", "groups": ["everyone", "hr"]},
            {"name": "bob", "role": "user", "groups": ["everyone"]},
        ]
    }
    table = run(data, "users", "list").stdout.splitlines()
    assert table == ["alice  admin    everyone,hr", "bob    user     everyone"]
    changed = run(data, "users", "set", "bob", "--groups", "finance", "--role", "auditor")
    assert changed.returncode == 0, changed.stderr
    with open_store(data) as store:
        assert store.authenticate("alice", PASSWORD) == User(
            "alice", ("everyone", "hr"), Role.ADMIN
        )
        assert store.authenticate("bob", PASSWORD) == User("bob", ("finance",), Role.AUDITOR)
        assert store.authenticate("bob", "wrong password") is None


def test_mistyped_confirmation_adds_nobody(data: Path) -> None:
    result = run(
        data, "users", "add", "bob", "--groups", "everyone", stdin=f"{PASSWORD}\nsomething else\n"
    )
    assert result.returncode != 0
    assert listed(data, "users", "list") == {"users": []}


def test_refusals_are_messages(data: Path) -> None:
    add(data, "alice", "--groups", "everyone")
    cases = [
        (("users", "add", "alice", "--groups", "x", "--password-stdin"), "already exists"),
        (("users", "add", "bad name", "--groups", "x", "--password-stdin"), "not a valid user"),
        (("users", "add", "eve", "--groups", " , ", "--password-stdin"), "at least one group"),
        (("users", "add", "eve", "--groups", "x", "--password-stdin"), "too short"),
        (("users", "passwd", "ghost", "--password-stdin"), "no user named 'ghost'"),
        (("users", "remove", "ghost"), "no user named 'ghost'"),
        (("users", "set", "alice"), "nothing to change"),
        (("keys", "create", "ghost"), "no user named 'ghost'"),
        (("keys", "revoke", "0123456789abcdef"), "no API key"),
    ]
    for args, message in cases:
        result = run(data, *args, stdin="short\n")
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr, (args, result.stderr)
    assert run(data, "users", "add", "eve", "--password-stdin").returncode == 2  # no --groups
    assert run(data, "users", "set", "alice", "--role", "root").returncode == 2


def test_passwd_changes_the_password_and_ends_sessions(data: Path) -> None:
    add(data, "alice", "--groups", "everyone")
    with open_store(data) as store:
        token = store.create_session("alice")
    result = run(data, "users", "passwd", "alice", "--password-stdin", stdin="new password 2\n")
    assert result.returncode == 0, result.stderr
    assert "new password 2" not in result.stdout + result.stderr
    with open_store(data) as store:
        assert store.authenticate("alice", PASSWORD) is None
        assert store.authenticate("alice", "new password 2") is not None
        assert store.user_for_session(token) is None


def test_keys_create_list_revoke_and_user_removal(data: Path) -> None:
    add(data, "alice", "--groups", "everyone")
    add(data, "bob", "--groups", "everyone")
    created = run(data, "keys", "create", "alice")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    match = KEY_PATTERN.fullmatch(key)
    assert match is not None and created.stdout == key + "\n"
    assert "will not be shown again" in created.stderr and key not in created.stderr
    key_id = match.group(1)
    bob_key = run(data, "keys", "create", "bob").stdout.strip()

    with open_store(data) as store:
        assert store.user_for_key(key) == User("alice", ("everyone",), Role.USER)
    [entry] = listed(data, "keys", "list", "--user", "alice")["keys"]
    assert entry["key_id"] == key_id and entry["user"] == "alice"
    assert entry["last_used_at"] is not None and entry["revoked_at"] is None
    assert set(entry) == {"key_id", "user", "created_at", "last_used_at", "revoked_at"}
    table = run(data, "keys", "list").stdout
    assert key_id in table and "active" in table
    assert key.split("_", 2)[2] not in table + json.dumps(listed(data, "keys", "list"))

    assert run(data, "keys", "revoke", key_id).returncode == 0
    with open_store(data) as store:
        assert store.user_for_key(key) is None
        assert store.user_for_key(bob_key) is not None
    assert listed(data, "keys", "list", "--user", "alice")["keys"][0]["revoked_at"] is not None

    assert run(data, "users", "remove", "bob").returncode == 0
    with open_store(data) as store:
        assert store.user_for_key(bob_key) is None
        assert store.get("bob") is None
    assert [u["name"] for u in listed(data, "users", "list")["users"]] == ["alice"]
