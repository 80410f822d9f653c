"""The chat tab: streamed answers with [n] citations, and the sources they were built from."""

from __future__ import annotations

import html
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from appliance.answers import Event, Finished, Rewritten, Sentence, SourcesFound, Turn
from appliance.audit.feedback import Feedback
from appliance.auth.identity import Identifier
from appliance.chat import ChatEngine
from appliance.errors import ApplianceError, BusyError
from appliance.generation import ModelIdentity
from appliance.verification import SentenceCheck
from ui.access import current_user
from ui.feedback import AnswerIds, rate_handler
from ui.render import answer_html, document_name, plain_html, sources_html

THINKING = "…"
NO_SOURCES = '<p class="no-sources">Sources of the answer appear here.</p>'
Messages = list[dict[str, Any]]
Update = tuple[Messages, str, list[Turn], str, AnswerIds]


def model_html(model: ModelIdentity | None) -> str:
    """Which weights answered: the model file and the fine-tuned adapter, with short sha256."""
    if model is None or model.path is None:
        return ""
    text = f"Model: {document_name(model.path)} (sha256 {(model.sha256 or '')[:12]})"
    if model.adapter_sha256:
        adapter = document_name(model.adapter_path or "adapter")
        text += f" · adapter: {adapter} (sha256 {model.adapter_sha256[:12]})"
    return f'<p class="model-identity">{html.escape(text)}</p>'


@dataclass(frozen=True)
class _ChatView:
    chatbot: gr.Chatbot
    question: gr.Textbox
    ask: gr.Button
    correction: gr.Textbox
    rated: gr.Markdown
    new_conversation: gr.Button
    sources: gr.HTML


def _chatbot(rating: bool) -> gr.Chatbot:
    return gr.Chatbot(
        label="Conversation",
        height=560,
        # Model output and questions are plain text: no Markdown (GFM would turn
        # http://, www. and e-mail addresses into links) and no LaTeX; the messages
        # are escaped HTML (ui.render.plain_html), sanitised once more by Gradio.
        sanitize_html=True,
        allow_tags=False,
        render_markdown=False,
        latex_delimiters=[],
        # Thumbs up/down on each answer (appliance.audit.feedback), when offered.
        feedback_options=("Like", "Dislike") if rating else None,
        buttons=["copy"],
        elem_id="chatbot",
    )


def _chat_layout(max_question_chars: int, rating: bool) -> _ChatView:
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            chatbot = _chatbot(rating)
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
            correction = gr.Textbox(
                label="Correction (optional): write the right answer, then rate the answer 👎",
                lines=1,
                max_lines=4,
                max_length=4000,
                visible=rating,
                elem_id="correction",
            )
            rated = gr.Markdown(elem_id="feedback-note")
            new_conversation = gr.Button("New conversation", size="sm", elem_id="new-conversation")
        with gr.Column(scale=2):
            gr.Markdown("### Sources")
            sources = gr.HTML(NO_SOURCES, elem_id="sources")
    return _ChatView(chatbot, question, ask, correction, rated, new_conversation, sources)


@dataclass
class _Step:
    """One question's page state while its answer streams in."""

    history: Messages
    past: list[Turn]
    ids: AnswerIds
    standalone: str
    panel: str = '<p class="no-sources">Searching…</p>'
    searched: str | None = None
    shown: list[SentenceCheck] = field(default_factory=list)  # released so far, checked

    def update(self, question: str = "") -> Update:
        return self.history, self.panel, self.past, question, self.ids

    def apply(self, event: Event) -> bool:
        """Take one event of the engine; whether the page changes."""
        if isinstance(event, Rewritten):
            self.standalone = event.standalone
            self.searched = event.standalone if event.changed else None
        elif isinstance(event, SourcesFound):
            self.panel = sources_html(event.sources, self.searched)
        elif isinstance(event, Sentence):
            self.shown.append(event.check)
            self.history[-1]["content"] = f"{answer_html(self.shown)} {THINKING}"
        elif isinstance(event, Finished):
            self.finish(event)
        else:
            return False  # tokens: only checked sentences are shown
        return True

    def finish(self, event: Finished) -> None:
        answer = event.answer
        checks = answer.sentences if answer.answer is not None else ()
        self.panel = sources_html(answer.sources, self.searched, checks) + model_html(answer.model)
        self.ids = {**self.ids, len(self.history) - 1: answer.audit_id}
        if answer.answer is not None:
            self.history[-1]["content"] = answer_html(checks) or "(no answer)"
            self.past = [*self.past, Turn(self.standalone, answer.answer)]
        else:
            self.history[-1]["content"] = plain_html(answer.message or "")

    def fail(self, message: str) -> None:
        self.history[-1]["content"] = plain_html(message)


def _respond_handler(
    engine: ChatEngine, identifier: Identifier
) -> Callable[..., AsyncIterator[Update]]:
    async def respond(
        text: str, history: Messages, past: list[Turn], ids: AnswerIds, request: gr.Request
    ) -> AsyncIterator[Update]:
        user = current_user(identifier, request)
        text = (text or "").strip()
        if not text:
            yield history, gr.skip(), past, "", ids
            return
        asked = {"role": "user", "content": plain_html(text)}
        thinking = {"role": "assistant", "content": THINKING}
        step = _Step([*history, asked, thinking], past, ids, standalone=text)
        yield step.update()
        try:
            async for event in engine.answer(user, text, past, channel="ui"):
                if step.apply(event):
                    yield step.update()
        except BusyError as exc:
            step.fail(f"The assistant is busy. {exc}")
            yield step.update(text)
        except ApplianceError as exc:
            step.fail(f"Sorry, this question failed: {exc}")
            yield step.update(text)

    return respond


def reset() -> Update:
    return [], NO_SOURCES, [], "", {}


def build_chat_tab(
    engine: ChatEngine,
    identifier: Identifier,
    max_question_chars: int,
    feedback: Feedback | None = None,
) -> None:
    view = _chat_layout(max_question_chars, rating=feedback is not None)
    turns = gr.State([])
    answer_ids = gr.State({})  # chat message index -> audit id of that answer
    outputs = [view.chatbot, view.sources, turns, view.question, answer_ids]
    if feedback is not None:
        view.chatbot.like(
            rate_handler(feedback, identifier),
            [answer_ids, view.correction],
            [view.rated, view.correction],
            api_name="rate_answer",
        )
    respond = _respond_handler(engine, identifier)
    for trigger in (view.ask.click, view.question.submit):
        trigger(
            respond,
            [view.question, view.chatbot, turns, answer_ids],
            outputs,
            concurrency_id="chat",
            show_progress="hidden",
        )
    view.new_conversation.click(reset, None, outputs, queue=False)
