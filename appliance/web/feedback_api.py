"""`/v1/feedback`: rate your own answers, and (auditors) review feedback into training pairs.

    POST /v1/feedback                 {"audit_id", "rating": "up"|"down", "correction"?}
    GET  /v1/feedback?status=open     your own feedback; an auditor sees everyone's
    POST /v1/feedback/{id}/approve    {"question"?, "answer"?, "note"?}   (auditors)
    POST /v1/feedback/{id}/reject     {"note"?}                           (auditors)

Every step is a record of the audit chain (appliance.audit.feedback). Rating an answer that
is not yours answers 404, as for an id that does not exist, and is recorded as a denial.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from appliance.audit.feedback import Feedback, FeedbackError, FeedbackItem
from appliance.auth import User
from appliance.errors import ApplianceError
from appliance.web.openai_api import OpenAIErrorRoute, error_response


class RateRequest(BaseModel):
    audit_id: str
    rating: Literal["up", "down"]
    correction: str | None = None


class ReviewRequest(BaseModel):
    question: str | None = None
    answer: str | None = None
    note: str | None = None


def _refused(error: ApplianceError) -> JSONResponse:
    """A FeedbackError with its status; any other (the audit log unwritable) is a 503."""
    status = error.status if isinstance(error, FeedbackError) else 503
    kind = {403: "permission_error", 404: "not_found_error", 409: "conflict_error"}
    default = "server_error" if status == 503 else "invalid_request_error"
    return error_response(status, str(error), kind.get(status, default))


def _item(item: FeedbackItem, status: int = 200) -> JSONResponse:
    return JSONResponse({"object": "feedback", **item.to_json()}, status_code=status)


def build_router(feedback: Feedback) -> APIRouter:
    router = APIRouter(prefix="/v1/feedback", route_class=OpenAIErrorRoute)

    @router.post("", response_model=None)
    def rate(body: RateRequest, request: Request) -> JSONResponse:
        user: User = request.state.user
        try:
            item = feedback.rate(user, body.audit_id, body.rating, body.correction, "api")
        except ApplianceError as exc:
            return _refused(exc)
        return _item(item, 201)

    @router.get("", response_model=None)
    def listing(request: Request, status: str | None = None) -> JSONResponse:
        user: User = request.state.user
        if status not in (None, "open", "approved", "rejected", "replaced"):
            return error_response(
                400, "status: use open, approved, rejected or replaced", "invalid_request_error"
            )
        items = feedback.items(
            status=status,  # type: ignore[arg-type]
            user=None if user.is_auditor else user.name,
        )
        data: list[dict[str, Any]] = [item.to_json() for item in items]
        return JSONResponse({"object": "list", "data": data})

    @router.post("/{feedback_id}/approve", response_model=None)
    def approve(feedback_id: str, body: ReviewRequest, request: Request) -> JSONResponse:
        return _review(request.state.user, feedback_id, True, body)

    @router.post("/{feedback_id}/reject", response_model=None)
    def reject(feedback_id: str, body: ReviewRequest, request: Request) -> JSONResponse:
        return _review(request.state.user, feedback_id, False, body)

    def _review(user: User, feedback_id: str, approve: bool, body: ReviewRequest) -> JSONResponse:
        try:
            item = feedback.review(
                user,
                feedback_id,
                approve,
                question=body.question,
                answer=body.answer,
                note=body.note,
                channel="api",
            )
        except ApplianceError as exc:
            return _refused(exc)
        return _item(item)

    return router
