"""Untrusted text (documents, model output) made safe to show: no HTML, no remote images."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Sequence
from pathlib import PurePath
from typing import Any

from appliance.answers import Source

MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-!<>|~])")
SNIPPET_CHARS = 1200


def plain_markdown(text: str) -> str:
    """`text` as Markdown that renders exactly as written: no links, images, HTML or emphasis."""
    return MARKDOWN_SPECIAL.sub(r"\\\1", text)


def document_name(source: str) -> str:
    return PurePath(source).name or source


def document_link(source: Source) -> str:
    passage = source.passage
    anchor = f"#page={passage.page}" if passage.page else ""
    return f"/documents/{html.escape(passage.doc_id)}{anchor}"


def sources_html(sources: Sequence[Source], searched_for: str | None = None) -> str:
    parts = ['<div class="sources">']
    if searched_for:
        parts.append(
            f'<p class="searched-for">Searched for: <q>{html.escape(searched_for)}</q></p>'
        )
    if not sources:
        parts.append('<p class="no-sources">No passages.</p>')
    for source in sources:
        p = source.passage
        where = (
            f", page {p.page}" if p.page else (f", {html.escape(p.section)}" if p.section else "")
        )
        text = p.text if len(p.text) <= SNIPPET_CHARS else p.text[:SNIPPET_CHARS] + "…"
        parts.append(
            f'<details class="source" data-n="{source.n}" open>'
            f"<summary><b>[{source.n}]</b> "
            f'<a href="{document_link(source)}" target="_blank" rel="noopener noreferrer">'
            f"{html.escape(document_name(p.source))}</a>{where} "
            f'<span class="score">score {p.score:.2f}</span></summary>'
            f'<blockquote class="passage">{html.escape(text)}</blockquote></details>'
        )
    parts.append("</div>")
    return "".join(parts)


def json_block(data: Any) -> str:
    return f"<pre>{html.escape(json.dumps(data, indent=2, ensure_ascii=False))}</pre>"
