"""Read the text of scanned pages and images with Tesseract (Debian's `tesseract-ocr`), offline.

Runs in the parser worker, under its per-file time and memory limits: each page is one
`tesseract` process (killed with the worker when a file runs out of time). A page gets its
text and the mean confidence (0-100) Tesseract gave its words, so that a reader of an answer
knows the passage was machine-read.
"""

from __future__ import annotations

import io
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance.errors import LoadError

if TYPE_CHECKING:
    from appliance.settings import Settings

TESSERACT = "tesseract"
# A scanned PDF page is rendered for OCR at the resolution of its scan, within these bounds:
# above 300 dpi Tesseract reads no better; below 200 it reads no faster (measured: a 150 dpi
# A4 scan took 2.0 s of CPU at 200 dpi and 4.2 s at 300, with the same text).
MIN_RENDER_DPI = 200
MAX_RENDER_DPI = 300
# A page rendered larger than this (a poster, a drawing) is rendered at a lower resolution.
MAX_RENDER_PIXELS = 40_000_000
# A PDF page whose text layer has fewer visible characters than this per square inch of page
# (about 100 on A4 or Letter; a typed page has 2,000 or more) is read with OCR too.
MIN_CHARS_PER_SQUARE_INCH = 1.0


@dataclass(frozen=True)
class OcrConfig:
    """`languages`: Tesseract's language codes joined with '+' (APPLIANCE_OCR_LANGUAGES);
    `page_timeout_s`: the longest one page may take (the file's own limit is the worker's)."""

    enabled: bool = True
    languages: str = "eng"
    page_timeout_s: float = 120.0


@dataclass(frozen=True)
class OcrText:
    text: str
    confidence: float | None  # mean word confidence, 0-100; None when no word was read


class OcrPageError(Exception):
    """One page could not be read (Tesseract failed on it or took too long)."""


def debian_package(language: str) -> str:
    """The Debian package of a Tesseract language: chi_sim -> tesseract-ocr-chi-sim."""
    return "tesseract-ocr-" + language.lower().replace("_", "-")


