"""`/v1`: the OpenAI chat-completions protocol, so existing clients and tools work.

Retrieval runs under the API key owner's groups, and every answer is audited exactly as in
the UI (channel "api"). The response adds `sources` (as `ask --json` shows them), `audit_id`,
`outcome` and `standalone_question`.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field

from appliance.answers import Answer, Finished, Rewritten, Sentence, SourcesFound, Turn
from appliance.auth import User
from appliance.chat import ChatEngine
from appliance.errors import ApplianceError, BusyError, QuestionError

MODEL_ID = "appliance-rag"


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(str(part.get("text", "")) for part in self.content)
        return self.content or ""


class ChatRequest(BaseModel):
    model: str = MODEL_ID
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False


def error_response(status: int, message: str, kind: str) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": message, "type": kind, "code": status}}, status_code=status
    )


def schema_message(error: RequestValidationError) -> str:
    """One line per problem, naming the field as a client wrote it: "messages: Field required"."""
    problems = []
    for problem in error.errors():
        where = ".".join(str(part) for part in problem.get("loc", ()) if part != "body")
        problems.append(f"{where or 'body'}: {problem.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(problems)


class OpenAIErrorRoute(APIRoute):
    """FastAPI answers a body that does not fit the schema with 422 in its own shape; OpenAI
    clients expect 400 with an `error` object, as every other refusal here is sent."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                return error_response(400, schema_message(exc), "invalid_request_error")

        return handle


def status_of(error: ApplianceError) -> tuple[int, str]:
    if isinstance(error, BusyError):
        return 429, "rate_limit_error"
    if isinstance(error, QuestionError):
        return 400, "invalid_request_error"
    return 503, "server_error"


def conversation(messages: list[ChatMessage]) -> tuple[str, list[Turn]]:
    """The last user message, and the earlier user/assistant pairs as history."""
    if messages[-1].role != "user" or not messages[-1].text().strip():
        raise QuestionError("the last message must be a non-empty 'user' message")
    history: list[Turn] = []
    pending: str | None = None
    for message in messages[:-1]:
        if message.role == "user":
            pending = message.text()
        elif message.role == "assistant" and pending is not None:
            history.append(Turn(pending, message.text()))
            pending = None
    return messages[-1].text(), history


def extras(answer: Answer, standalone: str) -> dict[str, Any]:
    return {
        "sources": [source.to_json() for source in answer.sources],
        "citations": list(answer.citations),
        "audit_id": answer.audit_id,
        "outcome": answer.outcome,
        "standalone_question": standalone,
        "model_identity": answer.to_json()["model"],
        "sentences": [check.to_json() for check in answer.sentences],
    }


def reply_text(answer: Answer) -> str:
    return answer.answer if answer.answer is not None else (answer.message or "")


def build_router(engine: ChatEngine) -> APIRouter:
    router = APIRouter(prefix="/v1", route_class=OpenAIErrorRoute)

    @router.get("/models")
    def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "appliance"}],
        }

    @router.post("/chat/completions", response_model=None)
    async def chat_completions(
        body: ChatRequest, request: Request
    ) -> JSONResponse | StreamingResponse:
        user: User = request.state.user
        try:
            text, history = conversation(body.messages)
        except QuestionError as exc:
            return error_response(400, str(exc), "invalid_request_error")
        events = engine.answer(user, text, history, channel="api", live=body.stream)
        try:
            # Everything that can refuse (rewrite, retrieval, the busy gate) happens before
            # the first byte, so refusals keep their HTTP status.
            standalone, first = await _until_first_content(events)
        except ApplianceError as exc:
            await events.aclose()
            status, kind = status_of(exc)
            return error_response(status, str(exc), kind)
        if body.stream:
            return StreamingResponse(
                _sse(events, first, standalone), media_type="text/event-stream"
            )
        try:
            answer = await _finish(events, first)
        except ApplianceError as exc:
            status, kind = status_of(exc)
            return error_response(status, str(exc), kind)
        finally:
            await events.aclose()
        return JSONResponse(_completion(answer, standalone))

    return router


async def _until_first_content(
    events: AsyncIterator[Any],
) -> tuple[str, SourcesFound | Finished]:
    standalone = ""
    async for event in events:
        if isinstance(event, Rewritten):
            standalone = event.standalone
        elif isinstance(event, SourcesFound | Finished):
            return standalone, event
    raise ApplianceError("the answer stream ended without an answer")


async def _finish(events: AsyncIterator[Any], first: SourcesFound | Finished) -> Answer:
    if isinstance(first, Finished):
        return first.answer
    async for event in events:
        if isinstance(event, Finished):
            return event.answer
    raise ApplianceError("the answer stream ended without an answer")


def _completion(answer: Answer, standalone: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{answer.audit_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": MODEL_ID,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply_text(answer)},
                "finish_reason": "stop",
            }
        ],
        **extras(answer, standalone),
    }


def _chunk(stream_id: str, delta: dict[str, Any], finish: str | None = None) -> str:
    payload = {
        "id": stream_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": MODEL_ID,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


async def _sse(
    events: AsyncGenerator[Any, None], first: SourcesFound | Finished, standalone: str
) -> AsyncIterator[str]:
    """Deltas whose concatenation is exactly the recorded answer (or the message shown instead).

    Only checked sentences are sent, and only once the answer has a supported sentence (the
    assistant releases them so): an answer that no passage supports is never streamed.
    """
    stream_id = f"chatcmpl-{int(time.time() * 1000)}"
    yield _chunk(stream_id, {"role": "assistant", "content": ""})
    sent = ""
    try:
        async for event in _prepend(first, events):
            if isinstance(event, Sentence):
                delta = f" {event.check.text}" if sent else event.check.text
                sent += delta
                yield _chunk(stream_id, {"content": delta})
            elif isinstance(event, Finished):
                final = reply_text(event.answer)
                rest = final[len(sent) :] if final.startswith(sent) else ""
                if rest:
                    yield _chunk(stream_id, {"content": rest})
                last = json.loads(_chunk(stream_id, {}, "stop")[len("data: ") :])
                last.update(extras(event.answer, standalone))
                yield f"data: {json.dumps(last, ensure_ascii=False)}\n\n"
    except ApplianceError as exc:
        status, kind = status_of(exc)
        error = {"error": {"message": str(exc), "type": kind, "code": status}}
        yield f"data: {json.dumps(error)}\n\n"
    finally:
        await events.aclose()
    yield "data: [DONE]\n\n"


async def _prepend(first: Any, rest: AsyncIterator[Any]) -> AsyncIterator[Any]:
    yield first
    async for event in rest:
        yield event
