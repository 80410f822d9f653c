"""Our own frozen types: the rest of the code never sees a library's types."""

from __future__ import annotations

import uuid
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
    """A piece of a document as a reader gives it: a PDF page, an HTML section, a sheet..."""

    text: str
    page: int | None = None
    section: str | None = None


@dataclass(frozen=True)
class ChunkText:
    """One chunk of a parsed document, before it is embedded."""

    position: int
    text: str
    page: int | None = None
    section: str | None = None


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
    applies to). The order of passages is the search's: fused (hybrid), BM25 (sparse) or
    cosine (dense); `rank_score` is the score that order comes from (the RRF score in
    hybrid mode). `keyword`: a keyword of the question (an identifier such as `--no-site`)
    the chunk holds as an exact token, found in hybrid and sparse modes.
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
        }