def _installed_languages() -> frozenset[str] | None:
    """The languages Tesseract has installed; None when Tesseract itself is not installed.
    Asked once per file (about 20 ms): a package installed meanwhile counts at once."""
    try:
        listed = subprocess.run(
            [TESSERACT, "--list-langs"], capture_output=True, text=True, timeout=30, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    # The first line says where the languages are ("List of available languages in ...").
    return frozenset(line.strip() for line in listed.stdout.splitlines()[1:] if line.strip())


def check_ocr(config: OcrConfig) -> None:
    """Raise LoadError naming the Debian package to install when Tesseract or a language of
    `config` is missing (the file then fails whole, and is read again on the next run)."""
    if not config.enabled:
        raise LoadError(
            "needs OCR (a scan or an image), which is off (APPLIANCE_OCR_ENABLED=false)"
        )
    codes = [code for code in config.languages.split("+") if code]
    installed = _installed_languages()
    if installed is None:
        packages = " ".join(["tesseract-ocr", *(debian_package(c) for c in codes)])
        raise LoadError(
            f"needs OCR, but Tesseract is not installed: install Debian's {packages} "
            "(`make ocr`, or apt-get install), then ingest again"
        )
    missing = [code for code in codes if code not in installed]
    if missing:
        packages = " ".join(debian_package(c) for c in missing)
        raise LoadError(
            f"needs OCR in {', '.join(missing)} (APPLIANCE_OCR_LANGUAGES), which Tesseract "
            f"does not have: install Debian's {packages}, then ingest again"
        )


def recognize(image: Any, config: OcrConfig, dpi: int | None = None) -> OcrText:
    """The text of one page image (a Pillow image), or OcrPageError."""
    command = [TESSERACT, "stdin", "stdout", "-l", config.languages, "--psm", "3"]
    if dpi is not None:
        command += ["--dpi", str(dpi)]
    try:
        result = subprocess.run(
            [*command, "tsv"],
            input=_png_bytes(image),
            capture_output=True,
            timeout=config.page_timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise OcrPageError(f"OCR took longer than {config.page_timeout_s:g} s") from None
    if result.returncode != 0:
        detail = result.stderr.decode("utf-8", "replace").strip().splitlines()
        raise OcrPageError(
            f"Tesseract failed (exit code {result.returncode}{': ' + detail[-1] if detail else ''})"
        )
    return parse_tsv(result.stdout.decode("utf-8", "replace"))


def _png_bytes(image: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def parse_tsv(tsv: str) -> OcrText:
    """Tesseract's TSV (one row per word) as text: words of a line joined by spaces, lines
    by line breaks, paragraphs by an empty line; with the words' mean confidence."""
    lines: dict[tuple[str, str, str], list[str]] = {}
    confidences: list[float] = []
    for row in tsv.splitlines()[1:]:
        fields = row.split("\t")
        if len(fields) < 12 or fields[0] != "5" or not fields[11].strip():
            continue
        block, paragraph, line = fields[2], fields[3], fields[4]
        lines.setdefault((block, paragraph, line), []).append(fields[11].strip())
        confidence = float(fields[10])
        if confidence >= 0:
            confidences.append(confidence)
    parts: list[str] = []
    previous: tuple[str, str] | None = None
    for (block, paragraph, _), words in lines.items():
        if previous is not None:
            parts.append("\n\n" if (block, paragraph) != previous else "\n")
        parts.append(" ".join(words))
        previous = (block, paragraph)
    mean = round(sum(confidences) / len(confidences), 1) if confidences else None
    return OcrText("".join(parts), mean)


def needs_ocr(text: str, width_pt: float, height_pt: float) -> bool:
    """Whether a PDF page's text layer is too thin for its area to be the whole page."""
    square_inches = max(width_pt, 1.0) * max(height_pt, 1.0) / (72 * 72)
    visible = sum(1 for char in text if not char.isspace())
    return visible < MIN_CHARS_PER_SQUARE_INCH * square_inches


def read_scanned_pdf_pages(
    path: Path, indexes: Iterable[int], config: OcrConfig
) -> Iterator[tuple[int, OcrText | OcrPageError]]:
    """OCR of those pages of a PDF (0-based `indexes`) that show an image; the others (blank,
    or drawn without text) are left out. Each page is rendered at its scan's resolution (see
    MIN_RENDER_DPI; less for a very large page). Raises LoadError when OCR is needed but not
    installed."""
    import pypdfium2
    import pypdfium2.raw as pdfium_c

    document = pypdfium2.PdfDocument(path)
    checked = False
    try:
        for index in indexes:
            page = document[index]
            images = list(page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE]))
            if not images:
                continue
            if not checked:
                check_ocr(config)
                checked = True
            try:
                image, dpi = _render(page, _scan_dpi(images))
                yield index, recognize(image, config, dpi)
            except OcrPageError as exc:
                yield index, exc
            except pypdfium2.PdfiumError as exc:
                yield index, OcrPageError(f"cannot render the page ({exc})")
    finally:
        document.close()


def _scan_dpi(images: list[Any]) -> int:
    """The resolution of the largest image on a page (its pixels over its size on the page),
    within MIN_RENDER_DPI and MAX_RENDER_DPI."""

    def area(image: Any) -> float:
        left, bottom, right, top = image.get_bounds()
        return float((right - left) * (top - bottom))

    largest = max(images, key=area)
    left, bottom, right, top = largest.get_bounds()
    extent_pt = max(right - left, top - bottom)
    if extent_pt <= 0:
        return MAX_RENDER_DPI
    dpi = max(largest.get_px_size()) * 72 / extent_pt
    return int(min(max(dpi, MIN_RENDER_DPI), MAX_RENDER_DPI))


def _render(page: Any, dpi: int) -> tuple[Any, int]:
    width, height = page.get_size()
    pixels = (width * dpi / 72) * (height * dpi / 72)
    if pixels > MAX_RENDER_PIXELS:
        dpi = max(int(dpi * (MAX_RENDER_PIXELS / pixels) ** 0.5), 1)
    return page.render(scale=dpi / 72, grayscale=True).to_pil(), dpi


def image_pages(path: Path) -> Iterator[tuple[Any, int | None]]:
    """Each page of an image file (one, or several in a TIFF) as a Pillow image ready for OCR,
    with its resolution when the file records one."""
    from PIL import Image, ImageSequence

    try:
        with Image.open(path) as image:
            dpi = _recorded_dpi(image.info.get("dpi"))
            for frame in ImageSequence.Iterator(image):
                yield _for_ocr(frame), dpi
    except Image.DecompressionBombError:
        raise LoadError(
            "image too large to read safely (over Pillow's pixel limit): scan it at a lower "
            "resolution"
        ) from None


def _recorded_dpi(value: Any) -> int | None:
    try:
        dpi = round(float(value[0]))
    except (TypeError, ValueError, IndexError):
        return None
    return dpi if 70 <= dpi <= 1200 else None


def _for_ocr(frame: Any) -> Any:
    """A grayscale copy of an image frame; transparent parts become white paper."""
    from PIL import Image

    if frame.mode in ("RGBA", "LA", "PA") or "transparency" in frame.info:
        rgba = frame.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, "white")
        paper.alpha_composite(rgba)
        return paper.convert("L")
    return frame.convert("L")


def ocr_config(settings: Settings) -> OcrConfig:
    """The OCR settings of the parser: a page may take as long as a whole file may."""
    return OcrConfig(settings.ocr_enabled, settings.ocr_languages, settings.parse_timeout_s)
