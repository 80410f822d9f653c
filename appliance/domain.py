"""Our own frozen types: the rest of the code never sees a library's types."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

# Fixed namespace so that a chunk's point id is the same on every machine and every run.
CHUNK_ID_NAMESPACE = uuid.UUID("6b1f4c1e-8f2a-5d0b-9c7e-3a1d2b4c5e6f")


def chunk_point_id(doc_id: str, source: str, position: int) -> str:
    """Stable id of a chunk: the same file content at the same path always gets the same ids.

    The source is part of the key so that two identical files under different paths (and
    possibly different ACLs) stay independent: forgetting one never removes the other.
    """
    return str(uuid.uuid5(CHUNK_ID_NAMESPACE, f"{doc_id}\x1f{source}\x1f{position}"))


@dataclass(frozen=True)
class TextSection:
    """A piece of a document as a reader gives it: a PDF page, an HTML section, a sheet...

    `ocr`: the text was read by OCR from a scan or an image (machine-read: it may hold
    misread words), with the mean confidence (0-100) OCR gave the page's words."""

    text: str
    page: int | None = None
    section: str | None = None
    ocr: bool = False
    ocr_confidence: float | None = None


@dataclass(frozen=True)
class ChunkText:
    """One chunk of a parsed document, before it is embedded."""

    position: int
    text: str
    page: int | None = None
    section: str | None = None
    ocr: bool = False  # read by OCR; `ocr_confidence`: its page's mean word confidence, 0-100
    ocr_confidence: float | None = None


class FileChunks(list[ChunkText]):
    """A file's chunks, and what of the file could not be read (`problems`, a page each, such
    as "page 3: OCR failed (...)"): the file is ingested without those parts."""

    def __init__(self, chunks: Iterable[ChunkText] = (), problems: Iterable[str] = ()) -> None:
        super().__init__(chunks)
        self.problems = tuple(problems)


@dataclass(frozen=True)
class IndexedChunk:
    """A chunk as stored in the vector store, with everything compliance needs to trace it."""

    doc_id: str
    source: str
    position: int
    text: str
    acl: tuple[str, ...]
    ingested_at: str
    page: int | None = None
    section: str | None = None
    ocr: bool = False
    ocr_confidence: float | None = None

    @property
    def point_id(self) -> str:
        return chunk_point_id(self.doc_id, self.source, self.position)

    def payload(self) -> dict[str, Any]:
        return {
            "doc_id": self.doc_id,
            "source": self.source,
            "position": self.position,
            "text": self.text,
            "acl": list(self.acl),
            "ingested_at": self.ingested_at,
            "page": self.page,
            "section": self.section,
            # Absent from chunks stored before OCR: read as not OCR.
            "ocr": self.ocr,
            "ocr_confidence": self.ocr_confidence,
        }


@dataclass(frozen=True)
class SparseVector:
    """A BM25 sparse vector: token indices (ascending) and their weights."""

    indices: tuple[int, ...]
    values: tuple[float, ...]


@dataclass(frozen=True)
class RetrievedPassage:
    """A stored chunk returned for a question.

    `score`: the cosine similarity (-1..1) of the chunk's dense vector to the question's, in
    every retrieval mode (what users and the audit log see, and what the score threshold
    applies to). The order of passages is the search's: cosine (dense, and hybrid after the
    passages taken for a keyword, see `appliance.retrieval`) or BM25 (sparse);
    `rank_score` is the RRF score (hybrid) or the BM25 score (sparse). `keyword`: a keyword
    of the question (an identifier such as `--no-site`) the chunk holds as an exact token,
    found in hybrid and sparse modes. `ocr`: the text was
    machine-read from a scan (`ocr_confidence`: its page's mean word confidence, 0-100).
    """

    chunk_id: str
    doc_id: str
    source: str
    position: int
    text: str
    score: float
    page: int | None = None
    section: str | None = None
    rank_score: float | None = None
    keyword: str | None = None
    ocr: bool = False
    ocr_confidence: float | None = None


@dataclass(frozen=True)
class DocumentEntry:
    """A document the index holds, as the manifest records it."""

    source: str
    doc_id: str
    size: int
    chunks: int
    acl: tuple[str, ...]
    ingested_at: str


@dataclass(frozen=True)
class FailedFile:
    path: str
    error: str


@dataclass
class IngestReport:
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    deleted: int = 0
    failed: list[FailedFile] = field(default_factory=list)
    chunks_added: int = 0
    chunks_deleted: int = 0
    chunks_total: int = 0
    sparse_added: int = 0  # stored chunks that got their BM25 vector (older collections)
    seconds: float = 0.0
    # Seconds per stage: waiting for the parser, embedding (with any model load), writing.
    stages: dict[str, float] = field(default_factory=dict)
    embedder_loaded: bool = False  # whether this run loaded the embedding model

    def to_json(self) -> dict[str, Any]:
        return {
            "files": {
                "new": self.new,
                "changed": self.changed,
                "unchanged": self.unchanged,
                "deleted": self.deleted,
                "failed": [{"path": f.path, "error": f.error} for f in self.failed],
            },
            "chunks": {
                "added": self.chunks_added,
                "deleted": self.chunks_deleted,
                "total": self.chunks_total,
                "bm25_vectors_added": self.sparse_added,
            },
            "seconds": round(self.seconds, 3),
            "stages": {name: round(value, 3) for name, value in self.stages.items()},
            "embedder_loaded": self.embedder_loaded,
        }
