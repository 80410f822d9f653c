"""One conversation step for the web (UI and API): rewrite, retrieve, stream, record.

The assistant's stream is synchronous and holds the model between events, so each step runs
in a worker thread, and the stream is closed in `finally`: a browser tab closed or an API
client gone mid-answer releases the model at once, and the stopped answer is recorded.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass

import anyio

from appliance.answers import Event, EventStream, Finished, Question
from appliance.auth import User
from appliance.conversation import FollowUpRewriter, Turn
from appliance.errors import ApplianceError, ModelError
from appliance.rag import Assistant
from appliance.web.metrics import Metrics


@dataclass(frozen=True)
class Rewritten:
    """First event of a web answer: the standalone question retrieval used."""

    standalone: str
    changed: bool


@dataclass
class ChatEngine:
    assistant: Assistant
    rewriter: FollowUpRewriter
    metrics: Metrics
    top_k: int

    async def answer(
        self, user: User, text: str, history: Sequence[Turn], channel: str, *, live: bool = True
    ) -> AsyncGenerator[Rewritten | Event, None]:
        """`live`: the caller shows events as they come (see `Assistant.stream`)."""
        asked = Question(
            text=text, user=user.name, groups=user.groups, k=self.top_k, channel=channel
        )
        try:
            try:
                standalone = await anyio.to_thread.run_sync(self.rewriter.standalone, history, text)
            except Exception as exc:  # recorded like any question that fails
                await anyio.to_thread.run_sync(
                    self.assistant.record_failure, asked, exc, "rewriting the follow-up"
                )
                if isinstance(exc, ApplianceError):
                    raise
                raise ModelError(f"the model failed while reading the conversation: {exc}") from exc
            yield Rewritten(standalone, standalone != text.strip())
            question = dataclasses.replace(
                asked, standalone=standalone if standalone != text.strip() else None
            )
            stream = await anyio.to_thread.run_sync(
                functools.partial(self.assistant.stream, question, live=live)
            )
        except Exception as exc:
            self.metrics.failed(channel, exc)
            raise
        try:
            while True:
                event = await anyio.to_thread.run_sync(_next_event, stream)
                if event is None:
                    return
                if isinstance(event, Finished):
                    self.metrics.answered(event.answer, channel)
                yield event
        except Exception as exc:
            self.metrics.failed(channel, exc)
            raise
        finally:
            # Not cancellable: the close must run even when the caller is being cancelled.
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(stream.close)


def _next_event(stream: EventStream) -> Event | None:
    return next(stream, None)
