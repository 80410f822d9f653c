"""The audit tab (auditors): search records, open one, answers that used a document,
export, and the state of the hash chain."""

from __future__ import annotations

import html
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import gradio as gr

from appliance.audit import (
    AuditEntry,
    AuditLog,
    AuditPassage,
    AuditRecord,
    write_csv,
    write_jsonl,
)
from appliance.audit.export import EXPORT_PREFIX, EXPORTS_URL
from appliance.audit.feedback import Feedback
from appliance.auth import User
from appliance.auth.identity import Identifier
from ui.access import require
from ui.feedback import build_review_section, feedback_html
from ui.render import json_block, ocr_note

COLUMNS = ["Record id", "Time (UTC)", "User", "Channel", "Outcome", "Question", "Documents"]
PAGE_SIZE = 200
EXPORT_LIMIT = 100_000
EXPORT_KEEP_S = 600


def _is_auditor(user: User) -> bool:
    return user.is_auditor


def parse_day(text: str, field: str) -> datetime | None:
    text = (text or "").strip()
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise gr.Error(
            f"{field}: '{text}' is not a date: write it as YYYY-MM-DD or YYYY-MM-DDTHH:MM"
        ) from None


def record_row(record: AuditRecord) -> list[Any]:
    entry = record.entry
    question = entry.question if len(entry.question) <= 120 else entry.question[:120] + "…"
    names = ", ".join(Path(s).name for s in record.sources)
    return [record.id, record.created_at, entry.user, entry.channel, entry.outcome, question, names]


