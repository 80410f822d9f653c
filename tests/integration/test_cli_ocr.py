"""Scanned documents end to end: `appliance ingest` reads them with Tesseract, `ask` finds the
machine-read passage on its page and says it was OCR'd, and the audit record keeps that.

One ingest of every scan serves all the tests; the commands run in this process (their child
process is not the subject), and only one `ask` loads the model."""

import json
import shutil
from pathlib import Path

import pytest

from bench.scans import write_mixed_pdf, write_scanned_image, write_scanned_pdf
from tests.integration.cli import invoke, invoke_json

pytestmark = pytest.mark.integration

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
FIRE = "Fire doors on the fourth floor must stay closed at all times."
BADGE = "A lost visitor badge is reported to the front desk on extension 2718."
PARKING = "Bicycles are parked in the courtyard rack, never in the corridors."
TYPED = "The canteen serves lunch from noon until two in the afternoon."


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ocr")
    docs = root / "docs"
    docs.mkdir()
    write_scanned_pdf(docs / "safety-scan.pdf", [["Safety notice, signed copy"], [FIRE]])
    write_mixed_pdf(docs / "reception.pdf", [("typed", [TYPED]), ("scanned", [BADGE])])
    write_scanned_image(docs / "bicycles.png", [[PARKING]])
    shutil.copy(SAMPLES / "records-retention-scan.png", docs)
    data = root / "data"
    code, report = invoke_json(data, "ingest", str(docs))
    assert code == 0, report
    assert report["files"]["new"] == 4 and report["files"]["failed"] == []
    return data


def top_source(data: Path, question: str) -> dict:  # type: ignore[type-arg]
    code, answer = invoke_json(data, "ask", question, "--retrieve-only")
    assert code == 0, answer
    return answer["sources"][0]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("question", "name", "page", "sentence"),
    [
        ("Which fire doors must stay closed?", "safety-scan.pdf", 2, FIRE),
        ("Where do I report a lost visitor badge?", "reception.pdf", 2, BADGE),
        ("Where are bicycles parked?", "bicycles.png", 1, PARKING),
        (
            "How often are the grey confidential bins shredded?",
            "records-retention-scan.png",
            1,
            "emptied and shredded on site every Wednesday",
        ),
    ],
)
def test_scanned_passages_are_found_on_their_page_and_marked_as_ocr(
    data: Path, question: str, name: str, page: int, sentence: str
) -> None:
    source = top_source(data, question)
    assert (Path(source["source"]).name, source["page"]) == (name, page)
    assert sentence in " ".join(source["text"].split())
    assert source["ocr"] is True and source["ocr_confidence"] > 80


def test_typed_page_of_a_mixed_pdf_is_not_ocr(data: Path) -> None:
    source = top_source(data, "When does the canteen serve lunch?")
    assert (Path(source["source"]).name, source["page"]) == ("reception.pdf", 1)
    assert source["ocr"] is False and source["ocr_confidence"] is None


def test_answer_cites_the_scanned_page_and_its_audit_record_says_ocr(
    data: Path, small_model: Path
) -> None:
    code, answer = invoke_json(
        data,
        "ask",
        "Where do I report a lost visitor badge?",
        APPLIANCE_LLM_MODEL=str(small_model),
        APPLIANCE_LLM_MAX_TOKENS="32",  # the sources are the subject, not the wording
    )
    assert code == 0, answer
    first = answer["sources"][0]
    assert (Path(first["source"]).name, first["page"], first["ocr"]) == ("reception.pdf", 2, True)
    exported = invoke(data, "audit", "export", "--format", "jsonl")
    [record] = [
        r for r in map(json.loads, exported.stdout.splitlines()) if r["id"] == answer["audit_id"]
    ]
    passage = record["passages"][0]
    assert (Path(passage["source"]).name, passage["page"]) == ("reception.pdf", 2)
    assert passage["ocr"] is True and passage["ocr_confidence"] == first["ocr_confidence"]
    typed = [p for p in record["passages"] if p["page"] == 1 and "reception" in p["source"]]
    assert all("ocr" not in p for p in typed)  # typed passages are recorded as before
