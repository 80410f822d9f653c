"""Exporting audit records as JSON Lines and CSV, formula injection included."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.audit import AuditLog, AuditRecord, write_csv, write_jsonl
from appliance.audit.export import CSV_COLUMNS, safe_cell
from tests.support.audit import DOC_A, DOC_B, make_entry, make_passage


@pytest.fixture
def records(tmp_path: Path) -> Iterator[list[AuditRecord]]:
    with AuditLog(tmp_path / "audit.sqlite3") as log:
        log.append(
            make_entry(
                user="alice",
                passages=(
                    make_passage(1, DOC_A, "/docs/leave.pdf", cited=True),
                    make_passage(2, DOC_B, "/docs/vpn.md"),
                    make_passage(3, DOC_A, "/docs/leave.pdf"),
                ),
            )
        )
        log.append(
            make_entry(
                user="=cmd|' /C calc'!A0",
                question="+SUM(A1:A9)",
                answer="-1 day; @ref",
                outcome="refused",
                error="\tHYPERLINK",
                groups=("@admins", "staff"),
            )
        )
        yield log.query()


def test_jsonl_is_one_record_per_line(records: list[AuditRecord]) -> None:
    stream = io.StringIO()
    assert write_jsonl(records, stream) == 2
    lines = stream.getvalue().splitlines()
    assert [json.loads(line) for line in lines] == [r.to_json() for r in records]
    first = json.loads(lines[0])
    assert first["passages"][0] == {
        "rank": 1,
        "chunk_id": "chunk-1",
        "doc_id": DOC_A,
        "source": "/docs/leave.pdf",
        "page": 1,
        "doc_sha256": DOC_A,
        "text_sha256": f"{1:064x}",
        "score": 0.501,
        "cited": True,
    }
    assert first["model"]["sha256"] == "c" * 64
    assert first["hash"] == records[0].hash


def test_csv_has_one_row_per_record(records: list[AuditRecord]) -> None:
    stream = io.StringIO()
    assert write_csv(records, stream) == 2
    rows = list(csv.DictReader(io.StringIO(stream.getvalue())))
    assert tuple(rows[0]) == CSV_COLUMNS
    first = rows[0]
    assert first["seq"] == "1"
    assert first["user"] == "alice"
    assert first["groups"] == "staff;hr"
    assert first["question"] == "How many days of leave?"
    assert first["sources"] == "/docs/leave.pdf;/docs/vpn.md"
    assert first["cited_sources"] == "/docs/leave.pdf"
    assert first["doc_ids"] == f"{DOC_A};{DOC_B}"
    assert first["model_sha256"] == "c" * 64
    assert first["adapter_sha256"] == ""
    assert first["total_ms"] == "310.25"
    assert first["hash"] == records[0].hash
    assert first["outcome"] == "answered"


def test_csv_names_a_remote_model_server(tmp_path: Path) -> None:
    remote = {
        "backend": "openai-compatible",
        "path": None,
        "sha256": None,
        "adapter_path": None,
        "adapter_sha256": None,
        "url": "http://llm:8080/v1",
        "served_model": "gemma-3-270m",
    }
    with AuditLog(tmp_path / "audit.sqlite3") as log:
        log.append(make_entry(model=remote))
        stream = io.StringIO()
        write_csv(log.query(), stream)
    [row] = list(csv.DictReader(io.StringIO(stream.getvalue())))
    assert row["model_backend"] == "openai-compatible"
    assert row["model_url"] == "http://llm:8080/v1"
    assert row["served_model"] == "gemma-3-270m"
    assert row["model_sha256"] == ""


def test_csv_cells_cannot_become_formulas(records: list[AuditRecord]) -> None:
    stream = io.StringIO()
    write_csv(records, stream)
    second = list(csv.DictReader(io.StringIO(stream.getvalue())))[1]
    assert second["user"] == "'=cmd|' /C calc'!A0"
    assert second["question"] == "'+SUM(A1:A9)"
    assert second["answer"] == "'-1 day; @ref"
    assert second["error"] == "'\tHYPERLINK"
    assert second["groups"] == "'@admins;staff"
    assert second["sources"] == ""


@pytest.mark.parametrize(
    ("value", "cell"),
    [(None, ""), (-3, "-3"), (-0.5, "-0.5"), ("a=b", "a=b"), ("@x", "'@x"), ("", "")],
)
def test_safe_cell(value: object, cell: str) -> None:
    assert safe_cell(value) == cell
