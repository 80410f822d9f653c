"""A cap on request bodies, so a 5 MB "question" is refused at the door, not read and stored.

Questions, logins and API calls are small; file uploads (admins only, checked by the guard)
may be as large as `APPLIANCE_MAX_FILE_SIZE_MB`. A body over its cap gets 413 before the
route sees it: by its Content-Length when it declares one, else once that much has arrived.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# A 4,000-character question with a long conversation (the chat sends its history) fits.
REQUEST_BYTES = 1024 * 1024
UPLOAD_PATHS = ("/ui/gradio_api/upload", "/ui/upload")


class BodyTooLarge(HTTPException):
    """Raised while a route reads the body; an HTTPException so that FastAPI, which turns
    other errors met while parsing a body into 400, answers 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request is larger than {limit} bytes: send a shorter question")


class BodyLimit:
    def __init__(self, app: ASGIApp, *, max_upload_bytes: int) -> None:
        self.app = app
        self.max_upload_bytes = max_upload_bytes

    def limit_for(self, path: str) -> int:
        if path.startswith(UPLOAD_PATHS):
            return self.max_upload_bytes + 64 * 1024  # the multipart framing around the file
        return REQUEST_BYTES

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope.get("path", ""))
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _too_large(send, limit)
            return
        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except BodyTooLarge:
            if not started:
                await _too_large(send, limit)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _too_large(send: Send, limit: int) -> None:
    body: dict[str, Any] = {
        "error": {
            "message": f"the request is larger than {limit} bytes: send a shorter question",
            "type": "invalid_request_error",
            "code": 413,
        }
    }
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
