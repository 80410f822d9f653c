"""Who is asking: local accounts, API keys, browser sessions, login limits, SSO proxy headers."""

from appliance.auth.accounts import ApiKeyInfo, Role, User, normalise_groups, valid_name
from appliance.auth.proxy import ProxyAuth
from appliance.auth.ratelimit import LoginLimiter
from appliance.auth.users import UserStore

__all__ = [
    "ApiKeyInfo",
    "LoginLimiter",
    "ProxyAuth",
    "Role",
    "User",
    "UserStore",
    "normalise_groups",
    "valid_name",
]
