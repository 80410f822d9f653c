"""The documents tab (admins): upload and ingest with progress, list, delete."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import gradio as gr

from appliance.auth import User
from appliance.auth.accounts import check_groups
from appliance.errors import ApplianceError
from appliance.web.identity import Identifier
from appliance.web.uploads import save_uploads
from ingest.discovery import is_under
from ingest.service import IndexService, IngestJob
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
    folders (see create_app); this handler also takes the raw value (preprocess=False) and
    accepts only paths inside Gradio's upload folder, audit exports excluded.
    """
    root = gradio_uploads.resolve()
    received: list[Path] = []
    foreign: list[str] = []
    for item in files:
        raw = str(item.get("path", "")) if isinstance(item, dict) else ""
        path = Path(raw).resolve()
        if path.is_relative_to(root):
            received.append(path)
        else:
            foreign.append(Path(raw).name)
    return received, foreign


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


def build_documents_tab(
    tab: gr.Tab, index: IndexService, identifier: Identifier, config: DocumentsConfig
) -> None:
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

    def listing(request: gr.Request) -> tuple[list[list[Any]], Any, str]:
        require(identifier, request, _is_admin, "documents")
        rows = document_rows(index)
        running = index.current
        return (
            rows,
            gr.update(choices=[r[0] for r in rows], value=None),
            job_text(running or index.last),
        )

    async def upload(
        uploaded: list[dict[str, Any]] | None, group_text: str, request: gr.Request
    ) -> AsyncIterator[tuple[Any, ...]]:
        require(identifier, request, _is_admin, "documents", "upload")
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
            saved = save_uploads(incoming, config.uploads_dir, config.extensions, config.max_bytes)
        finally:
            # Gradio's copies would stay readable by path; the appliance keeps its own.
            for path in incoming:
                path.unlink(missing_ok=True)
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
            running = index.current
            if running is None or running.label == label:
                progress = job_text(running) or "Starting the ingestion…"
            else:
                progress = (
                    f"Waiting for another ingestion to finish ({plain_markdown(running.label)})…"
                )
            yield progress, gr.skip(), gr.skip(), gr.skip()
            await asyncio.sleep(POLL_S)
        try:
            task.result()
            summary = job_text(index.last)
        except ApplianceError as exc:
            summary = plain_markdown(f"Ingestion failed: {exc}")
        rows = document_rows(index)
        yield (
            "\n".join([summary, *refused]),
            rows,
            gr.update(choices=[r[0] for r in rows], value=None),
            None,
        )

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
        return message, rows, gr.update(choices=[r[0] for r in rows], value=None)

    outputs = [table, chosen, status]
    refresh.click(listing, None, outputs)
    ingest.click(
        upload,
        [files, groups],
        [status, table, chosen, files],
        concurrency_limit=1,
        preprocess=False,  # see received_files
    )
    delete.click(remove, [chosen], [status, table, chosen])
    tab.select(listing, None, outputs)
