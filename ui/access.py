"""Who is using the UI, checked again on every event: hiding a tab is not access control."""

from __future__ import annotations

from collections.abc import Callable

import gradio as gr

from appliance.auth import User
from appliance.auth.identity import Identifier


def current_user(identifier: Identifier, request: gr.Request | None) -> User:
    raw = getattr(request, "request", None) if request is not None else None
    if raw is None:
        raise gr.Error("Your session has ended: reload the page and sign in again.")
    client = getattr(raw, "client", None)
    user = identifier.user(raw.headers, raw.cookies, client.host if client else None)
    if user is None:
        raise gr.Error("Your session has ended: reload the page and sign in again.")
    return user


def require(
    identifier: Identifier,
    request: gr.Request | None,
    allowed: Callable[[User], bool],
    page: str,
    action: str = "open",
) -> User:
    """The user, if their role may use `page`; else the refusal is recorded and shown."""
    user = current_user(identifier, request)
    if not allowed(user):
        reason = f"the {page} page is not available to the role {user.role}"
        identifier.denied(user, f"{page}: {action}", f"the {page} page", reason)
        raise gr.Error(f"The {page} page is not available to your role ({user.role}).")
    return user
