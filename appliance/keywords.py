"""Keyword (BM25) side of hybrid retrieval: sparse vectors made here, identical for both stores.

Qdrant Edge's own BM25 model (`qdrant_edge.Bm25`) turns text into a sparse vector: one index
per token (a hash of it) and a term-frequency weight; the collection's IDF modifier supplies
the inverse document frequency at query time. English defaults: the word tokenizer, lowercase,
English stopwords and the Snowball English stemmer ("running" finds "run").

The word tokenizer splits `--no-site` into `no` (a stopword) and `site`, and
`ERR_SSL_PROTOCOL_ERROR` into four ordinary words, so identifiers would match only by their
parts. Each compound identifier (`--no-site`, `sys.path`, `APPLIANCE_SCORE_THRESHOLD`, `3.11`)
is therefore also kept whole, as one lowercased token of a second BM25 model without stemming
or stopwords; its tokens always contain punctuation, so they never collide with a word's.
Single-word identifiers (`PYTHONSAFEPATH`, `E1234`) are whole words already.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import PurePath

import qdrant_edge as qe

from appliance.domain import SparseVector

# The name of the sparse vector in every collection; the dense vector keeps the default
# (unnamed) vector, as in collections made before hybrid retrieval.
SPARSE_VECTOR = "bm25"
# Expected chunk length in tokens after stopwords (chunks are 200 embedder tokens by default,
# about 150 words, of which about 40% are stopwords).
AVERAGE_CHUNK_TOKENS = 100.0
# A contextual header longer than this is cut (it must not push the chunk's end out of the
# embedder's window).
MAX_HEADER_CHARS = 120

# A run of non-space characters with punctuation between word characters, or an option.
_CANDIDATE = re.compile(r"[^\s\"'`()\[\]{}<>,;!?]+")
_INNER_PUNCT = re.compile(r"\w[-_.:/=@#+]+\w")
_OPTION = re.compile(r"^-{1,2}\w")
_TRAILING = ".:=/-"
# What makes a question's token a keyword (see `question_keywords`).
_EXACT_PUNCT = re.compile(r"[_.:/=@#+]|\d")
_LETTER = re.compile(r"[^\W\d_]")
_DIGIT = re.compile(r"\d")
_CAPITALS = re.compile(r"[A-Z].*[A-Z]")
_WORD = re.compile(r"\w+")
# A version or a decimal (`3.11`, `2.5`, `3.11+`): numbers, not names.
_NUMBER = re.compile(r"[\d.,]+\+?")


def identifiers(text: str) -> list[str]:
    """Compound identifiers in `text`, lowercased, in order: options (`--no-site`, `-X`) and
    words joined by punctuation (`sys.path`, `ERR_SSL_PROTOCOL_ERROR`, `3.11`)."""
    found: list[str] = []
    for match in _CANDIDATE.finditer(text):
        token = match.group(0).rstrip(_TRAILING)
        if _OPTION.match(token) or _INNER_PUNCT.search(token):
            found.append(token.lower())
    return found


def question_keywords(question: str) -> tuple[str, ...]:
    """The exact tokens of a question that name something, lowercased, without repeats:
    options (`--no-site`), compound identifiers with `_ . : / = @ # +` or a digit
    (`sys.path`, `APPLIANCE_SCORE_THRESHOLD`), words mixing letters and digits
    (`E1234`, `0x80070005`) and words of 5 or more characters with two capitals
    (`PYTHONSAFEPATH`, `NullPointerException`). Ordinary words, acronyms like `VPN`,
    hyphenated words, plain numbers and versions (`3.11`: in documentation they mark
    what changed when, in many passages) are not keywords."""
    compound = [
        token
        for token in identifiers(question)
        if len(token) >= 4
        and (_OPTION.match(token) or _EXACT_PUNCT.search(token))
        and not _NUMBER.fullmatch(token)
    ]
    words = [
        word.lower()
        for word in _WORD.findall(question)
        if len(word) >= 3
        and (
            (_DIGIT.search(word) and _LETTER.search(word))
            or (len(word) >= 5 and _CAPITALS.search(word))
        )
    ]
    return tuple(dict.fromkeys([*compound, *words]))


def keyword_in(text: str, keywords: Sequence[str]) -> str | None:
    """The first of `keywords` that `text` holds as a whole token (case-insensitive)."""
    if not keywords:
        return None
    tokens = set(identifiers(text)) | {w.lower() for w in _WORD.findall(text)}
    return next((k for k in keywords if k in tokens), None)


def chunk_header(source: str, section: str | None) -> str:
    """The document's title (its file name) and the chunk's section path, one line."""
    title = PurePath(source).name
    header = f"{title} > {section.strip()}" if section and section.strip() else title
    return header[:MAX_HEADER_CHARS]


def embedding_text(source: str, section: str | None, text: str, headers: bool) -> str:
    """What is embedded (dense and sparse) for a chunk: with `headers`, its contextual header
    in front. The stored text, shown to users, is the chunk's own."""
    return f"{chunk_header(source, section)}\n\n{text}" if headers else text


class KeywordEncoder:
    """BM25 sparse vectors of documents and questions (qdrant_edge's model, no service)."""

    def __init__(self) -> None:
        self._words = qe.Bm25(
            qe.Bm25Config(
                avg_len=AVERAGE_CHUNK_TOKENS,
                tokenizer=qe.TokenizerType.Word,
                language="english",
                lowercase=True,
                stopwords=qe.Language.English,
                stemmer=qe.SnowballParams(qe.SnowballLanguage.English),
            )
        )
        self._identifiers = qe.Bm25(
            qe.Bm25Config(
                avg_len=AVERAGE_CHUNK_TOKENS,
                tokenizer=qe.TokenizerType.Whitespace,
                lowercase=True,
                stopwords=qe.StopwordsSet(custom=set()),
                stemmer=qe.DisabledStemmer(),
            )
        )

    def document(self, text: str) -> SparseVector:
        return _merged(
            [self._words.embed_document(text), self._identifiers.embed_document(_joined(text))]
        )

    def documents(self, texts: Iterable[str]) -> list[SparseVector]:
        return [self.document(text) for text in texts]

    def query(self, text: str) -> SparseVector:
        return _merged(
            [self._words.embed_query(text), self._identifiers.embed_query(_joined(text))]
        )


def _joined(text: str) -> str:
    return " ".join(identifiers(text))


def _merged(parts: Sequence[qe.SparseVector]) -> SparseVector:
    weights: dict[int, float] = {}
    for part in parts:
        for index, value in zip(part.indices, part.values, strict=True):
            weights[index] = weights.get(index, 0.0) + float(value)
    ordered = sorted(weights.items())
    return SparseVector(tuple(i for i, _ in ordered), tuple(v for _, v in ordered))
