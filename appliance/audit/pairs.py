"""Training pairs approved from feedback: their file format, the audience rule, the export,
and the `training-data` audit record of each export and each build of training data.

A pair carries the groups (ACL) of every document behind the answer it came from, looked up
in the index when the pair was approved. An adapter can memorise what it was trained on and
repeat it to anyone it is served to, so training data is built for an *audience*: a set of
groups G. The rule, enforced by `pairs export --groups` and `finetune build-data --groups`:

    a pair is kept only if every document behind it is readable by one of the groups in G;
    an adapter built for G may be served only to users who hold every group in G.

A user holding all of G may read every document the adapter learned from (each shares a
group with G), so serving it to them discloses nothing they could not read. The appliance
serves one adapter to every user: build its data for the group every user holds (the default,
`everyone`); an hr-only document then never reaches it.

build-data checks each document's groups twice: as recorded at approval, and as the index
holds them now (a file re-ingested with a narrower --acl keeps its doc_id); a document that
left the index is refused, its groups being unknown.

An answer a person wrote (a correction, not the model's own answer unchanged) may repeat what
its writer read, which no document records: such a pair is kept only if every group of the
user who asked and corrected it (their groups when they asked) is in G. The question is only
the prompt, never a training target (the loss is on the answer tokens).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from appliance.audit.log import AuditLog
from appliance.audit.records import AuditEntry
from appliance.domain import DocumentEntry
from appliance.errors import ApplianceError
from appliance.filehash import sha256_of_file


@dataclass(frozen=True)
class PairDocument:
    """A document behind a pair, and the groups that may read it (at approval)."""

    doc_id: str
    source: str
    acl: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"doc_id": self.doc_id, "source": self.source, "acl": list(self.acl)}

    @classmethod
    def from_json(cls, data: Any) -> PairDocument:
        """ValueError when `data` is not {"doc_id", "source", "acl": [group, ...]}."""
        if not isinstance(data, dict):
            raise ValueError("each document must be an object {doc_id, source, acl}")
        acl = data.get("acl")
        if not isinstance(acl, list) or not all(isinstance(g, str) for g in acl):
            raise ValueError("a document's 'acl' must be a list of group names")
        return cls(str(data["doc_id"]), str(data["source"]), tuple(acl))


@dataclass(frozen=True)
class Writer:
    """Who wrote a pair's answer: the user who asked and corrected it, with their groups then."""

    user: str
    groups: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"user": self.user, "groups": list(self.groups)}

    @classmethod
    def from_json(cls, data: Any) -> Writer | None:
        """None for null (the model's own answer); ValueError when not {"user", "groups"}."""
        if data is None:
            return None
        groups = data.get("groups") if isinstance(data, dict) else None
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            raise ValueError("'written_by' must be null or {user, groups: [group, ...]}")
        return cls(str(data.get("user", "")), tuple(groups))


# The groups the index gives a document now: one tuple per manifest entry at its source or
# with its content (doc_id); empty when it left the index.
CurrentGroups = Callable[[PairDocument], list[tuple[str, ...]]]


class DocumentLookup(Protocol):
    """appliance.manifest.Manifest fits."""

    def get(self, source: str) -> DocumentEntry | None: ...

    def by_doc_id(self, doc_id: str) -> list[DocumentEntry]: ...


def current_groups(manifest: DocumentLookup) -> CurrentGroups:
    def groups(document: PairDocument) -> list[tuple[str, ...]]:
        at_source = manifest.get(document.source)
        entries = [*([at_source] if at_source else []), *manifest.by_doc_id(document.doc_id)]
        return [entry.acl for entry in entries]

    return groups


@dataclass(frozen=True)
class TrainingPair:
    """An approved pair: `id` is the audit id of the answer it came from."""

    id: str
    question: str
    answer: str
    sources: tuple[str, ...]
    documents: tuple[PairDocument, ...]
    feedback_id: str
    review_id: str
    reviewer: str
    approved_at: str
    written_by: Writer | None = None  # None: the model's own answer, unchanged

    def to_json(self) -> dict[str, Any]:
        """One line of the file `finetune build-data` reads."""
        return {
            "id": self.id,
            "question": self.question,
            "answer": self.answer,
            "sources": list(self.sources),
            "audit_id": self.id,
            "feedback_id": self.feedback_id,
            "review_id": self.review_id,
            "reviewer": self.reviewer,
            "approved_at": self.approved_at,
            "documents": [document.to_json() for document in self.documents],
            "written_by": self.written_by.to_json() if self.written_by else None,
        }


