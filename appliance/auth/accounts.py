"""Account value types and the rules for user names, groups, passwords and roles.

Nothing here touches storage: UserStore (appliance.auth.users) keeps these in SQLite, and the
SSO proxy (appliance.auth.proxy) builds users from request headers with the same rules.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from appliance.errors import AuthError

NAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")
NAME_RULE = "1 to 64 letters, digits, '.', '_', '@' or '-'"
MIN_PASSWORD_LENGTH = 8
MAX_GROUP_LENGTH = 128


class Role(StrEnum):
    USER = "user"
    ADMIN = "admin"
    AUDITOR = "auditor"


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...]
    role: Role

    @property
    def is_admin(self) -> bool:
        """Manages documents and users."""
        return self.role is Role.ADMIN

    @property
    def is_auditor(self) -> bool:
        """Reads the audit trail (admins do not, unless they are also given this role)."""
        return self.role is Role.AUDITOR


@dataclass(frozen=True)
class ApiKeyInfo:
    key_id: str
    user: str
    created_at: str
    last_used_at: str | None
    revoked_at: str | None


def valid_name(name: str) -> bool:
    return NAME.fullmatch(name) is not None


def normalise_groups(groups: Iterable[str]) -> tuple[str, ...]:
    """Stripped, deduplicated and sorted; empty names dropped."""
    return tuple(sorted({group.strip() for group in groups if group.strip()}))


def check_name(name: str) -> str:
    if not valid_name(name):
        raise AuthError(f"{name!r} is not a valid user name: use {NAME_RULE}")
    return name


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AuthError(f"the password is too short: use at least {MIN_PASSWORD_LENGTH} characters")
    return password


def check_groups(groups: Iterable[str]) -> tuple[str, ...]:
    """The normalised groups, else AuthError (none, or a name that cannot be a group)."""
    normalised = normalise_groups(groups)
    if not normalised:
        raise AuthError("at least one group is needed (e.g. everyone)")
    for group in normalised:
        if "," in group or not group.isprintable() or len(group) > MAX_GROUP_LENGTH:
            raise AuthError(
                f"{group!r} is not a valid group name: use up to {MAX_GROUP_LENGTH} printable "
                "characters without commas"
            )
    return normalised


def check_role(role: Role | str) -> Role:
    try:
        return Role(role)
    except ValueError:
        choices = ", ".join(r.value for r in Role)
        raise AuthError(f"{role!r} is not a role: use one of {choices}") from None
