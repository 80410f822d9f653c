"""`repair`: rebuild a damaged document index from the documents the manifest records."""

from __future__ import annotations

import os
import time
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from appliance.cli.common import EXIT_FAILED_FILES, print_json, settings_for_command, user_errors
from appliance.domain import DocumentEntry
from appliance.errors import ApplianceError
from appliance.manifest import Manifest
from appliance.settings import Settings
from appliance.store.check import IndexCheck, check_index

if TYPE_CHECKING:
    pass


def repair(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    drop_missing: Annotated[
        bool,
        typer.Option(
            "--drop-missing",
            help="Drop from the index the recorded files that are gone or are now links.",
        ),
    ] = False,
) -> None:
    """Rebuild the document index from the files the manifest records.

    For a damaged index (`appliance status --check` says what is wrong): the collection is
    started empty (the embedded store's damaged files are kept in <collection>.damaged until
    the rebuild completes) and every recorded file is parsed and embedded again with its
    document groups. The audit log, users and uploaded files are not touched; chunk ids are
    the same as before, so audit records still name them. When a recorded file is no longer
    on disk (an unmounted share?) or has become a symbolic link (never followed), nothing is
    touched unless --drop-missing: those files are then dropped and listed (exit code 1).
    """
    with user_errors():
        settings = settings_for_command()
        started = time.monotonic()
        present, gone = _recorded_files(settings, drop_missing)
        result, failed = _rebuild(settings, present, gone)
    summary: dict[str, Any] = {
        "documents": result.documents,
        "chunks": result.chunks,
        "missing_files": [e.source for e in gone],
        "failed": failed,
        "index": result.to_json(),
        "seconds": round(time.monotonic() - started, 1),
    }
    if as_json:
        print_json(summary)
    else:
        _print_summary(summary, result, gone, failed)
    if gone or failed or not result.ok:
        raise typer.Exit(EXIT_FAILED_FILES)


def _recorded_files(
    settings: Settings, drop_missing: bool
) -> tuple[list[DocumentEntry], list[DocumentEntry]]:
    """The recorded files still on disk, and those gone (refused unless --drop-missing)."""
    manifest = Manifest(settings.manifest_path)
    try:
        entries = list(manifest.entries())
    finally:
        manifest.close()
    present = [e for e in entries if _still_there(e.source)]
    gone = [e for e in entries if not _still_there(e.source)]
    if gone and not drop_missing:
        raise ApplianceError(
            f"{len(gone)} of the {len(entries)} recorded files are no longer on disk or "
            f"have become symbolic links (first: {gone[0].source}); nothing was changed. "
            "Mount or restore them and run `appliance repair` again, or run "
            "`appliance repair --drop-missing` to rebuild without them"
        )
    return present, gone


def _rebuild(
    settings: Settings, present: list[DocumentEntry], gone: list[DocumentEntry]
) -> tuple[IndexCheck, list[dict[str, str]]]:
    """Start the collection empty and ingest the present files again, by their groups; drop
    the gone ones; the index read back.

    The embedded store's damaged copy is discarded once the rebuilt index reads back whole.
    """
    from appliance.services.ingest import build_ingest_services

    failed: list[dict[str, str]] = []
    with build_ingest_services(settings, rebuild=True) as parts:
        for entry in gone:
            parts.index.manifest.remove(entry.source)
        for groups, paths in _by_groups(present).items():
            report = parts.pipeline.run(paths, list(groups))
            failed.extend({"path": f.path, "error": f.error} for f in report.failed)
        parts.index.store.flush()
        result = check_index(parts.index.store, parts.index.manifest.entries(), full=True)
    if result.ok and settings.qdrant_url is None:
        from appliance.store.edge import discard_damaged_copy

        discard_damaged_copy(settings.resolved_qdrant_path, settings.collection)
    return result, failed


def _print_summary(
    summary: dict[str, Any],
    result: IndexCheck,
    gone: list[DocumentEntry],
    failed: list[dict[str, str]],
) -> None:
    typer.echo(
        f"rebuilt: {result.documents} documents, {result.chunks} chunks "
        f"({summary['seconds']:.1f} s); audit log and document groups kept"
    )
    for entry in gone:
        typer.echo(
            f"missing: {entry.source} is no longer on disk, or is now a link: dropped",
            err=True,
        )
    for item in failed:
        typer.echo(f"failed: {item['path']}: {item['error']}", err=True)
    if not result.ok:
        typer.echo(f"error: {result.message()}", err=True)


def _still_there(source: str) -> bool:
    """A regular file at the recorded path itself: a link put in its place is not followed."""
    path = Path(source)
    return path.is_file() and not path.is_symlink() and os.path.realpath(path) == source


def _by_groups(entries: list[DocumentEntry]) -> dict[tuple[str, ...], list[Path]]:
    groups: dict[tuple[str, ...], list[Path]] = defaultdict(list)
    for entry in entries:
        groups[entry.acl].append(Path(entry.source))
    return dict(groups)
