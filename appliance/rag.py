"""Rewrite, retrieve, prompt, generate, cite, record: every question goes through
`Assistant.stream`, on every channel (CLI, web chat, /v1 API).

A turn of a conversation first has its follow-up rewritten into a standalone question (the
`Rewritten` event); a rewrite that fails is recorded like any question that fails.

Fail closed: the audit log is checked before any passage is shown, and the answer is
only returned (the `Finished` event) once its record is written. A live stream (the web
chat, the streamed API) shows sentences before the answer is finished, so before it shows
anything of the model's work it writes a "started" record (who, the question, the passages
retrieved and numbered, the model, the prompt's hash); the answer's own record names it.
If that record cannot be written nothing is shown. A stream that raises carries no valid
answer; the web UI withdraws text already streamed in that case.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass

from appliance.answers import (
    MAX_QUESTION_CHARS,
    Answer,
    Event,
    EventStream,
    Finished,
    Question,
    Rewritten,
    Sentence,
    Source,
    SourcesFound,
    Timings,
    Token,
)
from appliance.audit import AuditEntry, AuditLog, AuditPassage, Outcome
from appliance.conversation import FollowUpRewriter
from appliance.domain import RetrievedPassage
from appliance.errors import (
    ApplianceError,
    AuditError,
    ModelError,
    QuestionError,
    StoreError,
)
from appliance.gate import SharedModel
from appliance.generation import ModelIdentity
from appliance.prompting import (
    BuiltPrompt,
    build_prompt,
    parse_citations,
    without_repetition,
)
from appliance.retrieval import Retriever, is_relevant
from appliance.verification import (
    CitedText,
    SentenceCheck,
    SentenceRelease,
    any_supported,
    is_refusal,
    uncovered_subject,
)

log = logging.getLogger(__name__)

NOTHING_FOUND = (
    "No passage in the documents you can read answers this question, so I will not guess. "
    "Try other words, or ask an administrator whether the document is indexed."
)
NO_ANSWER = (
    "The documents you can read do not answer this question: the passages found are listed, "
    "but none of them holds the answer."
)
UNSUPPORTED = (
    "No answer is shown: the model's answer is not supported by the passages it cites. "
    "The passages found are listed; try asking in other words."
)
MAX_K = 50


@dataclass(frozen=True)
class AnswerPolicy:
    score_threshold: float
    max_tokens: int
    collection: str


class Assistant:
    def __init__(
        self,
        retriever: Retriever,
        audit: AuditLog,
        model: SharedModel,
        policy: AnswerPolicy,
    ) -> None:
        self._retriever = retriever
        self._audit = audit
        self._model = model  # loaded on first use: retrieve-only work never loads it
        self._rewriter = FollowUpRewriter(model)
        self._policy = policy

    def ask(self, question: Question) -> Answer:
        for event in self.stream(question, live=False):
            if isinstance(event, Finished):
                return event.answer
        raise ApplianceError("the answer stream ended without an answer")  # pragma: no cover

    def stream(self, question: Question, *, live: bool = True) -> EventStream:
        """The events of one answer, the first of a conversation turn being `Rewritten`.
        `live=False` promises that nothing before `Finished` is shown to anyone, so no
        "started" record is needed (ask, the API without streaming)."""
        started = time.perf_counter()
        run = _Run(question, started, self._audit, self._policy, self._retriever)
        if question.history is not None:
            yield self._rewrite(run)
            question = run.question
        problem = _question_problem(question)
        if problem is not None:
            run.record("refused", error=problem)
            raise QuestionError(problem)
        self._audit.check_writable()
        try:
            retrieved = self._retriever.search(question.search_text, question.groups, question.k)
        except Exception as exc:
            log.error("event=retrieval_failed error=%s", type(exc).__name__)
            run.record("error", error=f"retrieval failed: {exc}")
            raise StoreError(f"the document index could not be searched: {exc}") from exc
        run.retrieved(retrieved, self._policy.score_threshold)
        if not run.relevant:
            yield Finished(run.finish("nothing-found", message=NOTHING_FOUND))
            return
        if question.retrieve_only:
            sources = run.number(run.relevant)
            answer = run.finish("retrieved", sources=sources)  # recorded before anything shows
            yield SourcesFound(sources)
            yield Finished(answer)
            return
        absent = uncovered_subject(question.search_text, [p.text for p in run.relevant])
        if absent:
            sources = run.number(run.relevant)
            message = not_covered(absent)
            answer = run.finish("no-answer", sources=sources, message=message)
            yield SourcesFound(sources)
            yield Finished(answer)
            return
        yield from self._generate(run, live)

    def _rewrite(self, run: _Run) -> Rewritten:
        """The follow-up as retrieval should see it; `run.question` then carries it."""
        asked = run.question
        try:
            standalone = self._rewriter.standalone(asked.history or (), asked.text)
        except Exception as exc:  # recorded like any question that fails
            refused = isinstance(exc, ApplianceError) and not isinstance(exc, ModelError)
            error = f"rewriting the follow-up failed: {exc}"
            run.record("refused" if refused else "error", error=error)
            if isinstance(exc, ApplianceError):
                raise
            raise ModelError(f"the model failed while reading the conversation: {exc}") from exc
        changed = standalone != asked.text.strip()
        run.question = dataclasses.replace(asked, standalone=standalone if changed else None)
        return Rewritten(standalone, changed)

    def _generate(self, run: _Run, live: bool) -> EventStream:
        pieces: list[str] = []  # what the user was shown; an error record keeps it too
        try:
            streamed = yield from self._stream_answer(run, live, pieces)
        except (GeneratorExit, KeyboardInterrupt):
            shown = _partial(pieces)
            run.record("error", answer=shown, error="the answer was stopped before it finished")
            raise
        except AuditError:
            raise  # nothing can be recorded; nothing was shown without a record
        except ApplianceError as exc:
            outcome: Outcome = "refused" if not isinstance(exc, ModelError) else "error"
            run.record(outcome, answer=_partial(pieces), error=str(exc))
            raise
        except Exception as exc:
            log.exception("event=generation_failed")
            run.record("error", answer=_partial(pieces), error=f"{type(exc).__name__}: {exc}")
            raise ModelError(f"the model failed while answering: {exc}") from None
        yield from self._conclude(run, streamed)

    def _stream_answer(
        self, run: _Run, live: bool, pieces: list[str]
    ) -> Generator[Event, None, _Streamed]:
        """Prompt the model and stream its tokens (kept in `pieces`) and checked sentences,
        until it ends or starts repeating itself."""
        with self._model.hold() as generator:
            run.model = generator.identity
            built = build_prompt(
                run.question.search_text,
                run.relevant,
                mode=generator.mode,
                count_tokens=generator.count_tokens,
                context_size=generator.context_size,
                max_tokens=self._policy.max_tokens,
                sanitize=generator.sanitize,
            )
            run.prompt = built
            sources = run.number(built.passages)
            if live:
                run.started_id = run.record("started", sources=sources)
            yield SourcesFound(sources)
            release = SentenceRelease(cited_texts(sources), run.question.search_text)
            trimmed: str | None = None
            for piece in generator.stream(built.prompt, self._policy.max_tokens):
                run.token()
                pieces.append(piece)
                yield Token(piece)
                if any(mark in piece for mark in ".!?"):
                    trimmed = without_repetition("".join(pieces))
                    if trimmed is not None:
                        break
                for check in release.feed("".join(pieces)):
                    yield Sentence(check)
        generated = trimmed if trimmed is not None else "".join(pieces).strip()
        return _Streamed(generated, built, sources, release)

    def _conclude(self, run: _Run, streamed: _Streamed) -> EventStream:
        """Check the last sentences, judge the answer, record it and hand it over."""
        generated = streamed.text
        checks, unreleased = streamed.release.finish(generated)
        for check in unreleased:
            yield Sentence(check)
        outcome, message = judge(generated, checks)
        # What was shown: the checked sentences, one space apart (not shown: the model's text).
        text = " ".join(check.text for check in checks) if outcome == "answered" else generated
        citations = parse_citations(text, len(streamed.built.passages))
        answer = run.finish(
            outcome,
            sources=streamed.sources,
            answer=text,
            citations=citations,
            message=message,
            sentences=checks,
        )
        yield Finished(answer)


@dataclass(frozen=True)
class _Streamed:
    """What the model generated for one answer, and what it was generated from."""

    text: str  # cut where the model started repeating itself, else stripped
    built: BuiltPrompt
    sources: tuple[Source, ...]
    release: SentenceRelease


def not_covered(terms: Sequence[str]) -> str:
    named = ", ".join(f"'{term}'" for term in terms[:4])
    return (
        f"None of the passages found mentions {named}: the documents you can read do not "
        "seem to cover this question, so no answer is given."
    )


def cited_texts(sources: Sequence[Source]) -> list[CitedText]:
    return [CitedText(s.n, s.passage.chunk_id, s.passage.text) for s in sources]


def judge(answer: str, checks: Sequence[SentenceCheck]) -> tuple[Outcome, str | None]:
    """An answer is shown when one of its sentences is supported by what it cites; else it is
    the model saying the passages do not answer, or an answer nobody can check."""
    if any_supported(checks):
        return "answered", None
    if not answer or is_refusal(answer):
        return "no-answer", NO_ANSWER
    return "unsupported", UNSUPPORTED


def _partial(pieces: list[str]) -> str | None:
    """The text streamed before an answer failed or was stopped, for its audit record."""
    return "".join(pieces).strip() or None


def _question_problem(question: Question) -> str | None:
    for label, text in (("question", question.text), ("standalone question", question.standalone)):
        if text is not None and not 0 < len(text.strip()) <= MAX_QUESTION_CHARS:
            return f"a {label} must have 1 to {MAX_QUESTION_CHARS} characters (got {len(text)})"
    if not 1 <= question.k <= MAX_K:
        return f"k must be between 1 and {MAX_K} (got {question.k})"
    return None


class _Run:
    """The state of one question on its way through the assistant."""

    def __init__(
        self,
        question: Question,
        started: float,
        audit: AuditLog,
        policy: AnswerPolicy,
        retriever: Retriever,
    ) -> None:
        self.audit = audit
        self.policy = policy
        self.embed_model = retriever.embed_model
        self.mode = retriever.effective_mode()
        self.question = question
        self.started = started
        self.retrieve_ms = 0.0
        self.all: list[RetrievedPassage] = []
        self.relevant: list[RetrievedPassage] = []
        self.model: ModelIdentity | None = None
        self.prompt: BuiltPrompt | None = None
        self.first_token_at: float | None = None
        self.last_token_at: float | None = None
        self.tokens = 0
        self.started_id: str | None = None

    def retrieved(self, passages: Sequence[RetrievedPassage], threshold: float) -> None:
        self.retrieve_ms = (time.perf_counter() - self.started) * 1000
        self.all = list(passages)
        self.relevant = [p for p in passages if is_relevant(p, threshold)]

    def number(self, passages: Sequence[RetrievedPassage]) -> tuple[Source, ...]:
        return tuple(Source(n, passage) for n, passage in enumerate(passages, start=1))

    def token(self) -> None:
        now = time.perf_counter()
        if self.first_token_at is None:
            self.first_token_at = now
        self.last_token_at = now
        self.tokens += 1

    def timings(self) -> Timings:
        now = time.perf_counter()
        first = self.first_token_at
        rate = None
        if first is not None and self.last_token_at is not None and self.tokens > 1:
            span = self.last_token_at - first
            rate = (self.tokens - 1) / span if span > 0 else None
        return Timings(
            retrieve_ms=self.retrieve_ms,
            first_token_ms=(first - self.started) * 1000 if first is not None else None,
            total_ms=(now - self.started) * 1000,
            tokens_per_s=rate,
        )

    def finish(
        self,
        outcome: Outcome,
        *,
        sources: tuple[Source, ...] = (),
        answer: str | None = None,
        citations: tuple[int, ...] = (),
        message: str | None = None,
        sentences: tuple[SentenceCheck, ...] = (),
    ) -> Answer:
        """Record the outcome, then build what the user gets: the model's text and citations
        only when it is an answer (the record keeps them either way)."""
        timings = self.timings()
        audit_id = self.record(
            outcome,
            answer=answer,
            sources=sources,
            citations=citations,
            timings=timings,
            sentences=sentences,
        )
        shown = outcome == "answered"
        return Answer(
            outcome,
            answer if shown else None,
            message,
            citations if shown else (),
            sources,
            self.model,
            audit_id,
            timings,
            retrieved=tuple(self.all),
            sentences=sentences,
        )

    def record(
        self,
        outcome: Outcome,
        *,
        answer: str | None = None,
        sources: tuple[Source, ...] = (),
        citations: tuple[int, ...] = (),
        error: str | None = None,
        timings: Timings | None = None,
        sentences: tuple[SentenceCheck, ...] | None = None,
    ) -> str:
        cited_chunks = {s.passage.chunk_id for s in sources if s.n in citations}
        policy = self.policy
        entry = AuditEntry(
            user=self.question.user,
            groups=self.question.groups,
            question=bounded(self.question.text),
            retrieval={
                "k": self.question.k,
                "mode": self.mode,
                "score_threshold": policy.score_threshold,
                "collection": policy.collection,
                "embed_model": self.embed_model,
                "standalone_question": (
                    None if self.question.standalone is None else bounded(self.question.standalone)
                ),
                **oversize(self.question),
                "retrieve_only": self.question.retrieve_only,
                "numbered_ranks": [self._rank(s.passage) for s in sources],
                **self._keyword_matches(),
            },
            passages=tuple(
                _audit_passage(rank, p, p.chunk_id in cited_chunks)
                for rank, p in enumerate(self.all, start=1)
            ),
            model=_model_json(self.model),
            prompt_sha256=self.prompt.prompt.sha256() if self.prompt else None,
            answer=answer,
            timings=(timings or self.timings()).to_json(),
            outcome=outcome,
            error=error,
            channel=self.question.channel,
            sentences=None if sentences is None else tuple(c.to_json() for c in sentences),
            started_id=self.started_id,
        )
        return self.audit.append(entry).id

    def _keyword_matches(self) -> dict[str, list[list[int | str]]]:
        """Passages relevant by an exact keyword of the question: [rank, keyword] pairs."""
        matches: list[list[int | str]] = [
            [rank, p.keyword] for rank, p in enumerate(self.all, start=1) if p.keyword
        ]
        return {"keyword_matches": matches} if matches else {}

    def _rank(self, passage: RetrievedPassage) -> int:
        return next(i for i, p in enumerate(self.all, start=1) if p.chunk_id == passage.chunk_id)


def bounded(text: str) -> str:
    """A question as recorded: whole up to the allowed length, else its beginning."""
    return text if len(text) <= MAX_QUESTION_CHARS else text[:MAX_QUESTION_CHARS] + "…"


def oversize(question: Question) -> dict[str, int | str]:
    """Length and sha256 of a question too long to record whole (it was refused)."""
    long = {"question": question.text, "standalone_question": question.standalone or ""}
    facts: dict[str, int | str] = {}
    for name, text in long.items():
        if len(text) > MAX_QUESTION_CHARS:
            facts[f"{name}_chars"] = len(text)
            facts[f"{name}_sha256"] = hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()
    return facts


def _audit_passage(rank: int, passage: RetrievedPassage, cited: bool) -> AuditPassage:
    return AuditPassage(
        rank=rank,
        chunk_id=passage.chunk_id,
        doc_id=passage.doc_id,
        source=passage.source,
        page=passage.page,
        doc_sha256=passage.doc_id,
        text_sha256=hashlib.sha256(passage.text.encode("utf-8")).hexdigest(),
        score=passage.score,
        cited=cited,
        ocr=passage.ocr,
        ocr_confidence=passage.ocr_confidence,
    )


def _model_json(model: ModelIdentity | None) -> dict[str, str | None]:
    return (model or ModelIdentity(path=None, sha256=None)).audit_json()
