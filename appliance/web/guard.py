"""Every request needs a user, except health and the login form; every response gets
security headers. A pure ASGI middleware, so Gradio's own routes (files, uploads, queue,
websockets) pass through the same check as ours.

Gradio knows no roles and no owners: the guard keeps its upload routes for admins, refuses
its routes that fetch remote URLs, and binds each session hash (and each event id the queue
hands out) to the user who first used it, so nobody else reads or drives that session.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl, quote

import anyio
from starlette.datastructures import Headers
from starlette.requests import HTTPConnection, Request

from appliance.auth import User
from appliance.auth.identity import Identifier

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PUBLIC_PATHS = frozenset({"/healthz", "/login", "/logout"})
GRADIO_API = "/gradio_api/"
# Every Gradio route that takes files (or reports on an upload): only the documents page
# (admins) uploads.
UPLOAD_ROUTES = re.compile(r"/gradio_api/(?:upload|upload_progress|process_recording)/*$")
# Gradio fetches http(s) URLs named in its file routes, and proxies others: the appliance
# fetches nothing remote on anyone's behalf.
PROXY_ROUTE = re.compile(r"/gradio_api/proxy=")
FILE_ROUTE = re.compile(r"/gradio_api/file(?:=|/)(.*)$", re.DOTALL)
HAS_SCHEME = re.compile(r"^\s*(?:[A-Za-z][A-Za-z0-9+.-]*:|//|\\\\)")
# Routes keyed by a session hash or an event id in the path.
KEY_IN_PATH = re.compile(r"/gradio_api/(?:heartbeat|stream)/([^/]+)")
CALL_RESULT = re.compile(r"/gradio_api/call/.+/([^/]+)/*$")  # GET: the last part, an event id
# POSTs whose answer is {"event_id": ...}: the id is bound to the caller before anyone sees it.
ISSUES_EVENT = re.compile(r"/gradio_api/(?:queue/join|call/[^/]+(?:/[^/]+)?)/*$")
KEY_FIELDS = ("session_hash", "event_id")
MAX_KEYED_BODY = 32_000_000
MAX_SESSIONS = 200_000
# Keys one user may hold: beyond it their own oldest go, never another user's binding.
MAX_SESSIONS_PER_USER = 2_000

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


class SessionOwners:
    """Who first used each Gradio session hash or event id. A user holding more than
    `per_user` keys loses their own oldest (so nobody can push another user's binding out);
    past `limit` keys in all, the oldest go (Gradio itself has long dropped those sessions)."""

    def __init__(self, limit: int = MAX_SESSIONS, per_user: int = MAX_SESSIONS_PER_USER) -> None:
        self.limit = limit
        self.per_user = per_user
        self._owners: OrderedDict[str, str] = OrderedDict()
        self._held: dict[str, OrderedDict[str, None]] = {}
        self._lock = threading.Lock()

    def claim(self, key: str, user: str) -> bool:
        """True if `key` is `user`'s (now, or from before); False if another user's."""
        return self.claim_all([key], user)

    def claim_all(self, keys: Iterable[str], user: str) -> bool:
        """Claim every key, or none of them if one is another user's."""
        wanted = [key for key in keys if key]
        with self._lock:
            if any(self._owners.get(key, user) != user for key in wanted):
                return False
            held = self._held.setdefault(user, OrderedDict())
            for key in wanted:
                self._owners[key] = user
                self._owners.move_to_end(key)
                held[key] = None
                held.move_to_end(key)
            while len(held) > self.per_user:
                self._forget(held.popitem(last=False)[0])
            while len(self._owners) > self.limit:
                key, owner = self._owners.popitem(last=False)
                self._held.get(owner, OrderedDict()).pop(key, None)
            return True

    def _forget(self, key: str) -> None:
        self._owners.pop(key, None)


class AuthGuard:
    def __init__(
        self, app: ASGIApp, identifier: Identifier, sessions: SessionOwners | None = None
    ) -> None:
        self.app = app
        self.identifier = identifier
        self.sessions = sessions if sessions is not None else SessionOwners()

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
        refusal = _role_refusal(path, user)
        if refusal is not None:
            await self._denied(user, scope, refusal)
            await _forbid(scope, send, refusal)
            return
        scope.setdefault("state", {})["user"] = user
        if GRADIO_API in path:
            await self._gradio(scope, receive, send, user)
            return
        await self.app(scope, receive, send)

    async def _gradio(self, scope: Scope, receive: Receive, send: Send, user: User) -> None:
        """A Gradio API route: every session hash or event id it names must be the user's."""
        path, method = scope["path"], scope.get("method", "GET")
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), True)
        keys = [value for name, value in query if name in KEY_FIELDS]
        if _repeated(query):  # Gradio reads one; more only serve to crowd out others' keys
            await _forbid(scope, send, "one session hash and one event id per request", 400)
            return
        keys += KEY_IN_PATH.findall(path)
        if method == "GET" and (call := CALL_RESULT.search(path)):
            keys.append(call.group(1))
        if method == "POST" and not UPLOAD_ROUTES.search(path):
            body = await _read_body(receive, MAX_KEYED_BODY)
            if body is None:
                await _forbid(scope, send, "the request body is too large", 413)
                return
            body_keys = await _body_keys(scope, body)
            if body_keys is None or _repeated(body_keys):
                await _forbid(scope, send, "the request body cannot be read as one session", 400)
                return
            keys += [value for _, value in body_keys]
            receive = _replay(body, receive)
        if not self.sessions.claim_all(keys, user.name):
            await self._denied(user, scope, "this session belongs to another user")
            await _forbid(scope, send, "this session belongs to another user")
            return
        if method == "POST" and ISSUES_EVENT.search(path):
            send = self._binding_events(send, user.name)
        await self.app(scope, receive, send)

    async def _denied(self, user: User, scope: Scope, reason: str) -> None:
        action = f"{scope.get('method', 'GET')} request"
        await anyio.to_thread.run_sync(self.identifier.denied, user, action, scope["path"], reason)

    def _binding_events(self, send: Send, user: str) -> Send:
        """Bind the event id in the answer to `user` before the answer leaves."""
        held: list[Message] = []

        async def wrapped(message: Message) -> None:
            if message["type"] not in ("http.response.start", "http.response.body"):
                await send(message)
                return
            held.append(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                body = b"".join(m.get("body", b"") for m in held[1:])
                for event_id in _json_keys(body, ("event_id",)):
                    self.sessions.claim(event_id, user)
                for part in held:
                    await send(part)
                held.clear()

        return wrapped


def _role_refusal(path: str, user: User) -> str | None:
    if UPLOAD_ROUTES.search(path) and not user.is_admin:
        return "only admins upload files"
    if PROXY_ROUTE.search(path):
        return "the appliance fetches no remote URLs"
    file_route = FILE_ROUTE.search(path)
    if file_route and HAS_SCHEME.match(file_route.group(1)):
        return "the appliance fetches no remote URLs"
    return None


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


def _repeated(pairs: Iterable[tuple[str, str]]) -> bool:
    """Whether a key field is given two different values."""
    seen: dict[str, str] = {}
    return any(seen.setdefault(name, value) != value for name, value in pairs if name in KEY_FIELDS)


def _json_fields(body: bytes, fields: tuple[str, ...]) -> list[tuple[str, str]]:
    try:
        data = json.loads(body)
    except ValueError:
        return []
    if not isinstance(data, dict):
        return []
    return [(field, str(data[field])) for field in fields if data.get(field) is not None]


def _json_keys(body: bytes, fields: tuple[str, ...]) -> list[str]:
    return [value for _, value in _json_fields(body, fields)]


async def _body_keys(scope: Scope, body: bytes) -> list[tuple[str, str]] | None:
    """The session hash and event id of a JSON or form body, read as Gradio reads them;
    None for a form that cannot be parsed (refused rather than let through unchecked)."""
    content_type = Headers(scope=scope).get("content-type", "")
    if not content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        return _json_fields(body, KEY_FIELDS)

    async def once() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    request = Request(dict(scope), once)
    try:
        form = await request.form()
    except Exception:
        return None
    try:
        return [(k, str(v)) for k, v in form.multi_items() if k in KEY_FIELDS]
    finally:
        await form.close()


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


async def _forbid(scope: Scope, send: Send, message: str, status: int = 403) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 4403})
        return
    body = json.dumps({"error": {"message": message, "type": "permission_error", "code": status}})
    await _respond(send, status, body.encode(), [(b"content-type", b"application/json")])


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
