"""SSO proxy headers: honoured from the trusted proxy's addresses only, and checked."""

from __future__ import annotations

import pytest
from starlette.datastructures import Headers

from appliance.auth import ProxyAuth, Role, User
from appliance.errors import ConfigError

HEADERS = {"X-Forwarded-User": "alice", "X-Forwarded-Groups": "hr, staff,hr", "X-Role": "admin"}


def make_proxy(trusted: list[str] | None = None) -> ProxyAuth:
    return ProxyAuth(
        "X-Forwarded-User",
        "X-Forwarded-Groups",
        "X-Role",
        ["10.0.0.0/24", "192.168.1.5", "fd00::/8"] if trusted is None else trusted,
    )


def test_honoured_from_a_trusted_network() -> None:
    proxy = make_proxy()
    assert proxy.enabled
    expected = User("alice", ("hr", "staff"), Role.ADMIN)
    for host in ("10.0.0.1", "10.0.0.254", "192.168.1.5", "fd00::1", "::ffff:10.0.0.9"):
        assert proxy.user(host, HEADERS) == expected, host


@pytest.mark.parametrize(
    "host", ["10.0.1.1", "192.168.1.6", "127.0.0.1", "fe80::1", "", None, "proxy.local", "x"]
)
def test_ignored_from_anywhere_else(host: str | None) -> None:
    assert make_proxy().user(host, HEADERS) is None


def test_disabled_without_a_header_or_trusted_addresses() -> None:
    no_header = ProxyAuth(None, "X-Forwarded-Groups", None, ["10.0.0.0/24"])
    nobody_trusted = ProxyAuth("X-Forwarded-User", None, None, [])
    for proxy in (no_header, nobody_trusted):
        assert not proxy.enabled
        assert proxy.user("10.0.0.1", HEADERS) is None
    assert not ProxyAuth("", None, None, ["10.0.0.1"]).enabled


def test_header_names_are_case_insensitive() -> None:
    proxy = ProxyAuth("x-forwarded-user", "X-FORWARDED-GROUPS", "x-role", ["10.0.0.1"])
    assert proxy.user("10.0.0.1", HEADERS) == User("alice", ("hr", "staff"), Role.ADMIN)
    lower = {k.lower(): v for k, v in HEADERS.items()}
    assert make_proxy().user("10.0.0.1", lower) == User("alice", ("hr", "staff"), Role.ADMIN)


def test_starlette_headers() -> None:
    raw = [(k.lower().encode(), v.encode()) for k, v in HEADERS.items()]
    assert make_proxy().user("10.0.0.1", Headers(raw=raw)) == User(
        "alice", ("hr", "staff"), Role.ADMIN
    )
    # A repeated header (a client's copy the proxy did not strip) is refused, not guessed at.
    repeated = [*raw, (b"x-forwarded-user", b"root")]
    assert make_proxy().user("10.0.0.1", Headers(raw=repeated)) is None
    groups_twice = [*raw, (b"x-forwarded-groups", b"admins")]
    assert make_proxy().user("10.0.0.1", Headers(raw=groups_twice)) is None


def test_missing_groups_mean_everyone_and_a_bad_role_means_user() -> None:
    proxy = make_proxy()
    assert proxy.user("10.0.0.1", {"X-Forwarded-User": "bob"}) == User(
        "bob", ("everyone",), Role.USER
    )
    headers = {"X-Forwarded-User": "bob", "X-Forwarded-Groups": " , ", "X-Role": "root"}
    assert proxy.user("10.0.0.1", headers) == User("bob", ("everyone",), Role.USER)
    headers = {"X-Forwarded-User": "bob", "X-Role": " Auditor "}
    assert proxy.user("10.0.0.1", headers) == User("bob", ("everyone",), Role.AUDITOR)


def test_without_role_or_groups_headers_configured() -> None:
    proxy = ProxyAuth("X-Forwarded-User", None, None, ["10.0.0.1"])
    assert proxy.user("10.0.0.1", HEADERS) == User("alice", ("everyone",), Role.USER)


@pytest.mark.parametrize("name", ["", "  ", "bad name", "DOMAIN\\alice", "x" * 65, "a\nb"])
def test_a_missing_or_invalid_user_name_is_refused(name: str) -> None:
    proxy = make_proxy()
    assert proxy.user("10.0.0.1", {**HEADERS, "X-Forwarded-User": name}) is None
    assert proxy.user("10.0.0.1", {"X-Forwarded-Groups": "hr"}) is None


def test_the_name_is_stripped() -> None:
    user = make_proxy().user("10.0.0.1", {"X-Forwarded-User": " j.doe@example.org "})
    assert user is not None and user.name == "j.doe@example.org"


@pytest.mark.parametrize("entry", ["10.0.0.0/33", "proxy.local", "", "10.0.0.300"])
def test_a_bad_trusted_entry_names_the_setting(entry: str) -> None:
    with pytest.raises(ConfigError, match="APPLIANCE_TRUSTED_PROXIES") as caught:
        ProxyAuth("X-Forwarded-User", None, None, ["10.0.0.1", entry])
    assert repr(entry) in str(caught.value)


def test_host_bits_and_ipv6_brackets_are_accepted() -> None:
    proxy = ProxyAuth("X-Forwarded-User", None, None, ["10.0.0.7/24"])
    assert proxy.is_trusted("10.0.0.200")
    assert ProxyAuth("X-Forwarded-User", None, None, ["::1"]).is_trusted("[::1]")
