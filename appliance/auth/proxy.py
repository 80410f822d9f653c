"""Users named by the organisation's SSO reverse proxy in request headers.

The headers are believed only from the proxy's own addresses (APPLIANCE_TRUSTED_PROXIES):
from anywhere else anyone could send them. The proxy must also strip any copy a client sent,
so a header that arrives more than once is refused rather than guessed at.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping, Sequence

from appliance.auth.accounts import Role, User, normalise_groups, valid_name
from appliance.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_GROUPS = ("everyone",)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_networks(entries: Sequence[str]) -> tuple[Network, ...]:
    """IP addresses or CIDR networks, else ConfigError naming the setting."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ConfigError(
                f"APPLIANCE_TRUSTED_PROXIES: {entry!r} is not an IP address or network "
                "(use e.g. 10.0.0.5, 10.0.0.0/24 or fd00::/8, comma-separated)"
            ) from None
    return tuple(networks)


def _address(host: str | None) -> Address | None:
    if not host:
        return None
    try:
        address = ipaddress.ip_address(host.strip().removeprefix("[").removesuffix("]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class _Ambiguous(Exception):
    """A header arrived more than once."""


def _header(headers: Mapping[str, str], name: str | None) -> str | None:
    """The one value of header `name` (any case), None when absent; _Ambiguous if repeated."""
    if name is None:
        return None
    getlist = getattr(headers, "getlist", None)
    if callable(getlist):  # Starlette's Headers: case-insensitive, every value of a name
        values = [str(value) for value in getlist(name)]
    else:
        wanted = name.lower()
        values = [value for key, value in headers.items() if key.lower() == wanted]
    if len(values) > 1:
        raise _Ambiguous(name)
    return values[0] if values else None


class ProxyAuth:
    def __init__(
        self,
        user_header: str | None,
        groups_header: str | None,
        role_header: str | None,
        trusted: Sequence[str],
    ) -> None:
        self.user_header = user_header or None
        self.groups_header = groups_header or None
        self.role_header = role_header or None
        self.trusted = parse_networks(trusted)

    @property
    def enabled(self) -> bool:
        return self.user_header is not None and bool(self.trusted)

    def is_trusted(self, client_host: str | None) -> bool:
        address = _address(client_host)
        return address is not None and any(address in network for network in self.trusted)

    def user(self, client_host: str | None, headers: Mapping[str, str]) -> User | None:
        """The user the proxy names, or None (disabled, untrusted address, no valid name)."""
        if not self.enabled or not self.is_trusted(client_host):
            return None
        try:
            name = _header(headers, self.user_header)
            groups = _header(headers, self.groups_header)
            role = _header(headers, self.role_header)
        except _Ambiguous as exc:
            log.warning("proxy_header_repeated header=%s client=%s", exc, client_host)
            return None
        if name is None:
            return None
        name = name.strip()
        if not valid_name(name):
            log.warning("proxy_user_invalid client=%s", client_host)
            return None
        return User(
            name, normalise_groups((groups or "").split(",")) or DEFAULT_GROUPS, _role(role)
        )


def _role(value: str | None) -> Role:
    if value is None:
        return Role.USER
    try:
        return Role(value.strip().lower())
    except ValueError:
        log.warning("proxy_role_unknown role=%r: taken as user", value[:32])
        return Role.USER
