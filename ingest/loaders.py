"""Turn one file into text sections with llama-index readers (stdlib `email` for .eml).

Every failure becomes a `LoadError` whose message names the problem and what to do.
"""

from __future__ import annotations

import codecs
import email
import email.policy
import tempfile
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

from appliance.domain import TextSection
from appliance.errors import LoadError
from ingest.archives import ZIP_FORMATS, check_zip_bounds

TEXT_SNIFF_BYTES = 8192


def _pdf(path: Path) -> list[TextSection]:
    import pypdf
    from llama_index.readers.file import PDFReader

    try:
        reader = pypdf.PdfReader(path)
        if reader.is_encrypted and not reader.decrypt(""):
            raise LoadError("encrypted PDF: remove the password and ingest it again")
    except pypdf.errors.PdfReadError as exc:
        raise LoadError(f"corrupt PDF ({exc}): re-export the file and ingest it again") from None
    docs = PDFReader(return_full_document=False).load_data(path)
    return [TextSection(doc.text, page=number) for number, doc in enumerate(docs, start=1)]


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
    from bs4 import BeautifulSoup
    from llama_index.readers.file import HTMLTagReader

    sections = [
        TextSection(doc.text, section=doc.metadata.get("tag_id") or None)
        for doc in HTMLTagReader(tag="section").load_data(path)
    ]
    if any(s.text.strip() for s in sections):
        return sections
    # A page without <section> elements: its whole visible text is one section.
    soup = BeautifulSoup(path.read_text(encoding="utf-8-sig"), "html.parser")
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
    ".pdf": _pdf,
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
TEXT_FORMATS = {".csv", ".html", ".htm", ".md", ".markdown", ".txt", ".text"}
SUPPORTED_EXTENSIONS = frozenset(READERS)


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


def load_sections(path: Path) -> list[TextSection]:
    """Read one file into non-empty text sections, or raise `LoadError`."""
    suffix = path.suffix.lower()
    reader = READERS.get(suffix)
    if reader is None:
        supported = ", ".join(sorted(SUPPORTED_EXTENSIONS))
        raise LoadError(f"unsupported file type '{suffix or path.name}' (supported: {supported})")
    if path.stat().st_size == 0:
        raise LoadError("empty file")
    if suffix in ZIP_FORMATS:
        check_zip_bounds(path)
    wide_text = check_text_bytes(path) if suffix in TEXT_FORMATS else None
    try:
        sections = reader(path) if wide_text is None else _read_utf8_copy(reader, path, wide_text)
    except (LoadError, MemoryError):  # the parser process reports running out of memory
        raise
    except Exception as exc:
        kind = suffix.lstrip(".").upper()
        raise LoadError(
            f"cannot read as {kind} ({type(exc).__name__}: {exc}); "
            "is the file corrupt or mislabelled?"
        ) from None
    sections = [s for s in sections if s.text.strip()]
    if not sections:
        raise LoadError("no extractable text (a scanned document without a text layer?)")
    return sections
