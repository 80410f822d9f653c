"""`finetune pairs`: review users' feedback headlessly and export the approved training pairs.

Every command reads the feedback from the audit log; approve, reject and export write their
own records to it (the operator named by --reviewer/--user, default the login name).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from appliance.audit import AuditLog
from appliance.audit.feedback import Feedback, manifest_acl
from appliance.audit.pairs import export_pairs, record_training_data
from appliance.cli.ask_commands import JsonOption, _default_user, parse_groups
from appliance.cli.common import print_json, settings_for_command, user_errors
from appliance.errors import ConfigError
from appliance.services import open_audit_log
from appliance.settings import Settings

if TYPE_CHECKING:
    from appliance.finetune.data import BuildReport

pairs_app = typer.Typer(
    help="Feedback turned into training pairs: list, approve, reject, export.",
    no_args_is_help=True,
)
STATUSES = ("open", "approved", "rejected", "replaced", "all")
NoteOption = Annotated[str | None, typer.Option("--note", help="Why (kept in the audit trail).")]
ReviewerOption = Annotated[
    str | None,
    typer.Option("--reviewer", help="Who reviews (audit log). Default: login name."),
]


@dataclass(frozen=True)
class Operator:
    """Whoever runs the CLI on the data directory, with its audit key: may review."""

    name: str
    groups: tuple[str, ...] = ()
    is_auditor: bool = True


def _open_log(settings: Settings, read_only: bool = False) -> AuditLog:
    if read_only and not settings.audit_path.exists():
        raise ConfigError(f"no audit log at {settings.audit_path}: nothing was answered yet")
    return open_audit_log(settings, read_only=read_only)


@pairs_app.command("list")
def list_feedback(
    status: Annotated[
        str, typer.Option("--status", help="open, approved, rejected, replaced or all.")
    ] = "open",
    as_json: JsonOption = False,
) -> None:
    """List users' feedback on their answers, newest first (default: open, to review)."""
    with user_errors():
        if status not in STATUSES:
            raise ConfigError(f"--status {status!r}: use one of {', '.join(STATUSES)}")
        with _open_log(settings_for_command(), read_only=True) as audit:
            items = Feedback(audit).items(None if status == "all" else status)  # type: ignore[arg-type]
    if as_json:
        print_json([item.to_json() for item in items])
        return
    for item in items:
        typer.echo(f"{item.id}  {item.created_at}  {item.user}  {item.rating}  {item.status}")
        typer.echo(f"  question:   {item.question}")
        typer.echo(f"  answer:     {item.answer or ''}")
        if item.correction:
            typer.echo(f"  correction: {item.correction}")
    if not items:
        typer.echo(f"no {status} feedback", err=True)


def _review(
    feedback_id: str,
    approve: bool,
    reviewer: str | None,
    text: tuple[str | None, str | None, str | None],
) -> None:
    """`text`: the pair's question and answer as edited, and the note."""
    from appliance.manifest import Manifest

    with user_errors():
        settings = settings_for_command()
        manifest = Manifest(settings.manifest_path)
        try:
            with _open_log(settings) as audit:
                feedback = Feedback(audit, manifest_acl(manifest.entries))
                item = feedback.review(
                    Operator(reviewer or _default_user()),
                    feedback_id,
                    approve,
                    question=text[0],
                    answer=text[1],
                    note=text[2],
                    channel="cli",
                )
        finally:
            manifest.close()
    typer.echo(f"feedback {item.id}: {item.status} by {item.reviewer}")


@pairs_app.command("approve")
def approve(
    feedback_id: Annotated[str, typer.Argument(help="The feedback id (`pairs list`).")],
    question: Annotated[
        str | None, typer.Option("--question", help="Training question. Default: as asked.")
    ] = None,
    answer: Annotated[
        str | None,
        typer.Option(
            "--answer", help="Training answer. Default: the correction, else the answer rated up."
        ),
    ] = None,
    note: NoteOption = None,
    reviewer: ReviewerOption = None,
) -> None:
    """Approve feedback as a training pair.

    The groups of the documents behind the answer are read from the index now and travel
    with the pair."""
    _review(feedback_id, True, reviewer, (question, answer, note))


@pairs_app.command("reject")
def reject(
    feedback_id: Annotated[str, typer.Argument(help="The feedback id (`pairs list`).")],
    note: NoteOption = None,
    reviewer: ReviewerOption = None,
) -> None:
    """Reject feedback: it makes no training pair."""
    _review(feedback_id, False, reviewer, (None, None, note))


@pairs_app.command("export")
def export(
    out: Annotated[Path, typer.Argument(help="JSONL file for `finetune build-data`.")],
    groups: Annotated[
        str | None,
        typer.Option(
            "--groups",
            help="The adapter's audience (comma-separated): leave out pairs whose answer came "
            "from a document none of these groups may read, or was written by a user holding "
            "other groups. Default: export all.",
        ),
    ] = None,
    user: Annotated[
        str | None, typer.Option("--user", help="Who exports (audit log). Default: login name.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Write the approved training pairs as `finetune build-data` reads them.

    Each line holds the question, the approved answer, the audit id of the answer it came
    from, the documents behind that answer with the groups that may read them, and who wrote
    the answer when a user did (with their groups). build-data --groups checks them again,
    against the index's groups now. The export is recorded in the audit trail.
    """
    with user_errors():
        settings = settings_for_command()
        audience = parse_groups(groups) if groups is not None else None
        with _open_log(settings) as audit:
            report = export_pairs(Feedback(audit).pairs(), out, audience)
            record = record_training_data(
                audit,
                user=user or _default_user(),
                action="export pairs",
                out=out,
                audience=audience,
                details=report.to_json(),
            )
    summary: dict[str, Any] = {**report.to_json(), "out": str(out), "audit_id": record}
    if as_json:
        print_json(summary)
        return
    typer.echo(f"{summary['pairs']} approved pairs written to {out} (audit record {record})")
    for left in summary["left_out"]:
        typer.echo(f"  {left['reason']}", err=True)


def record_build(
    settings: Settings, pairs: Path, out: Path, audience: tuple[str, ...], report: BuildReport
) -> str:
    """The `training-data` record of one `build-data` run."""
    with _open_log(settings) as audit:
        return record_training_data(
            audit,
            user=_default_user(),
            action="build training data",
            out=out,
            audience=audience,
            details={
                "pairs_file": str(pairs.resolve()),
                "examples": [example.id for example in report.examples],
                "left_out": left_out(report),
            },
        )


def left_out(report: BuildReport) -> list[dict[str, str]]:
    """Every pair that made no example, and why."""
    kept = {example.id for example in report.examples}
    reasons = [
        *report.restricted,
        *[
            (pair, "unsupported: no retrieved passage contains the answer")
            for pair in report.unsupported
        ],
        *[(pair, "nothing found above the score threshold") for pair in report.nothing_found],
        *report.refused,
    ]
    return [{"id": pair.id, "reason": why} for pair, why in reasons if pair.id not in kept]
