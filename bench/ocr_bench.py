"""OCR throughput: pages per second that the parser reads from a scanned PDF with Tesseract.

Generates a PDF of A4 page images without a text layer (bench.scans: typed policy text at
150 dpi, as an office scanner gives it), then times `load_document` on it as the parser
worker runs it: each page rendered at its scan's resolution, 200-300 dpi (pypdfium2), and
read by one `tesseract` process, one page at a time. The first read (imports, Tesseract's
model load) is not timed.

    .venv/bin/python -m bench.ocr_bench [--pages 6] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.scans import SAMPLE_TEXT, write_scanned_image, write_scanned_pdf

# Single-threaded, as in the parser worker (which sets OMP_NUM_THREADS=1).
os.environ.setdefault("OMP_NUM_THREADS", "1")


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def measure(pages: int) -> dict[str, Any]:
    from ingest.loaders import load_document

    with tempfile.TemporaryDirectory(prefix="ocr-bench-") as folder:
        text = SAMPLE_TEXT * 3  # about 25 lines: a typed policy page
        pdf = write_scanned_pdf(Path(folder) / "scan.pdf", [text] * pages)
        png = write_scanned_image(Path(folder) / "scan.png", [text])
        load_document(png)  # warm-up: imports and Tesseract's first start
        cpu_before = _cpu_seconds()
        started = time.perf_counter()
        loaded = load_document(pdf)
        pdf_s = time.perf_counter() - started
        pdf_cpu_s = _cpu_seconds() - cpu_before
        started = time.perf_counter()
        load_document(png)
        png_s = time.perf_counter() - started
    confidences = [s.ocr_confidence for s in loaded.sections if s.ocr_confidence is not None]
    return {
        "pages": pages,
        "pages_read_by_ocr": sum(s.ocr for s in loaded.sections),
        "pdf_seconds": round(pdf_s, 2),
        "pdf_pages_per_s": round(pages / pdf_s, 3),
        # Busy CPU time per page (rendering and Tesseract): what a machine to itself would
        # need, whatever else was running while this was measured.
        "cpu_seconds_per_page": round(pdf_cpu_s / pages, 2),
        "png_page_seconds": round(png_s, 2),
        "mean_confidence": round(sum(confidences) / len(confidences), 1) if confidences else None,
        "cpu_cores": os.cpu_count(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--pages", type=int, default=6, help="pages in the scanned PDF")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    result = measure(args.pages)
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"OCR: {result['pages']} scanned A4 pages in {result['pdf_seconds']} s = "
        f"{result['pdf_pages_per_s']} pages/s (PDF; {result['cpu_seconds_per_page']} s of CPU a "
        "page); one PNG page "
        f"{result['png_page_seconds']} s; mean word confidence {result['mean_confidence']}; "
        f"{result['cpu_cores']} cores, OMP_NUM_THREADS={result['omp_num_threads']}"
    )


if __name__ == "__main__":
    main()
