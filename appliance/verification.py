"""Is each sentence of an answer supported by the passages it cites? A lexical check.

The rule, per sentence (citation marks removed; words compared case-insensitively, with a
light stem: "counts" and "counting" match):
- A sentence citing no passage is unsupported.
- Against each passage it cites, two measures are taken:
  * the longest run of consecutive words it shares verbatim with the passage;
  * its coverage: the share of its content words (not stop words) found in the passage.
- It is supported by a passage when every number it states occurs in that passage (or in
  the question), and the
  verbatim run has at least QUOTE_WORDS words or the coverage is at least MIN_COVERAGE.
- The quote shown for it is the verbatim run when that is long enough, else the passage
  sentence holding most of its content words; either way by character offsets in the
  passage text as stored (so a reader can find it).
- A sentence that cites nothing, or cites passages that do not support it, is checked
  against the other passages of the prompt by the same rule; when one supports it, that
  passage becomes its citation, marked `attributed` (the appliance chose it, not the
  model). A sentence saying the passages do not hold the answer is never supported.
- A sentence with no content word at all ("Yes.") states nothing to check: supported is
  None, and it counts neither way.

Limits, by design of a lexical check: it proves that the words of a sentence are in the
passage it cites, not that the sentence means what the passage means. A negation added or
dropped ("must not" for "must"), or words recombined across the passage, can pass; a correct
paraphrase in other words can fail. It is a check that a reader can follow, not a proof.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from difflib import SequenceMatcher
from typing import Any

from appliance.prompting import CITATION, parse_citations

QUOTE_WORDS = 5
MIN_COVERAGE = 0.6

WORD = re.compile(r"\w+")
NUMBER = re.compile(r"\d")
SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+|\n+")
LEADING_CITATIONS = re.compile(r"^\s*((?:\[\d{1,3}(?:\s*[,;]\s*\d{1,3})*\]\s*)+)")
PASSAGE_SENTENCE = re.compile(r"[^.!?\n]+[.!?]*")

STOP_WORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "and",
        "or",
        "but",
        "if",
        "then",
        "else",
        "of",
        "to",
        "in",
        "on",
        "at",
        "by",
        "for",
        "with",
        "from",
        "into",
        "onto",
        "as",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "it",
        "its",
        "this",
        "that",
        "these",
        "those",
        "there",
        "here",
        "which",
        "who",
        "whom",
        "whose",
        "what",
        "when",
        "where",
        "why",
        "how",
        "do",
        "does",
        "did",
        "done",
        "can",
        "could",
        "may",
        "might",
        "must",
        "shall",
        "should",
        "will",
        "would",
        "has",
        "have",
        "had",
        "not",
        "no",
        "yes",
        "so",
        "such",
        "than",
        "too",
        "very",
        "also",
        "just",
        "only",
        "any",
        "all",
        "some",
        "each",
        "every",
        "you",
        "your",
        "yours",
        "we",
        "our",
        "ours",
        "they",
        "them",
        "their",
        "i",
        "me",
        "my",
        "he",
        "she",
        "his",
        "her",
        "him",
        "one",
        "ones",
        "use",
        "used",
        "using",
        "about",
        "above",
        "below",
        "over",
        "under",
        "more",
        "most",
        "less",
        "other",
        "same",
        "own",
        "both",
        "either",
        "neither",
        "per",
        "via",
        "e",
        "g",
        "ie",
        "eg",
    ]
)


@dataclass(frozen=True)
class Quote:
    """Where a sentence's support lies: characters [start, end) of passage n's text."""

    n: int
    chunk_id: str
    start: int
    end: int
    text: str

    def to_json(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "chunk_id": self.chunk_id,
            "start": self.start,
            "end": self.end,
            "text": self.text,
        }


@dataclass(frozen=True)
class SentenceCheck:
    text: str  # as the model wrote it, citation marks included
    citations: tuple[int, ...]
    supported: bool | None  # None: no content word, nothing to check
    quote: Quote | None = None
    coverage: float = 0.0
    verbatim_words: int = 0
    attributed: bool = False  # the citation was chosen by the appliance, not the model

    def to_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "citations": list(self.citations),
            "supported": self.supported,
            "attributed": self.attributed,
            "quote": self.quote.to_json() if self.quote else None,
            "coverage": round(self.coverage, 3),
            "verbatim_words": self.verbatim_words,
        }


@dataclass(frozen=True)
class CitedText:
    """What a sentence can be checked against: a numbered passage's id and text."""

    n: int
    chunk_id: str
    text: str


