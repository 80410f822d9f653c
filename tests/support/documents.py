"""Real files of every supported format, written by the libraries that produce them."""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path


def write_pdf(path: Path, pages: list[str], password: str | None = None) -> Path:
    from reportlab.pdfgen import canvas

    pdf = canvas.Canvas(str(path))
    for text in pages:
        pdf.drawString(72, 720, text)
        pdf.showPage()
    pdf.save()
    if password:
        from pypdf import PdfReader, PdfWriter

        writer = PdfWriter(clone_from=PdfReader(path))
        writer.encrypt(user_password=password, owner_password=password)
        with path.open("wb") as handle:
            writer.write(handle)
    return path


def write_docx(path: Path, paragraphs: list[str]) -> Path:
    import docx

    document = docx.Document()
    for text in paragraphs:
        document.add_paragraph(text)
    document.save(str(path))
    return path


def write_pptx(path: Path, slides: list[str]) -> Path:
    from pptx import Presentation

    deck = Presentation()
    for text in slides:
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = text.split(".")[0]
        slide.placeholders[1].text = text
    deck.save(str(path))
    return path


def write_xlsx(path: Path, rows: list[list[str]]) -> Path:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    for row in rows:
        sheet.append(row)
    book.save(str(path))
    return path


def write_eml(path: Path, subject: str, body: str) -> Path:
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = "helpdesk@acme.example"
    message["To"] = "staff@acme.example"
    message.set_content(body)
    path.write_bytes(message.as_bytes())
    return path


def write_corpus(folder: Path) -> dict[str, Path]:
    """One file of each supported format, each with a distinctive fact."""
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "pdf": write_pdf(
            folder / "manual.pdf",
            ["The pump runs at 1450 rpm.", "Replace the filter every 90 days."],
        ),
        "docx": write_docx(folder / "policy.docx", ["Visitors sign in at the front desk."]),
        "pptx": write_pptx(
            folder / "deck.pptx",
            ["Quarterly goals. Ship the appliance.", "Hiring. Two engineers in Q3."],
        ),
        "xlsx": write_xlsx(folder / "budget.xlsx", [["item", "cost"], ["laptops", "12000"]]),
        "csv": _write(folder / "phones.csv", "name,extension\nHelpdesk,4444\nReception,1000\n"),
        "html": _write(
            folder / "guide.html",
            "<html><body><section id='doors'><h1>Doors</h1>"
            "<p>The back door closes at 19:00.</p></section></body></html>",
        ),
        "md": _write(folder / "notes.md", "# Notes\n\nThe wifi is called ACME-Guest.\n"),
        "txt": _write(folder / "readme.txt", "The printer on floor two is named Gutenberg.\n"),
        "eml": write_eml(folder / "mail.eml", "Fire drill", "The fire drill is on Thursday."),
    }


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


DOCX_CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships'
    '+xml"/><Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-'
    'officedocument.wordprocessingml.document.main+xml"/></Types>'
)


DOCX_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
    'relationships/officeDocument" Target="word/document.xml"/></Relationships>'
)


def write_docx_bomb(path: Path, unpacked_mb: int = 300) -> Path:
    """A valid-looking DOCX whose word/document.xml is `unpacked_mb` MB of repetitive XML,
    written in 1 MB pieces so that this process never holds it whole."""
    import zipfile

    paragraph = b"<w:p><w:r><w:t>" + b"A" * 1000 + b"</w:t></w:r></w:p>"
    piece = paragraph * (1_000_000 // len(paragraph))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", DOCX_CONTENT_TYPES)
        archive.writestr("_rels/.rels", DOCX_RELS)
        with archive.open("word/document.xml", "w", force_zip64=True) as member:
            member.write(
                b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?><w:document xmlns:w='
                b'"http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>'
            )
            for _ in range(unpacked_mb):
                member.write(piece)
            member.write(b"</w:body></w:document>")
    return path
