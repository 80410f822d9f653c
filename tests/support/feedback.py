"""People and recorded answers for the feedback and training-pair tests."""

from __future__ import annotations

from dataclasses import dataclass

from appliance.audit import AuditEntry, AuditLog, AuditPassage

WIFI = ("a" * 64, "/docs/wifi.txt", ("everyone",))


PAY = ("b" * 64, "/docs/hr/pay.txt", ("hr",))


@dataclass(frozen=True)
class Person:
    name: str
    groups: tuple[str, ...] = ("everyone",)
    is_auditor: bool = False


ANN = Person("ann")


HUGO = Person("hugo", ("everyone", "hr"))


CAROL = Person("carol", is_auditor=True)


DAVE = Person("dave", is_auditor=True)


def passage(rank: int, doc: tuple[str, str, tuple[str, ...]], cited: bool) -> AuditPassage:
    doc_id, source, _ = doc
    return AuditPassage(rank, f"chunk-{rank}", doc_id, source, 1, doc_id, "c" * 64, 0.8, cited)


def answer(
    audit: AuditLog, user: Person, question: str, text: str, *docs: tuple[str, str, tuple[str, ...]]
) -> str:
    entry = AuditEntry(
        user=user.name,
        groups=user.groups,
        question=question,
        retrieval={"k": 3},
        passages=tuple(passage(n, doc, n == 1) for n, doc in enumerate(docs, start=1)),
        model={"path": "/models/m.gguf"},
        prompt_sha256="d" * 64,
        answer=text,
        timings={},
        outcome="answered",
        channel="api",
    )
    return audit.append(entry).id
