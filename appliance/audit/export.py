"""Audit records as JSON Lines or CSV: who asked what, and which documents each answer used."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from typing import Any, TextIO

from appliance.audit.records import AuditRecord

# Export files the Audit page writes and the web app serves to auditors (appliance.web.files).
EXPORTS_URL = "/audit/exports"
EXPORT_PREFIX = "audit-export-"

CSV_COLUMNS = (
    "seq",
    "id",
    "created_at",
    "user",
    "groups",
    "channel",
    "question",
    "outcome",
    "answer",
    "error",
    "sources",
    "cited_sources",
    "doc_ids",
    "model_path",
    "model_sha256",
    "adapter_sha256",
    "model_backend",
    "model_url",
    "served_model",
    "prompt_sha256",
    "total_ms",
    "prev_hash",
    "hash",
)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def write_jsonl(records: Iterable[AuditRecord], stream: TextIO) -> int:
    """One JSON object (AuditRecord.to_json) per line; returns the number of records."""
    count = 0
    for record in records:
        stream.write(json.dumps(record.to_json(), ensure_ascii=False, sort_keys=True) + "\n")
        count += 1
    return count


def write_csv(records: Iterable[AuditRecord], stream: TextIO) -> int:
    """One row per record (lists joined with ';'); returns the number of records."""
    writer = csv.writer(stream)
    writer.writerow(CSV_COLUMNS)
    count = 0
    for record in records:
        writer.writerow([safe_cell(value) for value in csv_row(record)])
        count += 1
    return count


def csv_row(record: AuditRecord) -> list[Any]:
    entry = record.entry
    return [
        record.seq,
        record.id,
        record.created_at,
        entry.user,
        ";".join(entry.groups),
        entry.channel,
        entry.question,
        entry.outcome,
        entry.answer,
        entry.error,
        ";".join(record.sources),
        ";".join(record.cited_sources),
        ";".join(record.doc_ids),
        entry.model.get("path"),
        entry.model.get("sha256"),
        entry.model.get("adapter_sha256"),
        entry.model.get("backend"),
        entry.model.get("url"),
        entry.model.get("served_model"),
        entry.prompt_sha256,
        entry.timings.get("total_ms"),
        record.prev_hash,
        record.hash,
    ]


def safe_cell(value: Any) -> str:
    """The cell as text; text a spreadsheet would run as a formula gets a leading quote."""
    if value is None:
        return ""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text
