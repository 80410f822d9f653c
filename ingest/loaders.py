"""Turn one file into text sections with llama-index readers (stdlib `email` for .eml).

Every failure becomes a `LoadError` whose message names the problem and what to do.
"""

from __future__ import annotations

import codecs
import email
import email.policy
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

from appliance.domain import TextSection
from appliance.errors import LoadError
from ingest.archives import ZIP_FORMATS, check_zip_bounds
from ingest.ocr import (
    OcrConfig,
    OcrPageError,
    check_ocr,
    image_pages,
    needs_ocr,
    read_scanned_pdf_pages,
    recognize,
)

TEXT_SNIFF_BYTES = 8192


@dataclass(frozen=True)
class LoadedFile:
    """A file's text sections, and what of it could not be read: `problems` name a page each
    ("page 3: OCR failed (...)"); the file is ingested without those pages."""

    sections: list[TextSection]
    problems: tuple[str, ...] = ()


def _pdf(path: Path, ocr: OcrConfig) -> LoadedFile:
    import pypdf
    from llama_index.readers.file import PDFReader

    try:
        reader = pypdf.PdfReader(path)
        if reader.is_encrypted and not reader.decrypt(""):
            raise LoadError("encrypted PDF: remove the password and ingest it again")
    except pypdf.errors.PdfReadError as exc:
        raise LoadError(f"corrupt PDF ({exc}): re-export the file and ingest it again") from None
    docs = PDFReader(return_full_document=False).load_data(path)
    sections = [TextSection(doc.text, page=number) for number, doc in enumerate(docs, start=1)]
    if not ocr.enabled:
        return LoadedFile(sections)
    # Pages without a text layer, or with too little text for their size (a scan with a
    # stamped number, say), are read with OCR; the others are not.
    thin = [
        index
        for index, (section, page) in enumerate(zip(sections, reader.pages, strict=False))
        if needs_ocr(section.text, float(page.mediabox.width), float(page.mediabox.height))
    ]
    problems = []
    for index, outcome in read_scanned_pdf_pages(path, thin, ocr):
        if isinstance(outcome, OcrPageError):
            problems.append(f"page {index + 1}: OCR failed ({outcome})")
        elif _visible_chars(outcome.text) > _visible_chars(sections[index].text):
            sections[index] = TextSection(
                outcome.text, page=index + 1, ocr=True, ocr_confidence=outcome.confidence
            )
    return LoadedFile(sections, tuple(problems))


def _visible_chars(text: str) -> int:
    return sum(1 for char in text if not char.isspace())


def _image(path: Path, ocr: OcrConfig) -> LoadedFile:
    """An image (PNG, JPEG, TIFF; a multi-page TIFF page by page), read with OCR."""
    sections, problems = [], []
    for number, (image, dpi) in enumerate(image_pages(path), start=1):
        if number == 1:  # a file that is not an image says so first
            check_ocr(ocr)
        try:
            read = recognize(image, ocr, dpi)
        except OcrPageError as exc:
            problems.append(f"page {number}: OCR failed ({exc})")
            continue
        sections.append(
            TextSection(read.text, page=number, ocr=True, ocr_confidence=read.confidence)
        )
    return LoadedFile(sections, tuple(problems))


def _docx(path: Path) -> list[TextSection]:
    from llama_index.readers.file import DocxReader

    return [TextSection(doc.text) for doc in DocxReader().load_data(path)]


def _pptx(path: Path) -> list[TextSection]:
    from llama_index.readers.file import PptxReader

    reader = PptxReader(extract_images=False, num_workers=0, raise_on_error=True)
    return [
        TextSection(doc.text, page=int(doc.metadata.get("page_label", number)))
        for number, doc in enumerate(reader.load_data(path), start=1)
    ]


def _xlsx(path: Path) -> list[TextSection]:
    from llama_index.readers.file import PandasExcelReader

    return [TextSection(doc.text) for doc in PandasExcelReader().load_data(path)]


def _csv(path: Path) -> list[TextSection]:
    from llama_index.readers.file import PagedCSVReader

    docs = PagedCSVReader().load_data(path)
    # Row 1 holds the headers, so the first record is on line 2.
    return [TextSection(doc.text, section=f"row {n}") for n, doc in enumerate(docs, start=2)]


def _html(path: Path) -> list[TextSection]:
    """Each <section>'s own text (llama-index's HTMLTagReader), else the page's visible text.

    Parsed once, with lxml: bs4's pure-Python html.parser took about as long as splitting
    the Python docs into chunks. Both build the same sections on that corpus.
    """
    from bs4 import BeautifulSoup
    from llama_index.readers.file import HTMLTagReader

    soup = BeautifulSoup(path.read_text(encoding="utf-8-sig"), "lxml")
    reader = HTMLTagReader(tag="section")
    sections = [
        TextSection(reader._extract_text_from_tag(tag), section=str(tag.get("id") or "") or None)
        for tag in soup.find_all("section")
    ]
    if any(s.text.strip() for s in sections):
        return sections
    # A page without <section> elements: its whole visible text is one section.
    for hidden in soup(["script", "style", "noscript", "template"]):
        hidden.decompose()
    title = soup.title.get_text(strip=True) if soup.title else None
    body = soup.body or soup
    return [TextSection(body.get_text("\n", strip=True), section=title or None)]


def _markdown(path: Path) -> list[TextSection]:
    from llama_index.readers.file import MarkdownReader

    sections = []
    for doc in MarkdownReader().load_data(path):
        first_line = doc.text.strip().split("\n", 1)[0]
        heading = first_line.lstrip("#").strip() if first_line.startswith("#") else None
        sections.append(TextSection(doc.text, section=heading))
    return sections


