"""`audit verify`, `audit head` and `audit export`: the audit trail from the command line.

Each command opens the log read-only and never creates it: a missing log holds 0 records.
"""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from appliance.audit import GENESIS_HASH, AuditLog, VerifyResult, write_csv, write_jsonl
from appliance.audit.log import chain_hash
from appliance.cli.common import EXIT_FAILED_FILES, print_json, settings_for_command, user_errors
from appliance.errors import AuditError

audit_app = typer.Typer(
    help="Check and export the audit trail of answered questions.", no_args_is_help=True
)

EXIT_CHAIN_BROKEN = EXIT_FAILED_FILES


class ExportFormat(StrEnum):
    csv = "csv"
    jsonl = "jsonl"


def _open_log(path: Path, key_file: Path | None = None) -> AuditLog | None:
    """The log at `path`, read-only (with its key file, if any), or None when there is none yet."""
    return AuditLog(path, read_only=True, key_file=key_file) if path.exists() else None


def parse_moment(value: str, *, end_of_day: bool = False) -> datetime:
    """An ISO date or datetime, naive meaning UTC; a bare date with `end_of_day` means the
    start of the next day (so `--until 2026-11-23` includes the whole of that day)."""
    text = value.strip()
    try:
        day = date.fromisoformat(text)
    except ValueError:
        pass
    else:
        start = datetime.combine(day, time(0), tzinfo=UTC)
        return start + timedelta(days=1) if end_of_day else start
    try:
        moment = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not a date or time: use 2026-11-23 or 2026-11-23T10:00[:00][Z]"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _parse_since(value: str) -> datetime:
    return parse_moment(value)


def _parse_until(value: str) -> datetime:
    return parse_moment(value, end_of_day=True)


@audit_app.command("verify")
def verify(
    expect_head: Annotated[
        str | None,
        typer.Option(
            "--expect-head",
            help="A head hash printed earlier by `audit head`: it must still be in the chain.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Check the audit log's hash chain, record by record.

    Prints "N records verified" and whether they are keyed with the audit key (HMAC-SHA256,
    APPLIANCE_AUDIT_KEY_FILE) and where that key is (exit 0), or the first record that was
    altered, deleted, inserted, reordered or rewritten without the key, or missing append-only
    guard triggers (exit 1). With --expect-head, a head hash kept elsewhere must still be in
    the chain, so a truncated or rewritten log is caught too.
    """
    with user_errors():
        settings = settings_for_command()
        key_file = settings.resolved_audit_key_file
        try:
            log = _open_log(settings.audit_path, key_file)
        except AuditError as exc:
            result = VerifyResult(False, 0, str(exc))
        else:
            result = _verify(log, expect_head)
    if as_json:
        print_json(
            {
                "ok": result.ok,
                "records": result.count,
                "message": result.message,
                "seq": result.seq,
                "keyed": result.keyed,
                "key_file": str(key_file),
            }
        )
    elif result.ok:
        typer.echo(result.message)
    else:
        typer.echo(f"audit log check failed: {result.message}", err=True)
    if not result.ok:
        raise typer.Exit(EXIT_CHAIN_BROKEN)


def _verify(log: AuditLog | None, expect_head: str | None) -> VerifyResult:
    if log is not None:
        try:
            return log.verify(expect_head)
        finally:
            log.close()
    if expect_head is None or chain_hash(expect_head) == GENESIS_HASH:
        return VerifyResult(True, 0, "0 records verified")
    return VerifyResult(
        False, 0, f"the log was truncated or rewritten: head {expect_head} not found (no log)"
    )


@audit_app.command("head")
def head(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Print the latest record's seq and chain hash.

    Keep the hash off this machine: `appliance audit verify --expect-head HASH` then detects a
    log truncated or rewritten since.
    """
    with user_errors():
        log = _open_log(settings_for_command().audit_path)
        try:
            latest = log.head() if log is not None else None
        finally:
            if log is not None:
                log.close()
    seq, chain_hash = latest if latest is not None else (0, GENESIS_HASH)
    if as_json:
        print_json({"seq": seq, "hash": chain_hash})
    elif latest is None:
        typer.echo(f"the audit log is empty (head {GENESIS_HASH})")
    else:
        typer.echo(f"seq:  {seq}")
        typer.echo(f"hash: {chain_hash}")


@audit_app.command("export")
def export(
    output_format: Annotated[
        ExportFormat, typer.Option("--format", help="csv (one row per answer) or jsonl.")
    ],
    since: Annotated[
        datetime | None,
        typer.Option(parser=_parse_since, help="From this date or time (UTC unless given)."),
    ] = None,
    until: Annotated[
        datetime | None,
        typer.Option(parser=_parse_until, help="Up to this date (inclusive) or time."),
    ] = None,
    user: Annotated[str | None, typer.Option(help="Only this user's questions.")] = None,
    document: Annotated[
        str | None,
        typer.Option(help="Only answers that retrieved this file, folder or document id."),
    ] = None,
    cited_only: Annotated[
        bool, typer.Option("--cited-only", help="With --document: only answers that cited it.")
    ] = False,
    text: Annotated[
        str | None, typer.Option(help="Only records whose question or answer contains this.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Write to this file instead of standard output.")
    ] = None,
) -> None:
    """Export audit records: who asked what, and which answers used a given document.

    Dates are ISO dates or times, UTC unless a zone is given; --until with a date includes
    that whole day. Filters combine; records come oldest first.
    """
    with user_errors():
        log = _open_log(settings_for_command().audit_path)
        try:
            records = (
                log.query(
                    since=since,
                    until=until,
                    user=user,
                    document=document,
                    text=text,
                    cited_only=cited_only,
                )
                if log is not None
                else []
            )
        finally:
            if log is not None:
                log.close()
        writer = write_csv if output_format is ExportFormat.csv else write_jsonl
        if out is None:
            writer(records, sys.stdout)
        else:
            with out.open("w", encoding="utf-8", newline="") as stream:
                count = writer(records, stream)
            typer.echo(f"{count} records written to {out}", err=True)
