"""Who is asking: an API key, the SSO proxy's headers, or a browser login session."""

from __future__ import annotations

from collections.abc import Mapping

from appliance.auth import ProxyAuth, User, UserStore

SESSION_COOKIE = "appliance_session"


def bearer_token(headers: Mapping[str, str]) -> str | None:
    value = headers.get("authorization") or headers.get("Authorization") or ""
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class Identifier:
    """Resolves the user of a request afresh each time, so a removed user is out at once."""

    def __init__(self, users: UserStore, proxy: ProxyAuth) -> None:
        self.users = users
        self.proxy = proxy

    def user(
        self, headers: Mapping[str, str], cookies: Mapping[str, str], client_host: str | None
    ) -> User | None:
        token = bearer_token(headers)
        if token is not None:
            return self.users.user_for_key(token)
        if self.proxy.enabled:
            proxied = self.proxy.user(client_host, headers)
            if proxied is not None:
                return proxied
        session = cookies.get(SESSION_COOKIE)
        return self.users.user_for_session(session) if session else None