def _text(path: Path) -> list[TextSection]:
    from llama_index.readers.file import FlatReader

    return [TextSection(doc.text) for doc in FlatReader().load_data(path)]


def _eml(path: Path) -> list[TextSection]:
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    if not isinstance(message, EmailMessage) or not message.keys():
        raise LoadError("not an e-mail message (no headers found)")
    body_part = message.get_body(preferencelist=("plain", "html"))
    body = body_part.get_content() if body_part is not None else ""
    if body_part is not None and body_part.get_content_type() == "text/html":
        from bs4 import BeautifulSoup

        body = BeautifulSoup(body, "html.parser").get_text("\n", strip=True)
    header_lines = [
        f"{name}: {message[name]}" for name in ("Subject", "From", "To", "Date") if message[name]
    ]
    subject = str(message["Subject"]) if message["Subject"] else None
    return [TextSection("\n".join([*header_lines, "", body]), section=subject)]


READERS: dict[str, Callable[[Path], list[TextSection]]] = {
    ".docx": _docx,
    ".pptx": _pptx,
    ".xlsx": _xlsx,
    ".csv": _csv,
    ".html": _html,
    ".htm": _html,
    ".md": _markdown,
    ".markdown": _markdown,
    ".txt": _text,
    ".text": _text,
    ".eml": _eml,
}
# Formats that may need OCR: their readers get the OCR settings and may report pages.
OCR_READERS: dict[str, Callable[[Path, OcrConfig], LoadedFile]] = {
    ".pdf": _pdf,
    ".png": _image,
    ".jpg": _image,
    ".jpeg": _image,
    ".tif": _image,
    ".tiff": _image,
}
TEXT_FORMATS = {".csv", ".html", ".htm", ".md", ".markdown", ".txt", ".text"}
SUPPORTED_EXTENSIONS = frozenset(READERS) | frozenset(OCR_READERS)


# Byte-order marks of the Unicode encodings other than UTF-8; UTF-32 first: its little-endian
# mark begins with UTF-16's.
BYTE_ORDER_MARKS = (
    (codecs.BOM_UTF32_LE, "utf-32", "UTF-32"),
    (codecs.BOM_UTF32_BE, "utf-32", "UTF-32"),
    (codecs.BOM_UTF16_LE, "utf-16", "UTF-16"),
    (codecs.BOM_UTF16_BE, "utf-16", "UTF-16"),
)


def check_text_bytes(path: Path) -> str | None:
    """Refuse binary or undecodable content in a text format before a reader garbles it.

    Returns the text of a file in UTF-16 or UTF-32 (told by its byte-order mark), which the
    readers, all UTF-8, cannot read themselves; None for a UTF-8 file.
    """
    data = path.read_bytes()
    for mark, codec, name in BYTE_ORDER_MARKS:
        if data.startswith(mark):
            try:
                return data.decode(codec)
            except UnicodeDecodeError as exc:
                raise LoadError(
                    f"invalid {name}: the file starts with a {name} byte-order mark but its "
                    f"content is not {name} ({exc.reason} at offset {exc.start}); save the "
                    "file as UTF-8 and ingest it again"
                ) from None
    if b"\x00" in data[:TEXT_SNIFF_BYTES]:
        raise LoadError("binary content in a text file: is the extension right?")
    try:
        data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LoadError(
            f"undecodable: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "save the file as UTF-8 and ingest it again"
        ) from None
    return None


def _read_utf8_copy(
    reader: Callable[[Path], list[TextSection]], path: Path, text: str
) -> list[TextSection]:
    with tempfile.TemporaryDirectory(prefix="appliance-text-") as folder:
        copy = Path(folder) / f"document{path.suffix.lower()}"
        copy.write_text(text, encoding="utf-8")
        return reader(copy)


def load_sections(path: Path, ocr: OcrConfig | None = None) -> list[TextSection]:
    """Read one file into non-empty text sections, or raise `LoadError` (pages that could not
    be read are left out: `load_document` names them)."""
    return load_document(path, ocr).sections


def load_document(path: Path, ocr: OcrConfig | None = None) -> LoadedFile:
    """Read one file into non-empty text sections, or raise `LoadError`; scanned PDF pages and
    images are read with OCR (`ocr`, default: on, in English)."""
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_EXTENSIONS:
        supported = ", ".join(sorted(SUPPORTED_EXTENSIONS))
        raise LoadError(f"unsupported file type '{suffix or path.name}' (supported: {supported})")
    if path.stat().st_size == 0:
        raise LoadError("empty file")
    if suffix in ZIP_FORMATS:
        check_zip_bounds(path)
    try:
        loaded = _read(path, suffix, ocr or OcrConfig())
    except (LoadError, MemoryError):  # the parser process reports running out of memory
        raise
    except Exception as exc:
        kind = suffix.lstrip(".").upper()
        raise LoadError(
            f"cannot read as {kind} ({type(exc).__name__}: {exc}); "
            "is the file corrupt or mislabelled?"
        ) from None
    sections = [s for s in loaded.sections if s.text.strip()]
    if not sections and loaded.problems:
        raise LoadError("; ".join(loaded.problems))
    if not sections:
        raise LoadError("no extractable text (no text layer, and no words found by OCR)")
    return LoadedFile(sections, loaded.problems)


def _read(path: Path, suffix: str, ocr: OcrConfig) -> LoadedFile:
    if suffix in OCR_READERS:
        return OCR_READERS[suffix](path, ocr)
    reader = READERS[suffix]
    wide_text = check_text_bytes(path) if suffix in TEXT_FORMATS else None
    if wide_text is None:
        return LoadedFile(reader(path))
    return LoadedFile(_read_utf8_copy(reader, path, wide_text))
