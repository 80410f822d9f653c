"""Untrusted text (documents, model output) made safe to show: no HTML, no remote images."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Sequence
from pathlib import PurePath
from typing import Any

from appliance.answers import Source
from appliance.domain import RetrievedPassage
from appliance.verification import SentenceCheck

MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-!<>|~$&])")
# What GitHub-flavoured Markdown turns into a link with no markup at all: http://, https://,
# ftp://, www. and e-mail addresses. A word joiner (invisible, not copied as a space) inside
# each breaks the pattern.
AUTOLINK = re.compile(r"(?i)(https?|ftp|www)(?=[:.])|(@)")  # no \b: "_www." links too
WORD_JOINER = "\u2060"
SNIPPET_CHARS = 1200
UNSUPPORTED_MARK = '<em class="unsupported">⚠ (not supported by the passage it cites)</em>'


def plain_markdown(text: str) -> str:
    """`text` as Markdown that renders exactly as written: no links (autolinks included),
    images, HTML or emphasis. For gr.Markdown; the chat renders no Markdown (`plain_html`)."""
    unlinked = AUTOLINK.sub(lambda m: f"{m[1]}{WORD_JOINER}" if m[1] else f"{WORD_JOINER}@", text)
    return MARKDOWN_SPECIAL.sub(r"\\\1", unlinked)


def plain_html(text: str) -> str:
    """`text` as HTML that shows exactly as written: every markup character escaped, line
    breaks kept. For components that render HTML without Markdown (the chat: its Chatbot has
    `render_markdown=False`, so nothing is autolinked either)."""
    return html.escape(text, quote=True).replace("\n", "<br>")


def answer_html(checks: Sequence[SentenceCheck]) -> str:
    """The answer's sentences as plain text in HTML, each unsupported one visibly marked."""
    parts = []
    for check in checks:
        text = plain_html(check.text)
        parts.append(f"{text} {UNSUPPORTED_MARK}" if check.supported is False else text)
    return " ".join(parts)


def quote_spans(checks: Sequence[SentenceCheck]) -> dict[int, list[tuple[int, int]]]:
    """Per passage number, the character spans that support a sentence of the answer."""
    spans: dict[int, list[tuple[int, int]]] = {}
    for check in checks:
        if check.supported and check.quote is not None:
            spans.setdefault(check.quote.n, []).append((check.quote.start, check.quote.end))
    return spans


def highlighted(text: str, spans: Sequence[tuple[int, int]]) -> str:
    """`text` escaped, with the spans in <mark>; cut to SNIPPET_CHARS unless a span is later."""
    limit = max([SNIPPET_CHARS, *(end for _, end in spans)])
    shown = text if len(text) <= limit else text[:limit]
    parts, at = [], 0
    for start, end in sorted(spans):
        start, end = max(start, at), min(end, len(shown))
        if start >= end:
            continue
        parts.append(html.escape(shown[at:start]))
        parts.append(f"<mark>{html.escape(shown[start:end])}</mark>")
        at = end
    parts.append(html.escape(shown[at:]))
    return "".join(parts) + ("…" if len(shown) < len(text) else "")


def document_name(source: str) -> str:
    return PurePath(source).name or source


def document_link(source: Source) -> str:
    passage = source.passage
    anchor = f"#page={passage.page}" if passage.page else ""
    return f"/documents/{html.escape(passage.doc_id)}{anchor}"


def ocr_note(ocr: bool, confidence: float | None) -> str:
    """How a machine-read passage is marked: plain text, empty for typed text."""
    if not ocr:
        return ""
    return "OCR" + (f", confidence {confidence:.0f}%" if confidence is not None else "")


def ocr_badge(passage: RetrievedPassage) -> str:
    note = ocr_note(passage.ocr, passage.ocr_confidence)
    if not note:
        return ""
    return (
        '<span class="ocr" title="Machine-read from a scan by OCR: words may be misread; '
        f'check the original document">{html.escape(note)}</span> '
    )


def sources_html(
    sources: Sequence[Source],
    searched_for: str | None = None,
    checks: Sequence[SentenceCheck] = (),
) -> str:
    parts = ['<div class="sources">']
    if searched_for:
        parts.append(
            f'<p class="searched-for">Searched for: <q>{html.escape(searched_for)}</q></p>'
        )
    if not sources:
        parts.append('<p class="no-sources">No passages.</p>')
    spans = quote_spans(checks)
    for source in sources:
        p = source.passage
        where = (
            f", page {p.page}" if p.page else (f", {html.escape(p.section)}" if p.section else "")
        )
        parts.append(
            f'<details class="source" data-n="{source.n}" open>'
            f"<summary><b>[{source.n}]</b> "
            f'<a href="{document_link(source)}" target="_blank" rel="noopener noreferrer">'
            f"{html.escape(document_name(p.source))}</a>{where} {ocr_badge(p)}"
            f'<span class="score">score {p.score:.2f}</span></summary>'
            f'<blockquote class="passage">{highlighted(p.text, spans.get(source.n, []))}'
            "</blockquote></details>"
        )
    parts.append("</div>")
    return "".join(parts)


def json_block(data: Any) -> str:
    return f"<pre>{html.escape(json.dumps(data, indent=2, ensure_ascii=False))}</pre>"
