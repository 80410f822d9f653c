"""Model output and file names are plain text everywhere: whatever the model or a file name
says, the chat and the documents view show it as written, with no link, image or HTML."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

import gradio as gr

from appliance.domain import FailedFile, IngestReport
from appliance.verification import CitedText, verify_answer
from ingest.service import IngestJob
from ui.chat import build_chat_tab
from ui.documents import job_text
from ui.render import AUTOLINK, answer_html, plain_html, plain_markdown

HOSTILE = (
    "See http://evil.example/x or www.evil.example, mail boss@evil.example. "
    '<img src="http://evil.example/p.png" onerror="alert(1)"> ![i](http://evil.example/i.png) '
    "[click](javascript:alert(1)) <a href='https://evil.example'>here</a> $$\\href{x}{y}$$"
)
EVIL_NAME = "/docs/<img src=x onerror=alert(1)>www.evil.example.txt"


class Elements(HTMLParser):
    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.text = ""
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text += data


def test_an_answer_is_shown_as_written_with_no_element_but_the_unsupported_mark() -> None:
    checks = verify_answer(HOSTILE + " [1].", [CitedText(1, "c1", "unrelated passage text")])
    shown = Elements(answer_html(checks))
    assert set(shown.tags) <= {"em"}, shown.tags  # only our own "not supported" mark
    assert "http://evil.example/x" in shown.text and "<img src=" in shown.text
    question = Elements(plain_html(HOSTILE + "\nsecond line"))
    assert set(question.tags) <= {"br"} and question.text == HOSTILE + "second line"


def test_the_chat_renders_no_markdown_and_no_latex() -> None:
    """Gradio's Markdown is GitHub-flavoured: it would turn http://, www. and e-mail addresses
    in escaped text into live links. The chat must not parse Markdown at all."""
    with gr.Blocks() as blocks:
        build_chat_tab(engine=Any, identifier=Any, max_question_chars=100)  # type: ignore[arg-type]
    chatbot = next(b for b in blocks.blocks.values() if isinstance(b, gr.Chatbot))
    assert chatbot.render_markdown is False
    assert chatbot.latex_delimiters == []
    assert chatbot.sanitize_html is True and not chatbot.reasoning_tags


def test_markdown_text_has_no_autolink_and_no_markup() -> None:
    shown = plain_markdown(HOSTILE)
    assert AUTOLINK.search(shown.replace("\u2060", "")) is not None  # there were some...
    for pattern in ("http://", "https://", "www.", "boss@"):
        assert pattern not in shown, pattern  # ...and none is left intact
    assert "<" not in shown.replace("\\<", "") and "$$" not in shown
    assert shown.replace("\u2060", "").replace("\\", "") == HOSTILE.replace("\\", "")
    for glued in ("report_www.evil.example.txt", "awww.evil.example", "2http://x.example"):
        assert "www." not in plain_markdown(glued) and "http:" not in plain_markdown(glued)


def test_file_names_in_the_ingestion_status_are_plain_text() -> None:
    failed = [FailedFile(EVIL_NAME, "not a PDF: <b>bad</b> see www.evil.example")]
    report = IngestReport(new=1, failed=failed)
    for job in (
        IngestJob(f"watch: {EVIL_NAME}", 2, 2, 3, 0.0, 1.0, report, None),
        IngestJob(f"watch: {EVIL_NAME}", 2, 1, 3, 0.0, 1.0, None, f"cannot read {EVIL_NAME}"),
        IngestJob(f"upload: {EVIL_NAME}", 2, 1, 3, 0.0, None, None, None),
    ):
        text = job_text(job).replace("\u2060", "")
        for markup in ("<img", "<b>"):
            assert markup not in text.replace(f"\\{markup}", ""), text
        assert "www.evil" in text  # the names are all there, as text...
        assert "www.evil" not in job_text(job)  # ...but never as an autolink
