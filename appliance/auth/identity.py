"""Who is asking: an API key, the SSO proxy's headers, or a browser login session."""

from __future__ import annotations

from collections.abc import Mapping

from appliance.audit.denials import Denials
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

    def __init__(self, users: UserStore, proxy: ProxyAuth, denials: Denials | None = None) -> None:
        self.users = users
        self.proxy = proxy
        # Where every part that refuses a known user records it (None: tests of other parts).
        self.denials = denials

    def denied(self, user: User, action: str, target: str, reason: str) -> None:
        if self.denials is not None:
            self.denials.record(user.name, action, target, reason, groups=user.groups)

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