def audience_refusal(
    pair_id: str,
    documents: Iterable[PairDocument],
    audience: Sequence[str],
    current: CurrentGroups | None = None,
) -> str | None:
    """Why the pair's documents may not train an adapter for `audience` (their groups at
    approval and, given `current`, in the index now), or None when they may."""
    allowed = set(audience)
    for document in documents:
        now = None if current is None else current(document)
        if now == []:
            return (
                f"pair {pair_id} left out: its answer came from {document.source} (document "
                f"{document.doc_id[:12]}), which is no longer in the index, so the groups that "
                "may read it now are unknown"
            )
        for acl, when in ((document.acl, ""), *((groups, " now") for groups in now or ())):
            if not allowed & set(acl):
                readers = ", ".join(acl) or "no group"
                return (
                    f"pair {pair_id} left out: its answer came from {document.source}, readable "
                    f"only by {readers}{when}, and the adapter's audience "
                    f"({', '.join(audience)}) holds none of these groups"
                )
    return None


def writer_refusal(pair_id: str, writer: Writer | None, audience: Sequence[str]) -> str | None:
    """Why a pair whose answer a person wrote may not train an adapter for `audience`."""
    beyond = sorted(set(writer.groups) - set(audience)) if writer else []
    if not writer or not beyond:
        return None
    return (
        f"pair {pair_id} left out: its answer was written by {writer.user}, who holds "
        f"{', '.join(beyond)} beyond the adapter's audience ({', '.join(audience)}), and may "
        "repeat what those groups read"
    )


def pair_refusal(pair: TrainingPair, audience: Sequence[str]) -> str | None:
    return audience_refusal(pair.id, pair.documents, audience) or writer_refusal(
        pair.id, pair.written_by, audience
    )


@dataclass(frozen=True)
class ExportReport:
    written: tuple[TrainingPair, ...]
    left_out: tuple[tuple[TrainingPair, str], ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "pairs": len(self.written),
            "ids": [pair.id for pair in self.written],
            "left_out": [{"id": pair.id, "reason": why} for pair, why in self.left_out],
        }


def export_pairs(
    pairs: Sequence[TrainingPair], out: Path, audience: Sequence[str] | None = None
) -> ExportReport:
    """Write the pairs (those `audience` may be trained on, when given) as JSONL to `out`."""
    written: list[TrainingPair] = []
    left_out: list[tuple[TrainingPair, str]] = []
    for pair in pairs:
        refusal = pair_refusal(pair, audience) if audience else None
        if refusal is None:
            written.append(pair)
        else:
            left_out.append((pair, refusal))
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(out.name + ".tmp")
    temporary.unlink(missing_ok=True)
    # Owner-only, as audit exports: without --groups the pairs hold restricted answers.
    private = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with open(private, "w", encoding="utf-8") as handle:
        for pair in written:
            handle.write(json.dumps(pair.to_json(), ensure_ascii=False) + "\n")
    temporary.replace(out)
    return ExportReport(tuple(written), tuple(left_out))


def record_training_data(
    audit: AuditLog,
    *,
    user: str,
    action: str,
    out: Path,
    audience: Sequence[str] | None,
    details: dict[str, Any],
    channel: str = "cli",
) -> str:
    """A `training-data` record: who wrote which file of pairs or examples, for which
    audience, from which pairs; its id. The file is already written: a failure here is an
    ApplianceError the caller reports (the file should then not be used)."""
    entry = AuditEntry(
        user=user,
        groups=tuple(audience or ()),
        question=f"{action}: {out}",
        retrieval={
            "action": action,
            "out": str(out.resolve()),
            "sha256": sha256_of_file(out),
            "audience": None if audience is None else list(audience),
            **details,
        },
        passages=(),
        model={},
        prompt_sha256=None,
        answer=None,
        timings={},
        outcome="training-data",
        channel=channel,
    )
    try:
        return audit.append(entry).id
    except ApplianceError as exc:
        raise ApplianceError(
            f"{out} was written but its audit record was not ({exc}): do not use it; "
            "fix the audit log and run the command again"
        ) from None
