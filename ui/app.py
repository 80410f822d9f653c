"""The whole UI: one Blocks with a tab per role. Each handler checks the role again."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from appliance.audit import AuditLog
from appliance.audit.feedback import Feedback
from appliance.auth import User
from appliance.auth.identity import Identifier
from appliance.chat import ChatEngine
from ingest.service import IndexService
from ui.access import current_user
from ui.audit import build_audit_tab
from ui.chat import build_chat_tab
from ui.documents import DocumentsConfig, build_documents_tab
from ui.render import plain_markdown

CSS = """
.sources .source { margin: 0 0 .8rem; }
.sources blockquote { margin: .3rem 0 0; padding: .4rem .6rem; border-left: 3px solid #888;
  white-space: pre-wrap; font-size: .9em; max-height: 14rem; overflow-y: auto; }
.sources .score { color: #666; font-size: .85em; }
.sources .ocr { border: 1px solid #b36b00; color: #b36b00; border-radius: 3px;
  padding: 0 .3em; font-size: .8em; }
.searched-for { font-style: italic; }
.audit-passages { font-size: .8em; }
.audit-passages code { word-break: break-all; }
.audit-record dt { font-weight: bold; margin-top: .4rem; }
.audit-record dd { margin-left: 0; white-space: pre-wrap; }
"""
# System fonts only: a theme's default web fonts would be fetched from outside the building.
THEME = gr.themes.Default(
    font=["ui-sans-serif", "system-ui", "sans-serif"],
    font_mono=["ui-monospace", "monospace"],
)


@dataclass(frozen=True)
class UiParts:
    engine: ChatEngine
    identifier: Identifier
    index: IndexService
    audit: AuditLog
    feedback: Feedback
    documents: DocumentsConfig
    exports_dir: Path
    max_question_chars: int
    queue_size: int


def build_blocks(parts: UiParts) -> gr.Blocks:
    # Files Gradio holds (uploads in flight, audit exports) are purged after half an hour.
    with gr.Blocks(
        title="Private assistant", analytics_enabled=False, delete_cache=(600, 1800)
    ) as blocks:
        with gr.Row():
            gr.Markdown("## Private assistant")
            whoami = gr.Markdown(elem_id="whoami")
        with gr.Tabs():
            with gr.Tab("Chat", id="chat"):
                build_chat_tab(
                    parts.engine, parts.identifier, parts.max_question_chars, parts.feedback
                )
            with gr.Tab("Documents", id="documents", visible=False) as documents_tab:
                build_documents_tab(documents_tab, parts.index, parts.identifier, parts.documents)
            with gr.Tab("Audit", id="audit", visible=False) as audit_tab:
                build_audit_tab(
                    audit_tab, parts.audit, parts.identifier, parts.exports_dir, parts.feedback
                )

        def on_load(request: gr.Request) -> tuple[str, gr.Tab, gr.Tab]:
            user: User = current_user(parts.identifier, request)
            name, groups = plain_markdown(user.name), plain_markdown(", ".join(user.groups))
            who = f"Signed in as **{name}** ({user.role}; groups: {groups}) · "
            who += "[Sign out](/logout)"
            return who, gr.Tab(visible=user.is_admin), gr.Tab(visible=user.is_auditor)

        blocks.load(on_load, None, [whoami, documents_tab, audit_tab])
    blocks.queue(
        max_size=max(4, parts.queue_size * 4), default_concurrency_limit=parts.queue_size + 1
    )
    return blocks
