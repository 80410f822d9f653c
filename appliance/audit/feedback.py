"""Feedback on answers and its review, as records of the audit chain (so `appliance audit
verify` covers every step, and the Audit page shows them with the answer they are about).

- `feedback`: a user rates one of *their own* answers up or down, with an optional correction.
  `retrieval` holds {record_id (the answer's audit id), rating, correction}.
- `review`: a reviewer approves the feedback as a training pair (question and answer as
  edited, and the groups of every document behind the answer, looked up in the index now) or
  rejects it. `retrieval` holds {record_id, feedback_id, decision, note, sources, documents}.

Reviewers are auditors: they already read every answer in the audit trail, so reviewing shows
them nothing new; nobody reviews their own feedback. Nothing is ever changed: the state is
read from the log. A newer rating of the same answer replaces an open older one; a feedback
is open until reviewed; the latest review of an answer decides its training pair.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from appliance.audit.log import AuditLog
from appliance.audit.pairs import PairDocument, TrainingPair, Writer
from appliance.audit.records import AuditEntry, AuditRecord
from appliance.domain import DocumentEntry
from appliance.errors import ApplianceError

RATINGS = ("up", "down")
# The outcomes of a record that answered (or declined to answer) a user's question.
RATABLE = ("answered", "no-answer", "unsupported", "nothing-found")
KINDS = ("feedback", "review")
MAX_TEXT_CHARS = 4000
MAX_ID_CHARS = 100  # audit ids are UUIDs; a longer one is never echoed back
CITATION = re.compile(r"\s*\[\d+\]")

Status = Literal["open", "approved", "rejected", "replaced"]
AclLookup = Callable[[str, str], tuple[str, ...] | None]


class FeedbackError(ApplianceError):
    """Feedback cannot be given or reviewed as asked; `status` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class Person(Protocol):
    """Who rates or reviews (appliance.auth.User fits)."""

    @property
    def name(self) -> str: ...

    @property
    def groups(self) -> tuple[str, ...]: ...

    @property
    def is_auditor(self) -> bool: ...


# (who, action, target, reason): appliance.auth.identity.Identifier.denied fits.
Denied = Callable[[Any, str, str, str], None]


@dataclass(frozen=True)
class FeedbackItem:
    id: str
    record_id: str
    user: str
    created_at: str
    channel: str
    rating: str
    correction: str | None
    question: str
    answer: str | None
    status: Status
    reviewer: str | None = None
    note: str | None = None

    def suggested_answer(self) -> str:
        """The answer to train on unless the reviewer edits it: the correction, else a well
        rated answer without its citation marks (build-data cites passages itself)."""
        if self.correction:
            return self.correction
        return plain_answer(self.answer or "") if self.rating == "up" else ""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "audit_id": self.record_id,
            "user": self.user,
            "created_at": self.created_at,
            "channel": self.channel,
            "rating": self.rating,
            "correction": self.correction,
            "question": self.question,
            "answer": self.answer,
            "status": self.status,
            "reviewer": self.reviewer,
            "note": self.note,
        }


def plain_answer(text: str) -> str:
    return CITATION.sub("", text).strip()


def manifest_acl(documents: Callable[[], Iterable[DocumentEntry]]) -> AclLookup:
    """The groups of the document the index holds at `source` with id `doc_id` (None: it
    changed or left the index since)."""

    def lookup(doc_id: str, source: str) -> tuple[str, ...] | None:
        for entry in documents():
            if entry.source == source and entry.doc_id == doc_id:
                return entry.acl
        return None

    return lookup


def _record_id(value: str | None) -> str:
    """`value` stripped; "" for an id no record can have (so errors never echo a huge one)."""
    text = (value or "").strip()
    return text if len(text) <= MAX_ID_CHARS else ""


def _text(value: str | None, field: str) -> str | None:
    text = (value or "").strip()
    if len(text) > MAX_TEXT_CHARS:
        raise FeedbackError(f"the {field} is too long: at most {MAX_TEXT_CHARS} characters")
    return text or None