def split_sentences(answer: str) -> list[str]:
    """Sentences of an answer; citations written after the full stop stay with their sentence."""
    sentences: list[str] = []
    for piece in SENTENCE_BREAK.split(answer.strip()):
        piece = piece.strip()
        if not piece:
            continue
        leading = LEADING_CITATIONS.match(piece)
        if leading and sentences:
            sentences[-1] = f"{sentences[-1]} {leading.group(1).strip()}"
            piece = piece[leading.end() :].strip()
        if piece:
            sentences.append(piece)
    return sentences


def _stem(word: str) -> str:
    """A light stem so that "counts", "counted" and "counting" compare equal."""
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def _words(text: str) -> list[tuple[str, int, int]]:
    return [(_stem(m.group(0).lower()), m.start(), m.end()) for m in WORD.finditer(text)]


def _content(words: Sequence[str]) -> list[str]:
    return [w for w in words if w not in STOP_WORDS and (len(w) > 1 or w.isdigit())]


def check_sentence(
    sentence: str, passages: Sequence[CitedText], question: str = ""
) -> SentenceCheck:
    """The sentence checked against what it cites (see the module docstring); numbers the
    question itself states need not be in the passage."""
    by_number = {p.n: p for p in passages}
    citations = tuple(
        n for n in parse_citations(sentence, max(by_number, default=0)) if n in by_number
    )
    claim = [w for w, _, _ in _words(CITATION.sub(" ", sentence))]
    content = _content(claim)
    if not content:
        return SentenceCheck(sentence, citations, None)
    given = {w for w, _, _ in _words(question) if NUMBER.search(w)}
    numbers = [w for w in content if NUMBER.search(w) and w not in given]
    if is_refusal(sentence):
        return SentenceCheck(sentence, citations, False)

    def against(passage: CitedText, cites: tuple[int, ...]) -> SentenceCheck:
        return _against(sentence, cites, claim, content, numbers, passage)

    if citations:
        cited = _best(against(by_number[n], citations) for n in citations)
        if cited.supported:
            return cited
    others = [p for p in passages if p.n not in citations]
    found = _best(against(p, (p.n,)) for p in others) if others else None
    if found is not None and found.supported:
        return replace(found, text=_recited(sentence, found.citations[0]), attributed=True)
    return cited if citations else SentenceCheck(sentence, citations, False)


def _best(checks: Iterable[SentenceCheck]) -> SentenceCheck:
    return max(checks, key=lambda c: (bool(c.supported), c.coverage, c.verbatim_words))


def _recited(sentence: str, number: int) -> str:
    """The sentence with its citation marks replaced by [number], before its final stop."""
    bare = " ".join(CITATION.sub(" ", sentence).split())
    bare = re.sub(r"\s+([.!?,;:])", r"\1", bare)
    if bare[-1:] in ".!?":
        return f"{bare[:-1]} [{number}]{bare[-1]}"
    return f"{bare} [{number}]"


def _against(
    sentence: str,
    citations: tuple[int, ...],
    claim: list[str],
    content: list[str],
    numbers: list[str],
    passage: CitedText,
) -> SentenceCheck:
    words = _words(passage.text)
    vocabulary = {w for w, _, _ in words}
    coverage = sum(1 for w in content if w in vocabulary) / len(content)
    matcher = SequenceMatcher(None, claim, [w for w, _, _ in words], autojunk=False)
    run = matcher.find_longest_match(0, len(claim), 0, len(words))
    numbers_found = all(w in vocabulary for w in numbers)
    supported = numbers_found and (run.size >= QUOTE_WORDS or coverage >= MIN_COVERAGE)
    if run.size >= QUOTE_WORDS:
        start, end = words[run.b][1], words[run.b + run.size - 1][2]
    else:
        start, end = _best_sentence(passage.text, set(content))
    quote = Quote(passage.n, passage.chunk_id, start, end, passage.text[start:end])
    return SentenceCheck(sentence, citations, supported, quote, coverage, run.size)


def _best_sentence(text: str, content: set[str]) -> tuple[int, int]:
    """Offsets of the passage sentence sharing most content words with the claim."""
    best, best_hits = (0, 0), -1
    for match in PASSAGE_SENTENCE.finditer(text):
        hits = len(content & {w for w, _, _ in _words(match.group(0))})
        if hits > best_hits:
            stripped = match.group(0)
            lead = len(stripped) - len(stripped.lstrip())
            best, best_hits = (match.start() + lead, match.end()), hits
    return best


