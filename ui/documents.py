"""The documents tab (admins): upload and ingest with progress, list, delete."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import gradio as gr

from appliance.auth import User
from appliance.auth.accounts import check_groups
from appliance.auth.identity import Identifier
from appliance.errors import ApplianceError
from ingest.discovery import is_under
from ingest.service import IndexService, IngestJob
from ingest.uploads import UploadResult, save_uploads
from ingest.uploads import received_files as accept_received
from ui.access import require
from ui.render import plain_markdown

COLUMNS = ["Document", "Chunks", "Groups", "Ingested (UTC)", "Document id"]
POLL_S = 0.5


@dataclass(frozen=True)
class DocumentsConfig:
    gradio_uploads: Path  # where Gradio's upload route puts files: nothing else is taken
    uploads_dir: Path
    docs_dir: Path | None
    extensions: list[str]
    max_bytes: int


def _is_admin(user: User) -> bool:
    return user.is_admin


def received_files(
    files: list[dict[str, Any]], gradio_uploads: Path
) -> tuple[list[Path], list[str]]:
    """The files really uploaded through Gradio, and the names of the others.

    A file input's value is a path sent by the client. Gradio refuses paths outside its
    folders (see create_app); this handler also takes the raw value (preprocess=False), and
    ingest.uploads.received_files accepts only paths inside Gradio's upload folder.
    """
    raw = [str(item.get("path", "")) if isinstance(item, dict) else "" for item in files]
    return accept_received(raw, gradio_uploads)


def document_rows(index: IndexService) -> list[list[Any]]:
    return [
        [e.source, e.chunks, ", ".join(e.acl), e.ingested_at.replace("+00:00", ""), e.doc_id]
        for e in index.documents()
    ]


def job_text(job: IngestJob | None) -> str:
    if job is None:
        return ""
    label = plain_markdown(job.label)  # names files: plain text, never markup or a link
    if job.finished_at is None:
        return (
            f"Ingesting ({label}): {job.files_done}/{job.files_total} files, "
            f"{job.chunks_done} chunks…"
        )
    if job.error:
        return f"Ingestion failed ({label}): {plain_markdown(job.error)}"
    report = job.report
    if report is None:
        return ""
    lines = [
        f"Done ({label}): {report.new} new, {report.changed} changed, "
        f"{report.unchanged} unchanged, {report.deleted} removed; "
        f"{report.chunks_added} chunks added, {report.chunks_total} in the index."
    ]
    lines += [
        f"- **failed** {plain_markdown(f.path)}: {plain_markdown(f.error)}" for f in report.failed
    ]
    return "\n".join(lines)


@dataclass(frozen=True)
class _DocumentsView:
    files: gr.File
    groups: gr.Textbox
    ingest: gr.Button
    status: gr.Markdown
    table: gr.Dataframe
    chosen: gr.Dropdown
    delete: gr.Button
    refresh: gr.Button


def _documents_layout(config: DocumentsConfig) -> _DocumentsView:
    gr.Markdown("### Add documents")
    with gr.Row():
        files = gr.File(
            label="Files",
            file_count="multiple",
            file_types=config.extensions,
            type="filepath",
            elem_id="upload-files",
        )
        with gr.Column():
            groups = gr.Textbox(
                "everyone",
                label="Groups that may read them (comma-separated)",
                elem_id="upload-groups",
            )
            ingest = gr.Button("Upload and ingest", variant="primary", elem_id="upload-ingest")
    status = gr.Markdown(elem_id="ingest-status")
    gr.Markdown("### Documents in the index")
    table = gr.Dataframe(headers=COLUMNS, interactive=False, wrap=True, elem_id="documents-table")
    with gr.Row():
        chosen = gr.Dropdown(label="Document", choices=[], elem_id="delete-choice", scale=4)
        delete = gr.Button("Delete from the index", variant="stop", elem_id="delete-document")
        refresh = gr.Button("Refresh", elem_id="refresh-documents")
    return _DocumentsView(files, groups, ingest, status, table, chosen, delete, refresh)


def _choices(rows: list[list[Any]]) -> Any:
    return gr.update(choices=[r[0] for r in rows], value=None)


def _listing_handler(
    index: IndexService, identifier: Identifier
) -> Callable[[gr.Request], tuple[list[list[Any]], Any, str]]:
    def listing(request: gr.Request) -> tuple[list[list[Any]], Any, str]:
        require(identifier, request, _is_admin, "documents")
        rows = document_rows(index)
        return rows, _choices(rows), job_text(index.current or index.last)

    return listing


def _store_uploads(
    uploaded: list[dict[str, Any]] | None, group_text: str, config: DocumentsConfig
) -> tuple[list[str], UploadResult]:
    """The groups given and the files kept; gr.Error when there is nothing to ingest."""
    if not uploaded:
        raise gr.Error("Choose one or more files first.")
    try:
        acl = list(check_groups((group_text or "").split(",")))
    except ApplianceError as exc:
        raise gr.Error(str(exc)) from None
    incoming, foreign = received_files(uploaded, config.gradio_uploads)
    if foreign:
        raise gr.Error(f"Not files uploaded from this page: {', '.join(foreign)}.")
    try:
        return acl, save_uploads(incoming, config.uploads_dir, config.extensions, config.max_bytes)
    finally:
        # Gradio's copies would stay readable by path; the appliance keeps its own.
        for path in incoming:
            path.unlink(missing_ok=True)


def _progress_text(index: IndexService, label: str) -> str:
    running = index.current
    if running is None or running.label == label:
        return job_text(running) or "Starting the ingestion…"
    return f"Waiting for another ingestion to finish ({plain_markdown(running.label)})…"


def _summary(task: asyncio.Future[Any], index: IndexService) -> str:
    """What the finished ingestion did, or why it failed."""
    try:
        task.result()
    except ApplianceError as exc:
        return plain_markdown(f"Ingestion failed: {exc}")
    return job_text(index.last)


def _upload_handler(
    index: IndexService, identifier: Identifier, config: DocumentsConfig
) -> Callable[..., AsyncIterator[tuple[Any, ...]]]:
    async def upload(
        uploaded: list[dict[str, Any]] | None, group_text: str, request: gr.Request
    ) -> AsyncIterator[tuple[Any, ...]]:
        require(identifier, request, _is_admin, "documents", "upload")
        acl, saved = _store_uploads(uploaded, group_text, config)
        refused = [
            f"- **refused** {plain_markdown(f.path)}: {plain_markdown(f.error)}"
            for f in saved.refused
        ]
        if not saved.saved:
            yield "\n".join(refused), gr.skip(), gr.skip(), None
            return
        label = "upload: " + ", ".join(p.name for p in saved.saved)
        task = asyncio.ensure_future(
            anyio.to_thread.run_sync(index.ingest, saved.saved, acl, label)
        )
        while not task.done():
            yield _progress_text(index, label), gr.skip(), gr.skip(), gr.skip()
            await asyncio.sleep(POLL_S)
        rows = document_rows(index)
        yield "\n".join([_summary(task, index), *refused]), rows, _choices(rows), None

    return upload


def _remove_handler(
    index: IndexService, identifier: Identifier, config: DocumentsConfig
) -> Callable[[str | None, gr.Request], tuple[str, Any, Any]]:
    def remove(source: str | None, request: gr.Request) -> tuple[str, Any, Any]:
        require(identifier, request, _is_admin, "documents", f"delete {source or ''}".strip())
        if not source:
            raise gr.Error("Choose a document to delete.")
        if config.docs_dir is not None and is_under(source, config.docs_dir):
            raise gr.Error(
                "This document comes from the watched documents folder: delete the file there "
                "and the index follows within seconds."
            )
        try:
            removed = index.forget(source)
        except ApplianceError as exc:
            raise gr.Error(str(exc)) from None
        uploaded = Path(source)
        if uploaded.parent == config.uploads_dir and uploaded.is_file():
            uploaded.unlink()
        rows = document_rows(index)
        message = plain_markdown(f"Deleted {source} ({sum(e.chunks for e in removed)} chunks).")
        return message, rows, _choices(rows)

    return remove


def build_documents_tab(
    tab: gr.Tab, index: IndexService, identifier: Identifier, config: DocumentsConfig
) -> None:
    view = _documents_layout(config)
    listing = _listing_handler(index, identifier)
    outputs = [view.table, view.chosen, view.status]
    view.refresh.click(listing, None, outputs)
    view.ingest.click(
        _upload_handler(index, identifier, config),
        [view.files, view.groups],
        [view.status, view.table, view.chosen, view.files],
        concurrency_limit=1,
        preprocess=False,  # see received_files
    )
    remove = _remove_handler(index, identifier, config)
    view.delete.click(remove, [view.chosen], [view.status, view.table, view.chosen])
    tab.select(listing, None, outputs)