class Feedback:
    def __init__(
        self, audit: AuditLog, acl: AclLookup | None = None, denied: Denied | None = None
    ) -> None:
        """`acl`: the index's groups of a document (needed to approve); `denied`: where
        refused attempts are recorded (appliance.audit.denials)."""
        self._audit = audit
        self._acl = acl
        self._denied = denied

    def _deny(self, person: Person, action: str, target: str, reason: str) -> None:
        if self._denied is not None:
            self._denied(person, action, target, reason)

    def rate(
        self,
        user: Person,
        record_id: str,
        rating: str,
        correction: str | None = None,
        channel: str = "api",
    ) -> FeedbackItem:
        """Record `user`'s rating of their answer `record_id`."""
        if rating not in RATINGS:
            raise FeedbackError(f"rating {rating!r}: use 'up' or 'down'")
        text = _text(correction, "correction")
        record_id = _record_id(record_id)
        record = self._audit.get(record_id) if record_id else None
        if record is not None and record.entry.user != user.name:
            self._deny(user, "rate an answer", record_id, "the answer is another user's")
        if record is None or record.entry.user != user.name:
            raise FeedbackError(
                f"no answer of yours has the audit id {record_id!r}: rate the audit_id "
                "returned with one of your own answers",
                404,
            )
        if record.entry.outcome not in RATABLE:
            raise FeedbackError(
                f"audit record {record_id} is not an answer (it is a {record.entry.outcome} "
                "record): rate the audit_id returned with the answer",
                400,
            )
        entry = AuditEntry(
            user=user.name,
            groups=user.groups,
            question=record.entry.question,
            retrieval={"record_id": record.id, "rating": rating, "correction": text},
            passages=(),
            model={},
            prompt_sha256=None,
            answer=None,
            timings={},
            outcome="feedback",
            channel=channel,
        )
        written = self._audit.append(entry)
        return _item(written, record, "open")

    def items(self, status: Status | None = None, user: str | None = None) -> list[FeedbackItem]:
        """Feedback, newest first: all, or of one status, or of one user."""
        found = _items(self._audit.by_outcome(KINDS), self._audit.get)
        return [
            item
            for item in reversed(found)
            if (status is None or item.status == status) and (user is None or item.user == user)
        ]

    def about(self, record_id: str) -> list[AuditRecord]:
        """The feedback and review records of one answer, oldest first."""
        return self._audit.by_outcome(KINDS, about=record_id)

    def item(self, feedback_id: str) -> FeedbackItem | None:
        wanted = _record_id(feedback_id)
        return next((i for i in self.items() if i.id == wanted), None) if wanted else None

    def review(
        self,
        reviewer: Person,
        feedback_id: str,
        approve: bool,
        *,
        question: str | None = None,
        answer: str | None = None,
        note: str | None = None,
        channel: str = "api",
    ) -> FeedbackItem:
        """Approve the feedback as a training pair (question and answer as edited), or reject it."""
        action = "approve feedback" if approve else "reject feedback"
        if not reviewer.is_auditor:
            self._deny(reviewer, action, feedback_id, "only auditors review feedback")
            raise FeedbackError("only auditors review feedback", 403)
        item = self.item(feedback_id or "")
        if item is None:
            raise FeedbackError(f"no feedback has the id {_record_id(feedback_id)!r}", 404)
        if item.user == reviewer.name:
            self._deny(reviewer, action, item.id, "own feedback")
            raise FeedbackError("you cannot review your own feedback: another auditor must", 403)
        if item.status == "replaced":
            raise FeedbackError(
                f"feedback {item.id} was replaced by a newer rating of the same answer: "
                "review that one",
                409,
            )
        details: dict[str, Any] = {
            "record_id": item.record_id,
            "feedback_id": item.id,
            "decision": "approved" if approve else "rejected",
            "note": _text(note, "note"),
        }
        pair_question, pair_answer = item.question, None
        if approve:
            pair_question, pair_answer = self._pair_text(item, question, answer)
            details.update(self._pair_details(item, pair_answer))
        entry = AuditEntry(
            user=reviewer.name,
            groups=reviewer.groups,
            question=pair_question,
            retrieval=details,
            passages=(),
            model={},
            prompt_sha256=None,
            answer=pair_answer,
            timings={},
            outcome="review",
            channel=channel,
        )
        self._audit.append(entry)
        reviewed = self.item(item.id)
        assert reviewed is not None
        return reviewed

    def _pair_text(
        self, item: FeedbackItem, question: str | None, answer: str | None
    ) -> tuple[str, str]:
        pair_question = _text(question, "question") or item.question
        pair_answer = plain_answer(_text(answer, "answer") or item.suggested_answer())
        if not pair_answer:
            raise FeedbackError(
                f"feedback {item.id} has no correction: write the answer the model should "
                "have given before approving it"
            )
        return pair_question, pair_answer

    def _pair_details(self, item: FeedbackItem, pair_answer: str) -> dict[str, Any]:
        """The documents behind the answer with their groups now, and the sources to cite."""
        record = self._audit.get(item.record_id)
        if record is None or self._acl is None:
            raise FeedbackError("the groups of the documents behind this answer are unknown")
        documents: list[PairDocument] = []
        for passage in record.entry.passages:
            key = (passage.doc_id, passage.source)
            if any((d.doc_id, d.source) == key for d in documents):
                continue
            acl = self._acl(*key)
            if acl is None:
                raise FeedbackError(
                    f"{passage.source} (behind this answer) changed or left the index since "
                    "the answer, so the groups that may read it are unknown: reject this "
                    "feedback (the user can ask again and rate the new answer)",
                    409,
                )
            documents.append(PairDocument(passage.doc_id, passage.source, tuple(acl)))
        unchanged = item.rating == "up" and pair_answer == plain_answer(item.answer or "")
        return {
            "sources": list(record.cited_sources) if unchanged else [],
            "documents": [d.to_json() for d in documents],
        }

    def pairs(self) -> list[TrainingPair]:
        """The approved training pairs, oldest approval first (one per answer)."""
        latest: dict[str, AuditRecord] = {}
        for record in self._audit.by_outcome(("review",)):
            latest.pop(str(record.entry.retrieval.get("record_id")), None)
            latest[str(record.entry.retrieval.get("record_id"))] = record
        return [
            _pair(record, self._audit.get(str(record.entry.retrieval.get("record_id"))))
            for record in latest.values()
            if record.entry.retrieval.get("decision") == "approved"
        ]


