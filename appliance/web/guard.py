"""Every request needs a user, except health and the login form; every response gets
security headers. A pure ASGI middleware, so Gradio's own routes (files, uploads, queue,
websockets) pass through the same check as ours.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import quote

from starlette.datastructures import Headers
from starlette.requests import HTTPConnection

from appliance.web.identity import Identifier

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PUBLIC_PATHS = frozenset({"/healthz", "/login", "/logout"})
# Gradio's upload and file routes know no roles: only the documents page (admins) uploads,
# and only auditors may fetch the audit exports that Gradio serves by path.
UPLOAD_ROUTE = "/gradio_api/upload"
FILE_ROUTE_MARK = "/file="
EXPORT_PREFIX = "audit-export-"

# Answers are rendered from untrusted text: no remote images, scripts or frames, whatever
# a document or the model manages to put into the page.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self' 'unsafe-inline' 'unsafe-eval'",  # Gradio compiles its HTML templates
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "font-src 'self' data:",
        "media-src 'self' blob:",
        "connect-src 'self'",
        "frame-src 'self'",
        "frame-ancestors 'none'",
        "form-action 'self'",
        "base-uri 'self'",
        "object-src 'none'",
    ]
)
SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
]


class AuthGuard:
    def __init__(self, app: ASGIApp, identifier: Identifier) -> None:
        self.app = app
        self.identifier = identifier

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        send = _with_security_headers(send)
        if path in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        connection = HTTPConnection(scope)
        client = connection.client
        user = self.identifier.user(
            connection.headers, connection.cookies, client.host if client else None
        )
        if user is None:
            await _refuse(scope, send, connection.headers)
            return
        if path.endswith(UPLOAD_ROUTE) and not user.is_admin:
            await _forbid(send, "only admins upload files")
            return
        if FILE_ROUTE_MARK in path and EXPORT_PREFIX in path and not user.is_auditor:
            await _forbid(send, "only auditors read audit exports")
            return
        scope.setdefault("state", {})["user"] = user
        await self.app(scope, receive, send)


def _with_security_headers(send: Send) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            present = {name.lower() for name, _ in message.get("headers", [])}
            extra = [(k, v) for k, v in SECURITY_HEADERS if k not in present]
            message["headers"] = [*message.get("headers", []), *extra]
        await send(message)

    return wrapped


async def _refuse(scope: Scope, send: Send, headers: Headers) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 4401})
        return
    wants_page = scope.get("method") == "GET" and "text/html" in headers.get("accept", "")
    if wants_page and not scope["path"].startswith(("/v1/", "/api/")):
        target = scope["path"] + (
            f"?{scope['query_string'].decode()}" if scope["query_string"] else ""
        )
        location = f"/login?next={quote(target, safe='')}"
        await _respond(send, 303, b"", [(b"location", location.encode())])
        return
    body = json.dumps(
        {
            "error": {
                "message": "log in, or send an API key as 'Authorization: Bearer KEY'",
                "type": "authentication_error",
                "code": 401,
            }
        }
    ).encode()
    await _respond(
        send,
        401,
        body,
        [
            (b"content-type", b"application/json"),
            (b"www-authenticate", b'Bearer realm="appliance"'),
        ],
    )


async def _forbid(send: Send, message: str) -> None:
    body = json.dumps({"error": {"message": message, "type": "permission_error", "code": 403}})
    await _respond(send, 403, body.encode(), [(b"content-type", b"application/json")])


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
