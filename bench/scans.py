"""Scanned pages made here: text drawn into an image with Pillow, as a scanner would give it.

For the OCR tests and bench, and for the scanned sample in samples/, written once with

    .venv/bin/python -m bench.scans samples/records-retention-scan.png
"""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path
from typing import Any

# A4 at 150 dpi, the resolution of an office scanner's "document" preset.
PAGE_SIZE = (1240, 1754)
SCAN_DPI = 150
FONT_SIZE = 26
MARGIN = 120
LINE_CHARS = 72

SAMPLE_TEXT = [
    "RECORDS RETENTION POLICY",
    "",
    "Signed copies of customer contracts are kept for ten years after the contract "
    "ends, in the archive room on the ground floor.",
    "",
    "Paper documents marked Confidential go in the locked grey bins, never in the open "
    "recycling. The grey bins are emptied and shredded on site every Wednesday by "
    "the facilities team.",
    "",
    "Approved by the Board on 12 March 2024.",
    "Signed: M. Keller, Head of Compliance",
]


def scanned_page(paragraphs: list[str], size: tuple[int, int] = PAGE_SIZE) -> Any:
    """A white grayscale page with `paragraphs` typed on it (wrapped), like a scan."""
    from PIL import Image, ImageDraw, ImageFont

    page = Image.new("L", size, 255)
    draw = ImageDraw.Draw(page)
    font = ImageFont.load_default(size=FONT_SIZE)
    y = MARGIN
    for paragraph in paragraphs:
        for line in textwrap.wrap(paragraph, LINE_CHARS) or [""]:
            draw.text((MARGIN, y), line, fill=0, font=font)
            y += int(FONT_SIZE * 1.6)
    return page


def write_scanned_pdf(path: Path, pages: list[list[str]]) -> Path:
    """A PDF of page images only (no text layer), one page per list of paragraphs."""
    images = [scanned_page(paragraphs) for paragraphs in pages]
    images[0].save(path, save_all=True, append_images=images[1:], resolution=SCAN_DPI)
    return path


def write_mixed_pdf(path: Path, pages: list[tuple[str, list[str]]]) -> Path:
    """A PDF of pages of four kinds: ("typed", paragraphs) with a text layer; ("scanned",
    paragraphs), an image without one; ("stamped-scan", paragraphs), an image with a stamped
    document number as its only text (ACME-000042); ("blank", []), nothing at all."""
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    pdf = canvas.Canvas(str(path), pagesize=A4)
    width, height = A4
    for kind, paragraphs in pages:
        if kind == "typed":
            text = pdf.beginText(72, height - 72)
            for paragraph in paragraphs:
                for line in textwrap.wrap(paragraph, 90):
                    text.textLine(line)
            pdf.drawText(text)
        elif kind in ("scanned", "stamped-scan"):
            pdf.drawImage(ImageReader(scanned_page(paragraphs)), 0, 0, width, height)
            if kind == "stamped-scan":
                pdf.setFont("Helvetica", 10)
                pdf.drawString(width - 130, 30, "ACME-000042")
        pdf.showPage()
    pdf.save()
    return path


def write_scanned_image(path: Path, pages: list[list[str]]) -> Path:
    """A PNG or JPEG of one page, or a TIFF of one page or more, at SCAN_DPI."""
    images = [scanned_page(paragraphs) for paragraphs in pages]
    options: dict[str, Any] = {"dpi": (SCAN_DPI, SCAN_DPI)}
    if len(images) > 1:
        options.update(save_all=True, append_images=images[1:])
    if path.suffix.lower() == ".png":
        # Two shades of grey are enough for black type: the file stays small.
        images[0] = images[0].quantize(colors=4)
        options["optimize"] = True
    images[0].save(path, **options)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("out", type=Path, help="the image to write (.png, .jpg, .tif)")
    args = parser.parse_args()
    write_scanned_image(args.out, [SAMPLE_TEXT])
    print(f"{args.out}: {args.out.stat().st_size} bytes")


if __name__ == "__main__":
    main()
