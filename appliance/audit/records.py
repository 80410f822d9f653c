"""What one audit record holds, and its canonical form (the bytes its hash is taken over).

A record's body is canonical JSON (sorted keys, compact separators, UTF-8) of its sequence
number, id, time, previous hash and every entry field, with floats rounded so that parsing
and re-serialising a body gives the same text, hence the same hash.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any, Literal, cast, get_args

from appliance.errors import AuditError

# no-answer: the model said the passages do not hold the answer; unsupported: no sentence of
# the model's answer is supported by the passages it cites (see appliance.verification);
# started: a streamed answer is about to be shown (its completion record names this one);
# denied: a refused action (a role check, a lockout...), see appliance.audit.denials;
# adapter: an adapter registered, promoted, refused promotion or rolled back, see
# appliance.audit.adapters; feedback: a user rated their answer (optionally with a
# correction); review: a reviewer approved or rejected that feedback as a training pair;
# training-data: approved pairs exported, or training data built from them (see
# appliance.audit.feedback).
Outcome = Literal[
    "answered",
    "nothing-found",
    "retrieved",
    "refused",
    "error",
    "no-answer",
    "unsupported",
    "started",
    "denied",
    "adapter",
    "feedback",
    "review",
    "training-data",
]
OUTCOMES: tuple[str, ...] = get_args(Outcome)
BODY_FORMAT = 1
GENESIS_HASH = "0" * 64
FLOAT_DIGITS = 6


@dataclass(frozen=True)
class AuditPassage:
    rank: int
    chunk_id: str
    doc_id: str
    source: str
    page: int | None
    doc_sha256: str
    text_sha256: str
    score: float
    cited: bool
    # The passage's text was read by OCR from a scan (mean word confidence of its page, 0-100).
    ocr: bool = False
    ocr_confidence: float | None = None


@dataclass(frozen=True)
class AuditEntry:
    user: str
    groups: tuple[str, ...]
    question: str
    retrieval: dict[str, Any]
    passages: tuple[AuditPassage, ...]
    model: dict[str, Any]
    prompt_sha256: str | None
    answer: str | None
    timings: dict[str, float | None]
    outcome: Outcome
    error: str | None = None
    channel: str = "cli"
    # Per sentence of the answer: its citations, whether they support it, and the quote.
    sentences: tuple[dict[str, Any], ...] | None = None
    # The id of the "started" record written before a streamed answer was shown.
    started_id: str | None = None


@dataclass(frozen=True)
class AuditRecord:
    seq: int
    id: str
    created_at: str
    entry: AuditEntry
    prev_hash: str
    hash: str

    def to_json(self) -> dict[str, Any]:
        """Flat, stable keys: the record's place in the chain, then every entry field."""
        data: dict[str, Any] = {
            "seq": self.seq,
            "id": self.id,
            "created_at": self.created_at,
        }
        data.update(entry_to_dict(self.entry))
        data["prev_hash"] = self.prev_hash
        data["hash"] = self.hash
        return data

    @property
    def sources(self) -> tuple[str, ...]:
        """Distinct source paths of the retrieved passages, in rank order."""
        return tuple(dict.fromkeys(p.source for p in self.entry.passages))

    @property
    def cited_sources(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(p.source for p in self.entry.passages if p.cited))

    @property
    def doc_ids(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(p.doc_id for p in self.entry.passages))