def sentences_html(sentences: tuple[dict[str, Any], ...] | None) -> str:
    """Each sentence the model wrote, whether its citations support it, and the quote."""
    if not sentences:
        return ""
    rows = []
    for sentence in sentences:
        supported = {True: "yes", False: "NO", None: "nothing to check"}.get(
            sentence.get("supported"), "?"
        )
        if sentence.get("attributed"):
            supported += " (citation chosen by the appliance)"
        quote = sentence.get("quote") or {}
        where = f"[{quote['n']}] {quote['start']}-{quote['end']}: " if quote else ""
        rows.append(
            f"<tr><td>{html.escape(str(sentence.get('text', '')))}</td>"
            f"<td>{html.escape(supported)}</td>"
            f"<td>{html.escape(where + str(quote.get('text', '')))}</td></tr>"
        )
    return (
        '<h4>Sentences checked against their citations</h4><table class="audit-sentences">'
        "<thead><tr><th>Sentence</th><th>Supported</th><th>Quote (passage, characters)</th>"
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def passage_place(passage: AuditPassage) -> str:
    """The document, page, and whether OCR read the passage (plain text)."""
    place = passage.source + (f" (page {passage.page})" if passage.page else "")
    note = ocr_note(passage.ocr, passage.ocr_confidence)
    return f"{place} ({note})" if note else place


def record_html(record: AuditRecord) -> str:
    entry = record.entry
    rows = "".join(
        "<tr>"
        f"<td>{p.rank}</td><td>{'yes' if p.cited else ''}</td><td>{p.score:.3f}</td>"
        f"<td>{html.escape(passage_place(p))}</td>"
        f"<td><code>{p.doc_id}</code></td><td><code>{p.chunk_id}</code></td>"
        f"<td><code>{p.text_sha256}</code></td>"
        "</tr>"
        for p in entry.passages
    )
    fields = [
        ("Record", f"{record.id} (#{record.seq})"),
        ("Time (UTC)", record.created_at),
        ("User", f"{entry.user} (groups: {', '.join(entry.groups)})"),
        ("Channel", entry.channel),
        ("Outcome", entry.outcome + (f": {entry.error}" if entry.error else "")),
        ("Question", entry.question),
        ("Searched for", str(entry.retrieval.get("standalone_question") or entry.question)),
        ("Answer", entry.answer or ""),
        ("Prompt sha256", entry.prompt_sha256 or ""),
        *started_field(entry),
        ("Record hash", record.hash),
        ("Previous hash", record.prev_hash),
    ]
    listing = "".join(
        f"<dt>{html.escape(name)}</dt><dd>{html.escape(value)}</dd>" for name, value in fields
    )
    return (
        f'<div class="audit-record"><dl>{listing}</dl>'
        '<h4>Retrieved passages</h4><table class="audit-passages"><thead><tr>'
        "<th>Rank</th><th>Cited</th><th>Score</th><th>Document</th><th>Doc id (sha256)</th>"
        "<th>Chunk id</th><th>Text sha256</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
        f"{sentences_html(entry.sentences)}"
        f"<h4>Model</h4>{json_block(entry.model)}"
        f"<h4>Retrieval</h4>{json_block(entry.retrieval)}"
        f"<h4>Timings</h4>{json_block(entry.timings)}</div>"
    )


@dataclass(frozen=True)
class _AuditView:
    filters: list[Any]  # user, since, until, document, text, cited only
    search: gr.Button
    export_csv: gr.Button
    export_jsonl: gr.Button
    verify: gr.Button
    chain: gr.Markdown
    results: gr.Dataframe
    record_id: gr.Textbox
    open_record: gr.Button
    detail: gr.HTML
    download: gr.HTML


def _audit_layout() -> _AuditView:
    with gr.Row():
        user = gr.Textbox(label="User", elem_id="audit-user")
        since = gr.Textbox(label="From (YYYY-MM-DD)", elem_id="audit-since")
        until = gr.Textbox(label="Until (YYYY-MM-DD, exclusive)", elem_id="audit-until")
    with gr.Row():
        document = gr.Textbox(
            label="Document (path, folder or document id): answers that used it",
            elem_id="audit-document",
        )
        text = gr.Textbox(label="Text in question or answer", elem_id="audit-text")
        cited_only = gr.Checkbox(label="Only answers that cited the document", value=False)
    with gr.Row():
        search = gr.Button("Search", variant="primary", elem_id="audit-search")
        export_csv = gr.Button("Export CSV", elem_id="audit-export-csv")
        export_jsonl = gr.Button("Export JSONL", elem_id="audit-export-jsonl")
        verify = gr.Button("Verify chain", elem_id="audit-verify")
    chain = gr.Markdown(elem_id="audit-chain")
    results = gr.Dataframe(headers=COLUMNS, interactive=False, wrap=True, elem_id="audit-results")
    with gr.Row():
        record_id = gr.Textbox(label="Record id", elem_id="audit-record-id", scale=4)
        open_record = gr.Button("Open record", elem_id="audit-open")
    detail = gr.HTML(elem_id="audit-record")
    # A link to the appliance's own route (auditors only), never a file in Gradio's cache.
    download = gr.HTML(elem_id="audit-download")
    filters = [user, since, until, document, text, cited_only]
    return _AuditView(
        filters, search, export_csv, export_jsonl, verify, chain, results, record_id,
        open_record, detail, download,
    )  # fmt: skip


def query_records(
    audit: AuditLog, filters: tuple[str, str, str, str, str, bool], limit: int
) -> list[AuditRecord]:
    """The records the filters of the page select, newest first."""
    who, start, end, doc, needle, cited = filters
    return audit.query(
        since=parse_day(start, "From"),
        until=parse_day(end, "Until"),
        user=(who or "").strip() or None,
        document=(doc or "").strip() or None,
        text=(needle or "").strip() or None,
        cited_only=bool(cited),
        limit=limit,
        newest_first=True,
    )


def write_export(exports_dir: Path, kind: str, records: list[AuditRecord]) -> str:
    """Write the records to a private file (older exports go) and return its download link."""
    exports_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    for old in exports_dir.iterdir():
        if time.time() - old.stat().st_mtime > EXPORT_KEEP_S:
            old.unlink(missing_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    target = exports_dir / f"{EXPORT_PREFIX}{stamp}-{secrets.token_hex(8)}.{kind}"
    private = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with open(private, "w", encoding="utf-8", newline="") as handle:
        (write_csv if kind == "csv" else write_jsonl)(records, handle)
    return export_link(target.name, len(records))


def _record_handlers(
    audit: AuditLog, identifier: Identifier, feedback: Feedback | None
) -> tuple[Callable[..., list[list[Any]]], Callable[..., str], Callable[..., str]]:
    def run_search(
        who: str, start: str, end: str, doc: str, needle: str, cited: bool, request: gr.Request
    ) -> list[list[Any]]:
        require(identifier, request, _is_auditor, "audit", "search")
        records = query_records(audit, (who, start, end, doc, needle, cited), PAGE_SIZE)
        return [record_row(r) for r in records]

    def show(identifier_text: str, request: gr.Request) -> str:
        require(identifier, request, _is_auditor, "audit", "open a record")
        record = audit.get((identifier_text or "").strip())
        if record is None:
            raise gr.Error("No audit record has that id: copy it from the search results.")
        about = feedback.about(record.id) if feedback is not None else []
        return record_html(record) + feedback_html(about)

    def select(event: gr.SelectData, request: gr.Request) -> str:
        require(identifier, request, _is_auditor, "audit")
        row = event.row_value if isinstance(event.row_value, list) else None
        return str(row[0]) if row else ""

    return run_search, show, select


def _export_handlers(
    audit: AuditLog, identifier: Identifier, exports_dir: Path
) -> tuple[Callable[..., str], Callable[..., str]]:
    def export(kind: str, values: tuple[str, str, str, str, str, bool], request: gr.Request) -> str:
        require(identifier, request, _is_auditor, "audit", f"export {kind}")
        records = query_records(audit, values, EXPORT_LIMIT)
        return write_export(exports_dir, kind, records)

    def as_csv(
        who: str, start: str, end: str, doc: str, needle: str, cited: bool, request: gr.Request
    ) -> str:
        return export("csv", (who, start, end, doc, needle, cited), request)

    def as_jsonl(
        who: str, start: str, end: str, doc: str, needle: str, cited: bool, request: gr.Request
    ) -> str:
        return export("jsonl", (who, start, end, doc, needle, cited), request)

    return as_csv, as_jsonl


def _chain_handler(audit: AuditLog, identifier: Identifier) -> Callable[[gr.Request], str]:
    def chain_state(request: gr.Request) -> str:
        require(identifier, request, _is_auditor, "audit")
        result = audit.verify()
        head = audit.head()
        if result.ok:
            tail = f" Head hash `{head[1]}`." if head else ""
            return f"**Chain verified**: {result.count} records intact.{tail}"
        return f"**Chain broken** at record {result.seq}: {result.message}"

    return chain_state


def build_audit_tab(
    tab: gr.Tab,
    audit: AuditLog,
    identifier: Identifier,
    exports_dir: Path,
    feedback: Feedback | None = None,
) -> None:
    view = _audit_layout()
    if feedback is not None:
        build_review_section(feedback, identifier)
    run_search, show, select = _record_handlers(audit, identifier, feedback)
    as_csv, as_jsonl = _export_handlers(audit, identifier, exports_dir)
    chain_state = _chain_handler(audit, identifier)
    view.search.click(run_search, view.filters, view.results)
    view.results.select(select, None, view.record_id)
    view.open_record.click(show, view.record_id, view.detail)
    view.record_id.submit(show, view.record_id, view.detail)
    view.export_csv.click(as_csv, view.filters, view.download)
    view.export_jsonl.click(as_jsonl, view.filters, view.download)
    view.verify.click(chain_state, None, view.chain)
    tab.select(chain_state, None, view.chain)


def started_field(entry: AuditEntry) -> list[tuple[str, str]]:
    """How a streamed answer's two records point at each other, for the auditor."""
    if entry.started_id:
        return [("Started record", f"{entry.started_id} (written before the stream began)")]
    if entry.outcome == "started":
        return [("Stream", "this answer was shown as it streamed; its own record names this one")]
    return []


def export_link(name: str, count: int) -> str:
    """The export's download link: served by the appliance to auditors, for ten minutes."""
    href = html.escape(f"{EXPORTS_URL}/{name}", quote=True)
    return (
        f'<p class="audit-export"><a href="{href}" download="{html.escape(name, quote=True)}">'
        f"Download {html.escape(name)}</a> ({count} records; kept for ten minutes)</p>"
    )
