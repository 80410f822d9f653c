"""What the chat shows of an answer: checked sentences, marks, highlighted quotes, no markup."""

from appliance.answers import Source
from appliance.domain import RetrievedPassage
from appliance.verification import CitedText, verify_answer
from ui.render import UNSUPPORTED_MARK, answer_html, sources_html

TEXT = "Backups run every night at 02:00. Set backup_time to change it <b>now</b>."
SOURCE = Source(1, RetrievedPassage("c1", "d1", "/docs/backup.txt", 0, TEXT, 0.8))


def checks(answer: str) -> tuple:  # type: ignore[type-arg]
    return verify_answer(answer, [CitedText(1, "c1", TEXT)])


def test_unsupported_sentences_are_marked_and_model_markup_stays_text() -> None:
    shown = answer_html(
        checks("Backups run every night at 02:00 [1]. Restores take [an hour](http://x) [1].")
    )
    first, second = shown.split(" [1]. ", 1)
    assert UNSUPPORTED_MARK not in first and second.endswith(UNSUPPORTED_MARK)
    assert "[an hour](http://x)" in second  # shown as written: the chat renders no Markdown


def test_the_supporting_words_are_highlighted_in_the_escaped_passage() -> None:
    html = sources_html([SOURCE], checks=checks("Backups run every night at 02:00 [1]."))
    assert "<mark>Backups run every night at 02:00</mark>" in html
    assert "&lt;b&gt;now&lt;/b&gt;" in html and "<b>now</b>" not in html


def test_nothing_is_highlighted_for_an_unsupported_sentence() -> None:
    html = sources_html([SOURCE], checks=checks("Restores take an hour [1]."))
    assert "<mark>" not in html


def test_a_machine_read_passage_is_marked_ocr_with_its_confidence() -> None:
    from dataclasses import replace

    from appliance.audit import AuditPassage
    from ui.audit import passage_place

    scanned = Source(2, replace(SOURCE.passage, page=3, ocr=True, ocr_confidence=91.4))
    html = sources_html([SOURCE, scanned])
    typed_part, scanned_part = html.split('data-n="2"', 1)
    assert 'class="ocr"' not in typed_part
    assert ", page 3 " in scanned_part and ">OCR, confidence 91%</span>" in scanned_part
    recorded = AuditPassage(1, "c1", "d1", "/docs/scan.pdf", 3, "d1", "0" * 64, 0.8, True)
    assert passage_place(recorded) == "/docs/scan.pdf (page 3)"
    assert passage_place(replace(recorded, ocr=True, ocr_confidence=91.4)) == (
        "/docs/scan.pdf (page 3) (OCR, confidence 91%)"
    )
