from pathlib import Path

import pytest

from appliance.errors import LoadError
from ingest.loaders import load_sections
from tests.support.documents import write_corpus, write_docx_bomb, write_pdf


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_corpus(tmp_path_factory.mktemp("corpus"))


def text_of(path: Path) -> str:
    return "\n".join(section.text for section in load_sections(path))


@pytest.mark.parametrize(
    ("kind", "fact"),
    [
        ("pdf", "1450 rpm"),
        ("docx", "front desk"),
        ("pptx", "Two engineers"),
        ("xlsx", "12000"),
        ("csv", "4444"),
        ("html", "19:00"),
        ("md", "ACME-Guest"),
        ("txt", "Gutenberg"),
        ("eml", "Thursday"),
    ],
)
def test_each_format_yields_its_text(corpus: dict[str, Path], kind: str, fact: str) -> None:
    assert fact in text_of(corpus[kind])


def test_pdf_keeps_page_numbers(corpus: dict[str, Path]) -> None:
    sections = load_sections(corpus["pdf"])
    assert [(s.page, "filter" in s.text) for s in sections] == [(1, False), (2, True)]


def test_pptx_keeps_slide_numbers(corpus: dict[str, Path]) -> None:
    assert [s.page for s in load_sections(corpus["pptx"])] == [1, 2]


def test_html_keeps_section_ids(corpus: dict[str, Path]) -> None:
    assert load_sections(corpus["html"])[0].section == "doors"


def test_html_without_sections_uses_body_text_not_scripts(tmp_path: Path) -> None:
    page = tmp_path / "plain.html"
    page.write_text(
        "<html><head><title>T</title><script>var secret=1;</script></head>"
        "<body><p>Visible words.</p></body></html>",
        encoding="utf-8",
    )
    sections = load_sections(page)
    assert "Visible words." in sections[0].text
    assert "secret" not in sections[0].text


def test_csv_rows_keep_their_headers(corpus: dict[str, Path]) -> None:
    first = load_sections(corpus["csv"])[0]
    assert "extension: 4444" in first.text
    assert first.section == "row 2"


def test_eml_includes_subject(corpus: dict[str, Path]) -> None:
    assert "Subject: Fire drill" in text_of(corpus["eml"])


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.txt", b"", "empty file"),
        ("truncated.png", b"\x89PNG\r\n", "cannot read as PNG"),
        ("drawing.svg", b"<svg/>", "unsupported file type '.svg'"),
        ("noext", b"hello", "unsupported file type 'noext'"),
        ("binary.txt", b"abc\x00\x01\x02def", "binary content"),
        ("latin1.md", "caf\xe9 cr\xe8me".encode("latin-1"), "undecodable: not UTF-8"),
        ("broken.pdf", b"%PDF-1.4 this is not a pdf", "PDF"),
        ("broken.docx", b"PK\x03\x04 not a zip", "cannot read as DOCX"),
        ("broken.xlsx", b"not a spreadsheet", "cannot read as XLSX"),
        ("broken.pptx", b"not a deck", "cannot read as PPTX"),
        ("blank.html", b"<html><body>   </body></html>", "no extractable text"),
    ],
)
def test_bad_files_raise_a_clear_reason(
    tmp_path: Path, name: str, content: bytes, reason: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(LoadError, match=reason):
        load_sections(path)


def test_encrypted_pdf_is_refused(tmp_path: Path) -> None:
    path = write_pdf(tmp_path / "secret.pdf", ["Top secret."], password="hunter2")
    with pytest.raises(LoadError, match="encrypted PDF"):
        load_sections(path)


def test_blank_pdf_is_refused(tmp_path: Path) -> None:
    path = write_pdf(tmp_path / "blank.pdf", [""])
    with pytest.raises(LoadError, match="no extractable text"):
        load_sections(path)


def test_utf16_with_an_unpaired_surrogate_is_invalid_utf16_not_binary(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"\xff\xfe" + b"\x00\xd8" + b"a\x00")
    with pytest.raises(LoadError, match="invalid UTF-16") as raised:
        load_sections(path)
    assert "binary" not in str(raised.value)
    assert "save the file as UTF-8" in str(raised.value)


@pytest.mark.parametrize(
    ("name", "codec"), [("notes.txt", "utf-16"), ("notes.md", "utf-16-be"), ("n.txt", "utf-32")]
)
def test_text_with_a_utf16_or_utf32_byte_order_mark_is_read(
    tmp_path: Path, name: str, codec: str
) -> None:
    path = tmp_path / name
    bom = "\ufeff" if codec.endswith("-be") else ""  # the -be codecs write no mark
    path.write_bytes((bom + "# Wide\n\nThe café opens at nine.").encode(codec))
    assert "The café opens at nine." in text_of(path)


# Zip-based formats: unpacked sizes are checked before a reader unpacks anything.


def test_docx_zip_bomb_is_refused_with_the_limit_before_it_is_unpacked(tmp_path: Path) -> None:
    import resource
    import time

    bomb = write_docx_bomb(tmp_path / "bomb.docx")
    assert bomb.stat().st_size < 2_000_000
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    with pytest.raises(LoadError) as refused:
        load_sections(bomb)
    assert time.monotonic() - started < 2
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before < 50_000  # KB
    message = str(refused.value)
    assert message.startswith("refused: its part 'word/document.xml' unpacks to 300.")
    assert "over the limit of 100:1" in message and "zip bomb" in message


def test_many_small_parts_over_the_total_unpacked_limit_are_refused(tmp_path: Path) -> None:
    import zipfile

    path = tmp_path / "parts.xlsx"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for number in range(120):  # each part is under the ratio check's 1 MB exemption
            archive.writestr(f"xl/worksheets/sheet{number}.xml", b"<row/>" * 160_000)
    with pytest.raises(LoadError, match=r"refused: the XLSX unpacks to 115\.2 MB, over the limit"):
        load_sections(path)


def test_real_office_documents_pass_the_unpacked_size_check(
    corpus: dict[str, Path], tmp_path: Path
) -> None:
    from ingest.archives import check_zip_bounds
    from tests.support.documents import write_xlsx

    for kind in ("docx", "pptx", "xlsx"):
        check_zip_bounds(corpus[kind])
    # A large, regular spreadsheet: 40,000 rows of repetitive data.
    rows = [[f"row {n}", "North", "Widget", str(n % 97)] for n in range(40_000)]
    big = write_xlsx(tmp_path / "big.xlsx", rows)
    check_zip_bounds(big)
    assert "row 39999" in text_of(big)