def verify_answer(
    answer: str, passages: Sequence[CitedText], question: str = ""
) -> tuple[SentenceCheck, ...]:
    return tuple(check_sentence(s, passages, question) for s in split_sentences(answer))


def any_supported(checks: Sequence[SentenceCheck]) -> bool:
    return any(check.supported for check in checks)


PARTIAL_CITATION = re.compile(r"\[[\d,;\s]*\]?")


class SentenceRelease:
    """Cuts a streamed answer into sentences, checks each one as soon as it is complete, and
    releases them in order once the answer has a supported sentence.

    A sentence is complete when the text after it has begun another sentence (a citation
    written after a full stop still belongs to it).
    """

    def __init__(self, passages: Sequence[CitedText], question: str = "") -> None:
        self._passages = tuple(passages)
        self._question = question
        self._checks: list[SentenceCheck] = []
        self._released = 0

    def feed(self, text: str) -> list[SentenceCheck]:
        """The sentences `text` (the answer so far) newly releases."""
        pieces = split_sentences(text)
        if pieces and not WORD.search(PARTIAL_CITATION.sub("", pieces[-1])):
            pieces = pieces[:-1]  # the last piece is only a citation so far
        for sentence in pieces[len(self._checks) : -1]:
            self._checks.append(check_sentence(sentence, self._passages, self._question))
        return self._release()

    def finish(self, answer: str) -> tuple[tuple[SentenceCheck, ...], list[SentenceCheck]]:
        """Every sentence of the final answer checked, and those not released yet."""
        self._checks = list(verify_answer(answer, self._passages, self._question))
        self._released = min(self._released, len(self._checks))
        return tuple(self._checks), self._release()

    def _release(self) -> list[SentenceCheck]:
        if not any_supported(self._checks):
            return []
        new = self._checks[self._released :]
        self._released = len(self._checks)
        return new


REFUSAL_PATTERNS = re.compile(
    r"\b(?:documents?|passages?|sources?|context|texts?)\b[^.]{0,40}?\b(?:do|does|did)\s*(?:not|n't)"
    r"\s+(?:say|state|mention|contain|include|specify|provide|answer|cover|describe)"
    r"|\b(?:not|never)\s+(?:mentioned|stated|specified|provided|given|covered|described)\b"
    r"|\bno (?:information|mention)\b"
    r"|\bI (?:do not|don't|cannot|can't) (?:know|answer|find)\b",
    re.IGNORECASE,
)


def is_refusal(answer: str) -> bool:
    """The model said the passages do not hold the answer (in the taught words or others)."""
    return bool(REFUSAL_PATTERNS.search(answer))


# Names a question may turn on: dotted (json.loads, manage.py), snake_case, CamelCase or
# mixedCase identifiers (SQLAlchemy too), names with digits (boto3), and capitalised words
# inside a sentence (Django, Flask). Each dotted segment has two characters at least, so
# "e.g." is none.
KEY_TERM = re.compile(
    r"\b[A-Za-z_]\w+(?:\.[A-Za-z_]\w+)+(?:\(\))?"
    r"|\b[A-Za-z]\w*_\w+\b"
    r"|\b[a-z]+[A-Z]\w*\b"
    r"|\b[A-Z][a-z0-9]+[A-Z]\w*\b"
    r"|\b[A-Z]{2,}[a-z]\w*\b"
    r"|\b[a-z]{2,}\d+\w*\b"
    r"|(?<![.!?:]\s)(?<!^)\b[A-Z][a-z]{2,}\b"
)


def key_terms(question: str) -> list[str]:
    """The names in a question that its answer would have to be about (see KEY_TERM)."""
    return list(dict.fromkeys(m.group(0) for m in KEY_TERM.finditer(question.strip())))


def mentioned(term: str, text: str) -> bool:
    """Whether lowercased `text` mentions the term: whole, or by its last dotted segment."""
    name = term.lower().removesuffix("()")
    last = name.rsplit(".", 1)[-1]
    return name in text or (len(last) >= 4 and last in text)


def uncovered_subject(question: str, passages: Sequence[str]) -> list[str]:
    """The question's key terms when no passage mentions any of them, else [].

    A question naming something none of the passages found mentions (Django, in documents
    about Python) is about something the documents do not cover: no model is asked.
    """
    terms = key_terms(question)
    text = " ".join(passages).lower()
    if not terms or any(mentioned(term, text) for term in terms):
        return []
    return terms
