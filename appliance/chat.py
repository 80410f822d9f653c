"""One conversation turn for the web (UI and API): the assistant's stream, off the event loop.

The rewrite of a follow-up, retrieval, generation and the audit record all happen in
`Assistant.stream` (its first event, `Rewritten`, is the standalone question). Its stream is
synchronous and holds the model between events, so each step runs in a worker thread, and
the stream is closed in `finally`: a browser tab closed or an API client gone mid-answer
releases the model at once, and the stopped answer is recorded.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass

import anyio

from appliance.answers import Event, EventStream, Finished, Question, Turn
from appliance.auth import User
from appliance.metrics import Metrics
from appliance.rag import Assistant


@dataclass
class ChatEngine:
    assistant: Assistant
    metrics: Metrics
    top_k: int

    async def answer(
        self, user: User, text: str, history: Sequence[Turn], channel: str, *, live: bool = True
    ) -> AsyncGenerator[Event, None]:
        """`live`: the caller shows events as they come (see `Assistant.stream`)."""
        question = Question(
            text=text,
            user=user.name,
            groups=user.groups,
            k=self.top_k,
            channel=channel,
            history=tuple(history),
        )
        stream = self.assistant.stream(question, live=live)  # runs on the first `next`
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
