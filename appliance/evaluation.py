"""Question sets and their scores: hit@k, MRR, answer accuracy, citations, declines, latency.

Definitions follow ../shared/evals/python311/README.md: text is normalised by lowercasing and
collapsing whitespace; a passage is a hit when its source file is one of the question's
sources and its text contains the answer or an alternative; an answer is correct when its
text contains one of them.

A question with no answer and no alternatives is unanswerable (no document holds the answer):
it scores right when the appliance declines (nothing found, the model found no answer, or no
sentence of its answer was supported). Both kinds of error are counted: answers given to
unanswerable questions, and declines of answerable ones although a passage the model was
given held the answer.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.answers import Answer
from appliance.errors import ApplianceError


class EvalSetError(ApplianceError):
    """A question file cannot be read."""


@dataclass(frozen=True)
class EvalQuestion:
    id: str
    question: str
    answer: str | None = None
    alternatives: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    kind: str | None = None

    @property
    def answerable(self) -> bool:
        return bool(self.targets)

    @property
    def targets(self) -> tuple[str, ...]:
        values = [self.answer, *self.alternatives] if self.answer else list(self.alternatives)
        return tuple(normalize(v) for v in values if v and normalize(v))


def normalize(text: str) -> str:
    return " ".join(text.lower().split())


def load_questions(path: Path) -> list[EvalQuestion]:
    """Read a JSONL question set; every bad line is reported with its number."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise EvalSetError(f"cannot read question file {path}: {exc}") from None
    questions: list[EvalQuestion] = []
    for number, line in enumerate(lines, start=1):
        if line.strip():
            questions.append(_parse_line(path, number, line))
    if not questions:
        raise EvalSetError(f"{path} holds no questions (one JSON object per line)")
    ids = [q.id for q in questions]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise EvalSetError(f"{path}: duplicate question ids {', '.join(duplicates)}")
    return questions


