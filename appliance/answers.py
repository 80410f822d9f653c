"""What a question gets back: our own frozen types, with the stable `--json` shape."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from appliance.audit import Outcome
from appliance.domain import RetrievedPassage
from appliance.generation import ModelIdentity
from appliance.verification import SentenceCheck

NO_MODEL = ModelIdentity(path=None, sha256=None)  # no model was needed (nothing found...)
MAX_QUESTION_CHARS = 4000  # a longer question (or standalone question) is refused


@dataclass(frozen=True)
class Turn:
    """An earlier turn of a conversation."""

    question: str  # the standalone form it was answered as
    answer: str


@dataclass(frozen=True)
class Question:
    text: str
    user: str
    groups: tuple[str, ...]
    k: int
    retrieve_only: bool = False
    channel: str = "cli"
    # A follow-up rewritten into a standalone question; retrieval uses it. Set by the
    # assistant's own rewrite step (from `history`), or given as is.
    standalone: str | None = None
    # A turn of a conversation (web chat, /v1): the earlier turns, oldest first (empty for
    # the first turn). None for a question on its own (CLI, eval): nothing to rewrite.
    history: tuple[Turn, ...] | None = None

    @property
    def search_text(self) -> str:
        return self.standalone or self.text


@dataclass(frozen=True)
class Source:
    n: int
    passage: RetrievedPassage

    def to_json(self) -> dict[str, Any]:
        p = self.passage
        return {
            "n": self.n,
            "chunk_id": p.chunk_id,
            "doc_id": p.doc_id,
            "source": p.source,
            "page": p.page,
            "section": p.section,
            "score": round(p.score, 4),
            "text": p.text,
            # Machine-read from a scan: the text may hold misread words.
            "ocr": p.ocr,
            "ocr_confidence": p.ocr_confidence,
        }


@dataclass(frozen=True)
class Timings:
    retrieve_ms: float
    first_token_ms: float | None = None
    total_ms: float = 0.0
    tokens_per_s: float | None = None

    def to_json(self) -> dict[str, float | None]:
        def rounded(value: float | None) -> float | None:
            return None if value is None else round(value, 1)

        return {
            "retrieve_ms": rounded(self.retrieve_ms),
            "first_token_ms": rounded(self.first_token_ms),
            "total_ms": rounded(self.total_ms),
            "tokens_per_s": rounded(self.tokens_per_s),
        }


@dataclass(frozen=True)
class Answer:
    outcome: Outcome
    answer: str | None
    message: str | None  # shown instead of an answer (nothing found...)
    citations: tuple[int, ...]
    sources: tuple[Source, ...]
    model: ModelIdentity | None
    audit_id: str
    timings: Timings
    # Every passage the search returned (top k, before the threshold and the context fit).
    retrieved: tuple[RetrievedPassage, ...] = ()
    # Each sentence the model wrote, checked against the passages it cites.
    sentences: tuple[SentenceCheck, ...] = ()

    @property
    def unsupported_sentences(self) -> int:
        return sum(1 for check in self.sentences if check.supported is False)

    def to_json(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "answer": self.answer,
            "message": self.message,
            "citations": list(self.citations),
            "sources": [source.to_json() for source in self.sources],
            "model": (self.model or NO_MODEL).to_json(),
            "audit_id": self.audit_id,
            "timings": self.timings.to_json(),
            "sentences": [check.to_json() for check in self.sentences],
        }


@dataclass(frozen=True)
class Rewritten:
    """First event of a conversation turn: the standalone question retrieval uses."""

    standalone: str
    changed: bool


@dataclass(frozen=True)
class SourcesFound:
    """The passages the answer will be built from (first event of a question on its own)."""

    sources: tuple[Source, ...]


@dataclass(frozen=True)
class Token:
    text: str


@dataclass(frozen=True)
class Sentence:
    """A finished sentence of the answer, checked against the passages it cites.

    Sentences are released only once the answer has a supported sentence: an answer with none
    is never shown, on any channel; its Finished event carries a message instead.
    """

    check: SentenceCheck


@dataclass(frozen=True)
class Finished:
    """Last event: the recorded answer. A stream that raises instead has no valid answer."""

    answer: Answer


Event = Rewritten | SourcesFound | Token | Sentence | Finished
# What `Assistant.stream` returns; closing it early releases the model and is recorded.
EventStream = Generator[Event, None, None]
