"""OCR of scans and images with Debian's Tesseract (real), in the loaders and the parser worker."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from appliance.domain import FileChunks
from appliance.errors import LoadError, ParseTimeoutError
from bench.scans import write_mixed_pdf, write_scanned_image, write_scanned_pdf
from ingest.chunking import ChunkConfig
from ingest.loaders import load_document, load_sections
from ingest.ocr import OcrConfig, debian_package, parse_tsv
from ingest.worker import ParserProcess

FIRE = "Fire doors on the fourth floor must stay closed at all times."
BADGE = "A lost visitor badge is reported to the front desk on extension 2718."
TYPED = "The canteen serves lunch from noon until two in the afternoon."
WORKER = "appliance-parser"


def test_scanned_pdf_pages_are_read_with_ocr_and_keep_their_page_numbers(
    tmp_path: Path,
) -> None:
    path = write_scanned_pdf(tmp_path / "scan.pdf", [["Safety notice", FIRE], [BADGE]])
    loaded = load_document(path)
    assert [(s.page, s.ocr) for s in loaded.sections] == [(1, True), (2, True)]
    assert FIRE in loaded.sections[0].text
    assert BADGE in loaded.sections[1].text
    assert all(s.ocr_confidence is not None and s.ocr_confidence > 80 for s in loaded.sections)
    assert loaded.problems == ()


def test_mixed_pdf_reads_only_its_scanned_pages_with_ocr(tmp_path: Path) -> None:
    path = write_mixed_pdf(
        tmp_path / "mixed.pdf",
        [("typed", [TYPED]), ("scanned", [FIRE]), ("blank", []), ("stamped-scan", [BADGE])],
    )
    sections = load_sections(path)
    # The blank page (an image-free page without text) is neither read nor kept.
    assert [(s.page, s.ocr) for s in sections] == [(1, False), (2, True), (4, True)]
    assert sections[0].text.strip() == TYPED and sections[0].ocr_confidence is None
    assert FIRE in sections[1].text
    # A scan whose text layer is only a stamped number is read whole.
    assert BADGE in sections[2].text and "ACME-000042" in sections[2].text


@pytest.mark.parametrize("name", ["notice.png", "notice.jpg", "notice.jpeg", "notice.tif"])
def test_images_are_documents(tmp_path: Path, name: str) -> None:
    sections = load_sections(write_scanned_image(tmp_path / name, [[FIRE]]))
    assert [(s.page, s.ocr) for s in sections] == [(1, True)]
    assert FIRE in sections[0].text


def test_multi_page_tiff_is_read_page_by_page(tmp_path: Path) -> None:
    sections = load_sections(write_scanned_image(tmp_path / "fax.tiff", [[FIRE], [BADGE]]))
    assert [s.page for s in sections] == [1, 2]
    assert FIRE in sections[0].text and BADGE in sections[1].text


def test_a_page_that_fails_ocr_is_named_and_the_rest_is_kept(tmp_path: Path) -> None:
    path = write_mixed_pdf(tmp_path / "mixed.pdf", [("typed", [TYPED]), ("scanned", [FIRE])])
    loaded = load_document(path, OcrConfig(page_timeout_s=0.001))
    assert [s.page for s in loaded.sections] == [1]
    assert loaded.problems == ("page 2: OCR failed (OCR took longer than 0.001 s)",)


def test_a_file_whose_every_page_fails_ocr_fails_with_the_pages(tmp_path: Path) -> None:
    path = write_scanned_image(tmp_path / "notice.png", [[FIRE]])
    with pytest.raises(LoadError, match=r"^page 1: OCR failed \(OCR took longer"):
        load_document(path, OcrConfig(page_timeout_s=0.001))


def test_a_missing_language_names_its_debian_package(tmp_path: Path) -> None:
    path = write_scanned_image(tmp_path / "notice.png", [[FIRE]])
    with pytest.raises(LoadError, match=r"APPLIANCE_OCR_LANGUAGES.*tesseract-ocr-zzz\b"):
        load_document(path, OcrConfig(languages="eng+zzz"))
    assert debian_package("chi_sim") == "tesseract-ocr-chi-sim"


def test_a_machine_without_tesseract_is_told_which_packages_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ingest import ocr

    monkeypatch.setattr(ocr, "TESSERACT", str(tmp_path / "no-tesseract"))
    mixed = write_mixed_pdf(tmp_path / "mixed.pdf", [("typed", [TYPED]), ("scanned", [FIRE])])
    # The whole file fails (it is read again on the next run, once OCR is installed).
    expected = r"Tesseract is not installed: install Debian's tesseract-ocr tesseract-ocr-eng "
    with pytest.raises(LoadError, match=expected):
        load_document(mixed)
    typed = write_mixed_pdf(tmp_path / "typed.pdf", [("typed", [TYPED]), ("blank", [])])
    assert [s.page for s in load_sections(typed)] == [1]  # no page needed OCR


def test_ocr_off_skips_scanned_pages_and_refuses_images(tmp_path: Path) -> None:
    off = OcrConfig(enabled=False)
    mixed = write_mixed_pdf(tmp_path / "mixed.pdf", [("typed", [TYPED]), ("scanned", [FIRE])])
    assert [(s.page, s.ocr) for s in load_sections(mixed, off)] == [(1, False)]
    image = write_scanned_image(tmp_path / "notice.png", [[FIRE]])
    with pytest.raises(LoadError, match="APPLIANCE_OCR_ENABLED=false"):
        load_sections(image, off)


def test_tsv_becomes_lines_and_paragraphs_with_the_mean_confidence() -> None:
    header = "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tl\tt\tw\th\tconf\ttext"
    rows = [
        "5\t1\t1\t1\t1\t1\t0\t0\t1\t1\t90\tFire",
        "5\t1\t1\t1\t1\t2\t0\t0\t1\t1\t80\tdoors",
        "5\t1\t1\t1\t2\t1\t0\t0\t1\t1\t70\tclosed.",
        "4\t1\t2\t1\t1\t0\t0\t0\t1\t1\t-1\t",
        "5\t1\t2\t1\t1\t1\t0\t0\t1\t1\t60\tSigned",
    ]
    read = parse_tsv("\n".join([header, *rows]))
    assert read.text == "Fire doors\nclosed.\n\nSigned"
    assert read.confidence == 75.0


def test_worker_marks_ocr_chunks_and_reports_failed_pages(
    tmp_path: Path, embed_model_dir: Path
) -> None:
    good = write_mixed_pdf(tmp_path / "good.pdf", [("typed", [TYPED]), ("scanned", [FIRE])])
    config = ChunkConfig(embed_model_dir, 64, 8)
    with ParserProcess(config, 60.0) as parser:
        [(_, chunks)] = parser.parse_stream([good])
    assert isinstance(chunks, FileChunks) and chunks.problems == ()
    assert [(c.page, c.ocr) for c in chunks] == [(1, False), (2, True)]
    assert FIRE in chunks[1].text and chunks[1].ocr_confidence is not None

    with ParserProcess(config, 60.0, ocr=OcrConfig(page_timeout_s=0.001)) as parser:
        [(_, chunks)] = parser.parse_stream([good])
    assert isinstance(chunks, FileChunks) and [c.page for c in chunks] == [1]
    assert chunks.problems == (
        "page 2: OCR failed (OCR took longer than 0.001 s); the rest of the file was ingested",
    )


def _group_alive(group: int) -> list[int]:
    """Processes of a process group that have not exited (zombies excluded)."""
    alive = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = Path(entry.path, "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            alive.append(int(entry.name))
    return alive


def test_file_timeout_stops_the_ocr_process_too(tmp_path: Path, embed_model_dir: Path) -> None:
    import multiprocessing

    # A dense page takes Tesseract several seconds: it is still reading when time runs out.
    dense = [f"{FIRE} {BADGE}"] * 30
    scan = write_scanned_pdf(tmp_path / "long.pdf", [dense, dense])
    config = ChunkConfig(embed_model_dir, 64, 8)
    with ParserProcess(config, 2.0) as parser:
        parser.prestart()
        [worker] = [p for p in multiprocessing.active_children() if p.name == WORKER]
        [(_, outcome)] = parser.parse_stream([scan])
        assert isinstance(outcome, ParseTimeoutError)
        deadline = time.monotonic() + 1.0
        while _group_alive(worker.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _group_alive(worker.pid) == []