def json_object_line(
    where: str,
    line: str,
    error: type[ApplianceError],
    texts: Sequence[str] = (),
    text_lists: Sequence[str] = (),
) -> dict[str, Any]:
    """One JSONL line as an object whose `texts` fields are non-empty strings and whose
    `text_lists` fields, when present, are lists of strings; else `error` naming `where`."""
    try:
        data = json.loads(line)
    except ValueError as exc:
        raise error(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise error(f"{where}: expected a JSON object")
    for name in texts:
        if not isinstance(data.get(name), str) or not data[name].strip():
            raise error(f"{where}: field '{name}' must be a non-empty string")
    for name in text_lists:
        value = data.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise error(f"{where}: field '{name}' must be a list of strings")
    return data


def _parse_line(path: Path, number: int, line: str) -> EvalQuestion:
    where = f"{path}:{number}"
    data = json_object_line(
        where, line, EvalSetError, ("id", "question"), ("alternatives", "sources")
    )
    answer = data.get("answer")
    if answer is not None and not isinstance(answer, str):
        raise EvalSetError(f"{where}: field 'answer' must be a string")
    return EvalQuestion(
        id=data["id"],
        question=data["question"],
        answer=answer,
        alternatives=tuple(data.get("alternatives", [])),
        sources=tuple(data.get("sources", [])),
        kind=data.get("kind"),
    )


def source_matches(stored: str, expected: str) -> bool:
    """A stored (absolute) source path matches a question's path relative to the corpus root."""
    stored_posix = stored.replace("\\", "/")
    expected_posix = expected.strip("/")
    return stored_posix == expected_posix or stored_posix.endswith("/" + expected_posix)


def first_hit_rank(question: EvalQuestion, answer: Answer) -> int | None:
    """Rank of the first hit among every passage the search returned (the README's hit@k)."""
    for rank, passage in enumerate(answer.retrieved, start=1):
        if any(source_matches(passage.source, s) for s in question.sources):
            text = normalize(passage.text)
            if any(target in text for target in question.targets):
                return rank
    return None


def is_correct(question: EvalQuestion, answer: Answer) -> bool:
    if answer.answer is None:
        return False
    text = normalize(answer.answer)
    return any(target in text for target in question.targets)


DECLINED = ("nothing-found", "no-answer", "unsupported")


def declined(answer: Answer) -> bool:
    return answer.outcome in DECLINED


def answer_was_shown(question: EvalQuestion, answer: Answer) -> bool:
    """A passage the model was given (a numbered source) holds the answer."""
    return any(
        any(t in normalize(s.passage.text) for t in question.targets) for s in answer.sources
    )


def cited_supporting(question: EvalQuestion, answer: Answer) -> tuple[int, int]:
    """(cited passages containing a target, cited passages)."""
    cited = [s for s in answer.sources if s.n in answer.citations]
    good = [s for s in cited if any(t in normalize(s.passage.text) for t in question.targets)]
    return len(good), len(cited)


@dataclass
class Scoreboard:
    k: int
    generated: bool
    questions: int = 0
    failures: int = 0
    hits: int = 0
    reciprocal_ranks: float = 0.0
    correct: int = 0
    answered: int = 0
    with_citation: int = 0
    cited_good: int = 0
    cited_total: int = 0
    answerable: int = 0
    declined: int = 0
    declined_answer_shown: int = 0
    unanswerable: int = 0
    unanswerable_declined: int = 0
    sentences: int = 0
    sentences_supported: int = 0
    total_ms: list[float] = field(default_factory=list)
    first_token_ms: list[float] = field(default_factory=list)
    tokens_per_s: list[float] = field(default_factory=list)

    def add(self, question: EvalQuestion, answer: Answer) -> dict[str, Any]:
        self.questions += 1
        self._add_timings(answer)
        if not question.answerable:
            self.unanswerable += 1
            self.unanswerable_declined += int(declined(answer))
            return {"hit_rank": None, "correct": declined(answer) if self.generated else None}
        self.answerable += 1
        rank = first_hit_rank(question, answer)
        if rank is not None and rank <= self.k:
            self.hits += 1
            self.reciprocal_ranks += 1.0 / rank
        correct = is_correct(question, answer)
        self.correct += int(correct)
        if answer.answer is not None:
            self.answered += 1
            self.with_citation += int(bool(answer.citations))
        if self.generated and declined(answer):
            self.declined += 1
            self.declined_answer_shown += int(answer_was_shown(question, answer))
        self.sentences += sum(1 for c in answer.sentences if c.supported is not None)
        self.sentences_supported += sum(1 for c in answer.sentences if c.supported)
        good, cited = cited_supporting(question, answer)
        self.cited_good += good
        self.cited_total += cited
        return {"hit_rank": rank, "correct": correct if self.generated else None}

    def add_failure(self, question: EvalQuestion) -> None:
        """A question that got an error instead of an answer: it scores 0 everywhere."""
        self.questions += 1
        self.failures += 1
        if question.answerable:
            self.answerable += 1
        else:
            self.unanswerable += 1

    def _add_timings(self, answer: Answer) -> None:
        self.total_ms.append(answer.timings.total_ms)
        if answer.timings.first_token_ms is not None:
            self.first_token_ms.append(answer.timings.first_token_ms)
        if answer.timings.tokens_per_s is not None:
            self.tokens_per_s.append(answer.timings.tokens_per_s)

    def summary(self) -> dict[str, Any]:
        n = max(self.answerable, 1)
        generated = self.generated
        result: dict[str, Any] = {
            "questions": self.questions,
            "failures": self.failures,
            "k": self.k,
            f"hit@{self.k}": round(self.hits / n, 4),
            "mrr": round(self.reciprocal_ranks / n, 4),
            "answer_accuracy": round(self.correct / n, 4) if generated else None,
            "citation_rate": _ratio(self.with_citation, self.answered) if generated else None,
            "citation_precision": _ratio(self.cited_good, self.cited_total) if generated else None,
            "latency_ms": {
                "total": percentiles(self.total_ms),
                "first_token": percentiles(self.first_token_ms) if generated else None,
            },
            "tokens_per_s_mean": (
                round(sum(self.tokens_per_s) / len(self.tokens_per_s), 1)
                if self.tokens_per_s
                else None
            ),
        }
        if generated:
            result["supported_sentences"] = _ratio(self.sentences_supported, self.sentences)
            result["declined"] = {
                "answerable": self.declined,
                "answerable_with_answer_in_passages": self.declined_answer_shown,
                "unanswerable": self.unanswerable_declined,
                "unanswerable_questions": self.unanswerable,
            }
        return result


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def percentiles(values: Sequence[float]) -> dict[str, float] | None:
    """p50, p90, p95 and max by the nearest-rank method."""
    if not values:
        return None
    ordered = sorted(values)

    def rank(p: float) -> float:
        index = max(math.ceil(p / 100 * len(ordered)) - 1, 0)
        return round(ordered[index], 1)

    return {"p50": rank(50), "p90": rank(90), "p95": rank(95), "max": round(ordered[-1], 1)}


# Base vs adapter: the metrics an adapter is meant to move, then the ones it must not break.
COMPARED = ("answer_accuracy", "citation_rate", "citation_precision", "hit@k", "mrr")


def _metric(summary: dict[str, Any], name: str) -> float | None:
    key = f"hit@{summary['k']}" if name == "hit@k" else name
    value = summary.get(key)
    return float(value) if isinstance(value, int | float) else None


def _p50(summary: dict[str, Any]) -> float | None:
    total = (summary.get("latency_ms") or {}).get("total") or {}
    value = total.get("p50")
    return float(value) if isinstance(value, int | float) else None


def compare(base: dict[str, Any], adapted: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per metric: base, adapter and the difference (adapter - base)."""
    rows = []
    for name in COMPARED:
        rows.append(_row(name, _metric(base, name), _metric(adapted, name)))
    rows.append(_row("latency_ms_p50", _p50(base), _p50(adapted)))
    rows.append(_row("failures", float(base["failures"]), float(adapted["failures"])))
    return rows


def _row(name: str, base: float | None, adapted: float | None) -> dict[str, Any]:
    delta = round(adapted - base, 4) if base is not None and adapted is not None else None
    return {"metric": name, "base": base, "adapter": adapted, "delta": delta}


def comparison_table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as an aligned plain-text table."""

    def shown(value: float | None, signed: bool = False) -> str:
        if value is None:
            return "-"
        return f"{value:+.4g}" if signed else f"{value:.4g}"

    lines = [f"{'metric':20} {'base':>10} {'adapter':>10} {'delta':>10}"]
    for row in rows:
        lines.append(
            f"{row['metric']:20} {shown(row['base']):>10} {shown(row['adapter']):>10} "
            f"{shown(row['delta'], signed=True):>10}"
        )
    return "\n".join(lines)