def _pair(record: AuditRecord, answer: AuditRecord | None) -> TrainingPair:
    """`answer`: the rated answer's record; its asker wrote the pair's answer unless it is
    the model's answer unchanged."""
    details = record.entry.retrieval
    pair_answer = record.entry.answer or ""
    written_by = None
    if answer is None:  # never in an append-only log; if so, no audience holds its groups
        written_by = Writer("an unknown user", ("unknown groups",))
    elif pair_answer != plain_answer(answer.entry.answer or ""):
        written_by = Writer(answer.entry.user, answer.entry.groups)
    return TrainingPair(
        id=str(details["record_id"]),
        question=record.entry.question,
        answer=pair_answer,
        sources=tuple(str(s) for s in details.get("sources", [])),
        documents=tuple(PairDocument.from_json(d) for d in details.get("documents", [])),
        feedback_id=str(details["feedback_id"]),
        review_id=record.id,
        reviewer=record.entry.user,
        approved_at=record.created_at,
        written_by=written_by,
    )


def _item(
    record: AuditRecord,
    answer: AuditRecord | None,
    status: Status,
    review: AuditRecord | None = None,
) -> FeedbackItem:
    details = record.entry.retrieval
    return FeedbackItem(
        id=record.id,
        record_id=str(details.get("record_id")),
        user=record.entry.user,
        created_at=record.created_at,
        channel=record.entry.channel,
        rating=str(details.get("rating")),
        correction=details.get("correction"),
        question=record.entry.question,
        answer=answer.entry.answer if answer is not None else None,
        status=status,
        reviewer=review.entry.user if review is not None else None,
        note=review.entry.retrieval.get("note") if review is not None else None,
    )


def _items(
    records: list[AuditRecord], get: Callable[[str], AuditRecord | None]
) -> list[FeedbackItem]:
    """Every feedback record with its state, oldest first."""
    feedback = [r for r in records if r.entry.outcome == "feedback"]
    latest = {str(r.entry.retrieval.get("record_id")): r.id for r in feedback}
    reviews: dict[str, AuditRecord] = {}
    for record in records:
        if record.entry.outcome == "review":
            reviews[str(record.entry.retrieval.get("feedback_id"))] = record
    items = []
    for record in feedback:
        review = reviews.get(record.id)
        status: Status
        if review is not None:
            approved = review.entry.retrieval.get("decision") == "approved"
            status = "approved" if approved else "rejected"
        else:
            newest = latest[str(record.entry.retrieval.get("record_id"))] == record.id
            status = "open" if newest else "replaced"
        answer = get(str(record.entry.retrieval.get("record_id")))
        items.append(_item(record, answer, status, review))
    return items
