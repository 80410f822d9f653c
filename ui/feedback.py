"""Feedback in the UI: thumbs up/down (and an optional correction) on each answer of the chat,
the feedback shown with its answer on the Audit page, and the auditors' review queue."""

from __future__ import annotations

import html
from typing import Any

import gradio as gr

from appliance.audit import AuditRecord
from appliance.audit.feedback import Feedback, FeedbackItem
from appliance.auth.identity import Identifier
from appliance.errors import ApplianceError
from ui.access import current_user, require

QUEUE_COLUMNS = ["Feedback id", "Time (UTC)", "User", "Rating", "Question", "Answer", "Correction"]
AnswerIds = dict[int, str]


def rated_answer(ids: AnswerIds, index: Any, liked: Any) -> tuple[str, str] | None:
    """(audit id, "up" or "down") of the chat message a thumb was clicked on; None when that
    message is no answer of the appliance (a question) or the click took a thumb back."""
    position = index[0] if isinstance(index, list | tuple) else index
    audit_id = ids.get(position) if isinstance(position, int) else None
    rating = {True: "up", False: "down", "Like": "up", "Dislike": "down"}.get(liked)
    if audit_id is None or rating is None:
        return None
    return audit_id, rating


def rating_note(item: FeedbackItem) -> str:
    said = "a correction" if item.correction else "no correction"
    thumb = "👍" if item.rating == "up" else "👎"
    return f"Thank you: {thumb} recorded with {said} (feedback {item.id}); a reviewer will see it."


def rate_handler(feedback: Feedback, identifier: Identifier) -> Any:
    def rate_answer(
        ids: AnswerIds, correction: str, data: gr.LikeData, request: gr.Request
    ) -> tuple[str, str]:
        user = current_user(identifier, request)
        rated = rated_answer(ids or {}, data.index, data.liked)
        if rated is None:
            return "", correction
        try:
            item = feedback.rate(user, rated[0], rated[1], correction, channel="ui")
        except ApplianceError as exc:
            raise gr.Error(str(exc)) from None
        return rating_note(item), ""

    return rate_answer


def feedback_html(records: list[AuditRecord]) -> str:
    """The ratings and reviews of one answer, for the Audit page."""
    if not records:
        return ""
    rows = []
    for record in records:
        details = record.entry.retrieval
        if record.entry.outcome == "feedback":
            what = f"rated {details.get('rating')}"
            text = details.get("correction") or ""
        else:
            what = f"review: {details.get('decision')}"
            text = record.entry.answer or details.get("note") or ""
        rows.append(
            f"<tr><td>{html.escape(record.created_at)}</td><td>{html.escape(record.entry.user)}"
            f"</td><td>{html.escape(what)}</td><td>{html.escape(str(text))}</td>"
            f"<td><code>{html.escape(record.id)}</code></td></tr>"
        )
    return (
        '<h4>Feedback and review</h4><table class="audit-feedback"><thead><tr><th>Time</th>'
        "<th>Who</th><th>What</th><th>Correction / training answer / note</th><th>Record</th>"
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def queue_row(item: FeedbackItem) -> list[str]:
    return [
        item.id,
        item.created_at,
        item.user,
        item.rating,
        item.question,
        item.answer or "",
        item.correction or "",
    ]


def _is_auditor(user: Any) -> bool:
    return bool(user.is_auditor)


def build_review_section(feedback: Feedback, identifier: Identifier) -> None:
    """Open feedback; pick one, edit the training pair, approve or reject it."""
    gr.Markdown("### Feedback to review")
    refresh = gr.Button("Show open feedback", elem_id="review-refresh")
    queue = gr.Dataframe(
        headers=QUEUE_COLUMNS, interactive=False, wrap=True, elem_id="review-queue"
    )
    feedback_id = gr.Textbox(label="Feedback id", elem_id="review-id")
    question = gr.Textbox(label="Training question", elem_id="review-question")
    answer = gr.Textbox(
        label="Training answer (the correction; edit it before approving)",
        lines=3,
        elem_id="review-answer",
    )
    note = gr.Textbox(label="Note (optional, kept in the audit trail)", elem_id="review-note")
    with gr.Row():
        approve = gr.Button("Approve as training pair", variant="primary", elem_id="review-ok")
        reject = gr.Button("Reject", elem_id="review-reject")
    outcome = gr.Markdown(elem_id="review-outcome")

    def review_queue(request: gr.Request) -> list[list[str]]:
        require(identifier, request, _is_auditor, "audit", "list feedback")
        return [queue_row(item) for item in feedback.items(status="open")]

    def pick_feedback(event: gr.SelectData, request: gr.Request) -> tuple[str, str, str]:
        require(identifier, request, _is_auditor, "audit", "open feedback")
        row = event.row_value if isinstance(event.row_value, list) else None
        item = feedback.item(str(row[0])) if row else None
        if item is None:
            return "", "", ""
        return item.id, item.question, item.suggested_answer()

    def decide(approved: bool, values: tuple[str, str, str, str], request: gr.Request) -> str:
        reviewer = require(identifier, request, _is_auditor, "audit", "review feedback")
        chosen, text, reply, remark = values
        try:
            item = feedback.review(
                reviewer, chosen, approved, question=text, answer=reply, note=remark, channel="ui"
            )
        except ApplianceError as exc:
            raise gr.Error(str(exc)) from None
        return f"Feedback {item.id}: **{item.status}** by {item.reviewer}."

    def approve_feedback(
        chosen: str, text: str, reply: str, remark: str, request: gr.Request
    ) -> str:
        return decide(True, (chosen, text, reply, remark), request)

    def reject_feedback(
        chosen: str, text: str, reply: str, remark: str, request: gr.Request
    ) -> str:
        return decide(False, (chosen, text, reply, remark), request)

    fields = [feedback_id, question, answer, note]
    refresh.click(review_queue, None, queue)
    queue.select(pick_feedback, None, [feedback_id, question, answer])
    approve.click(approve_feedback, fields, outcome).then(review_queue, None, queue)
    reject.click(reject_feedback, fields, outcome).then(review_queue, None, queue)
