"""The chat tab: streamed answers with [n] citations, and the sources they were built from."""

from __future__ import annotations

import html
from collections.abc import AsyncIterator
from typing import Any

import gradio as gr

from appliance.answers import Finished, Sentence, SourcesFound
from appliance.conversation import Turn
from appliance.errors import ApplianceError, BusyError
from appliance.generation import ModelIdentity
from appliance.verification import SentenceCheck
from appliance.web.chat import ChatEngine, Rewritten
from appliance.web.identity import Identifier
from ui.access import current_user
from ui.render import answer_html, document_name, plain_html, sources_html

THINKING = "…"
Messages = list[dict[str, Any]]
Update = tuple[Messages, str, list[Turn], str]


def model_html(model: ModelIdentity | None) -> str:
    """Which weights answered: the model file and the fine-tuned adapter, with short sha256."""
    if model is None or model.path is None:
        return ""
    text = f"Model: {document_name(model.path)} (sha256 {(model.sha256 or '')[:12]})"
    if model.adapter_sha256:
        adapter = document_name(model.adapter_path or "adapter")
        text += f" · adapter: {adapter} (sha256 {model.adapter_sha256[:12]})"
    return f'<p class="model-identity">{html.escape(text)}</p>'


def build_chat_tab(engine: ChatEngine, identifier: Identifier, max_question_chars: int) -> None:
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            chatbot = gr.Chatbot(
                label="Conversation",
                height=560,
                # Model output and questions are plain text: no Markdown (GFM would turn
                # http://, www. and e-mail addresses into links) and no LaTeX; the messages
                # are escaped HTML (ui.render.plain_html), sanitised once more by Gradio.
                sanitize_html=True,
                allow_tags=False,
                render_markdown=False,
                latex_delimiters=[],
                feedback_options=None,
                buttons=["copy"],
                elem_id="chatbot",
            )
            with gr.Row():
                question = gr.Textbox(
                    placeholder="Ask a question about your documents",
                    show_label=False,
                    lines=1,
                    max_lines=6,
                    max_length=max_question_chars,
                    scale=8,
                    elem_id="question",
                )
                ask = gr.Button("Ask", variant="primary", scale=1, elem_id="ask")
            new_conversation = gr.Button("New conversation", size="sm", elem_id="new-conversation")
        with gr.Column(scale=2):
            gr.Markdown("### Sources")
            sources = gr.HTML(
                '<p class="no-sources">Sources of the answer appear here.</p>', elem_id="sources"
            )
    turns = gr.State([])

    async def respond(
        text: str, history: Messages, past: list[Turn], request: gr.Request
    ) -> AsyncIterator[Update]:
        user = current_user(identifier, request)
        text = (text or "").strip()
        if not text:
            yield history, gr.skip(), past, ""
            return
        history = [
            *history,
            {"role": "user", "content": plain_html(text)},
            {"role": "assistant", "content": THINKING},
        ]
        panel = '<p class="no-sources">Searching…</p>'
        yield history, panel, past, ""
        searched: str | None = None
        standalone = text
        shown: list[SentenceCheck] = []  # sentences released so far, already checked
        try:
            async for event in engine.answer(user, text, past, channel="ui"):
                if isinstance(event, Rewritten):
                    standalone = event.standalone
                    searched = event.standalone if event.changed else None
                elif isinstance(event, SourcesFound):
                    panel = sources_html(event.sources, searched)
                elif isinstance(event, Sentence):
                    shown.append(event.check)
                    history[-1]["content"] = f"{answer_html(shown)} {THINKING}"
                elif isinstance(event, Finished):
                    answer = event.answer
                    checks = answer.sentences if answer.answer is not None else ()
                    panel = sources_html(answer.sources, searched, checks) + model_html(
                        answer.model
                    )
                    if answer.answer is not None:
                        history[-1]["content"] = answer_html(checks) or "(no answer)"
                        past = [*past, Turn(standalone, answer.answer)]
                    else:
                        history[-1]["content"] = plain_html(answer.message or "")
                else:
                    continue  # tokens: only checked sentences are shown
                yield history, panel, past, ""
        except BusyError as exc:
            history[-1]["content"] = plain_html(f"The assistant is busy. {exc}")
            yield history, panel, past, text
        except ApplianceError as exc:
            history[-1]["content"] = plain_html(f"Sorry, this question failed: {exc}")
            yield history, panel, past, text

    def reset() -> tuple[Messages, str, list[Turn], str]:
        return [], '<p class="no-sources">Sources of the answer appear here.</p>', [], ""

    outputs = [chatbot, sources, turns, question]
    for trigger in (ask.click, question.submit):
        trigger(
            respond,
            [question, chatbot, turns],
            outputs,
            concurrency_id="chat",
            show_progress="hidden",
        )
    new_conversation.click(reset, None, outputs, queue=False)