def plain(value: Any) -> Any:
    """JSON-ready copy of `value`: floats rounded (non-finite become null), tuples as lists."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return round(value, FLOAT_DIGITS) if math.isfinite(value) else None
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    raise AuditError(f"cannot record a value of type {type(value).__name__} in the audit log")


def canonical_json(data: dict[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def body_hash(body_text: str, key: bytes | None = None) -> str:
    """The chain hash of a body: HMAC-SHA256 under the audit key, or plain SHA-256 without one
    (records written before the chain was keyed)."""
    data = body_text.encode("utf-8")
    if key is None:
        return hashlib.sha256(data).hexdigest()
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def passage_to_dict(passage: AuditPassage) -> dict[str, Any]:
    data = {
        "rank": passage.rank,
        "chunk_id": passage.chunk_id,
        "doc_id": passage.doc_id,
        "source": passage.source,
        "page": passage.page,
        "doc_sha256": passage.doc_sha256,
        "text_sha256": passage.text_sha256,
        "score": plain(float(passage.score)),
        "cited": bool(passage.cited),
    }
    if passage.ocr:  # recorded only for machine-read passages: older records stay as they were
        data["ocr"] = True
        data["ocr_confidence"] = passage.ocr_confidence
    return data


def entry_to_dict(entry: AuditEntry) -> dict[str, Any]:
    if entry.outcome not in OUTCOMES:
        raise AuditError(f"unknown audit outcome {entry.outcome!r}: expected one of {OUTCOMES}")
    data: dict[str, Any] = {
        "user": entry.user,
        "groups": list(entry.groups),
        "channel": entry.channel,
        "question": entry.question,
        "retrieval": plain(entry.retrieval),
        "passages": [passage_to_dict(p) for p in entry.passages],
        "model": plain(entry.model),
        "prompt_sha256": entry.prompt_sha256,
        "answer": entry.answer,
        "timings": plain(entry.timings),
        "outcome": entry.outcome,
        "error": entry.error,
        "sentences": None if entry.sentences is None else plain(list(entry.sentences)),
    }
    if entry.started_id is not None:  # absent from records of answers that were not streamed
        data["started_id"] = entry.started_id
    return data


def build_body(seq: int, record_id: str, created_at: str, prev_hash: str, entry: AuditEntry) -> str:
    """The canonical text a new record is stored as and hashed over."""
    body: dict[str, Any] = {
        "format": BODY_FORMAT,
        "seq": seq,
        "id": record_id,
        "created_at": created_at,
        "prev_hash": prev_hash,
    }
    body.update(entry_to_dict(entry))
    return canonical_json(body)


def _passage_from_dict(data: dict[str, Any]) -> AuditPassage:
    page = data.get("page")
    return AuditPassage(
        rank=int(data["rank"]),
        chunk_id=str(data["chunk_id"]),
        doc_id=str(data["doc_id"]),
        source=str(data["source"]),
        page=None if page is None else int(page),
        doc_sha256=str(data["doc_sha256"]),
        text_sha256=str(data["text_sha256"]),
        score=float(data["score"]),
        cited=bool(data["cited"]),
        ocr=bool(data.get("ocr", False)),
        ocr_confidence=data.get("ocr_confidence"),
    )


def record_from_body(body_text: str, record_hash: str) -> AuditRecord:
    """Parse a stored body; ValueError (or KeyError, TypeError) when it is not a valid body."""
    data = json.loads(body_text)
    if not isinstance(data, dict) or data.get("format") != BODY_FORMAT:
        raise ValueError("not an audit record body of a known format")
    if data["outcome"] not in OUTCOMES:
        raise ValueError(f"unknown outcome {data['outcome']!r}")
    entry = AuditEntry(
        user=str(data["user"]),
        groups=tuple(str(g) for g in data["groups"]),
        question=str(data["question"]),
        retrieval=dict(data["retrieval"]),
        passages=tuple(_passage_from_dict(p) for p in data["passages"]),
        model=dict(data["model"]),
        prompt_sha256=data.get("prompt_sha256"),
        answer=data.get("answer"),
        timings=dict(data["timings"]),
        outcome=cast(Outcome, data["outcome"]),
        error=data.get("error"),
        channel=str(data.get("channel", "cli")),
        sentences=_sentences(data.get("sentences")),
        started_id=data.get("started_id"),
    )
    return AuditRecord(
        seq=int(data["seq"]),
        id=str(data["id"]),
        created_at=str(data["created_at"]),
        entry=entry,
        prev_hash=str(data["prev_hash"]),
        hash=record_hash,
    )


def _sentences(value: Any) -> tuple[dict[str, Any], ...] | None:
    if value is None:  # records written before sentences were checked
        return None
    return tuple(dict(item) for item in value)


def document_rows(record: AuditRecord) -> set[tuple[str, str, int]]:
    """(doc_id, source, cited) once per document the record's passages came from."""
    cited: dict[tuple[str, str], int] = {}
    for passage in record.entry.passages:
        key = (passage.doc_id, passage.source)
        cited[key] = max(cited.get(key, 0), int(passage.cited))
    return {(doc_id, source, flag) for (doc_id, source), flag in cited.items()}
