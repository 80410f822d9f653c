"""Audit records as the assistant writes them, for tests of the log and what reads it."""

from __future__ import annotations

from typing import Any

from appliance.audit import AuditEntry, AuditPassage

DOC_A = "a" * 64


DOC_B = "b" * 64


def make_passage(rank: int, doc_id: str, source: str, *, cited: bool = False) -> AuditPassage:
    return AuditPassage(
        rank=rank,
        chunk_id=f"chunk-{rank}",
        doc_id=doc_id,
        source=source,
        page=rank,
        doc_sha256=doc_id,
        text_sha256=f"{rank:064x}",
        score=0.5 + rank / 1000,
        cited=cited,
    )


def make_entry(
    user: str = "alice",
    question: str = "How many days of leave?",
    answer: str | None = "Twenty-five days [1].",
    passages: tuple[AuditPassage, ...] = (),
    **changes: Any,
) -> AuditEntry:
    fields: dict[str, Any] = {
        "user": user,
        "groups": ("staff", "hr"),
        "question": question,
        "retrieval": {"k": 5, "score_threshold": 0.3, "collection": "documents"},
        "passages": passages,
        "model": {
            "path": "/models/gemma.gguf",
            "sha256": "c" * 64,
            "adapter_path": None,
            "adapter_sha256": None,
        },
        "prompt_sha256": "d" * 64,
        "answer": answer,
        "timings": {"retrieve_ms": 12.5, "first_token_ms": 80.0, "total_ms": 310.25},
        "outcome": "answered",
    }
    fields.update(changes)
    return AuditEntry(**fields)
