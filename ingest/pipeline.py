"""Incremental, crash-safe ingestion: files -> chunks -> vectors -> store -> manifest.

Order of writes for one file version (doc_id = sha256 of its bytes):
  1. upsert its chunks under stable ids (dense and BM25 vectors in the same points), flush;
  2. delete the path's chunks that belong to another version (or lie past its end), flush;
  3. record the version in the manifest.
A kill at any step leaves the manifest without that version, so the next run re-does it;
re-doing is idempotent because the ids are stable. The result is the clean run's index.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from appliance.domain import (
    ChunkText,
    DocumentEntry,
    FailedFile,
    FileChunks,
    IndexedChunk,
    IngestReport,
)
from appliance.embedding import Embedder
from appliance.errors import LoadError
from appliance.filehash import sha256_of_file
from appliance.keywords import KeywordEncoder, embedding_text
from appliance.manifest import Manifest
from appliance.store import VectorStore
from ingest.discovery import discover, display_path, is_under

log = logging.getLogger(__name__)

# Chunks embedded together: large enough that the embedder sorts and pads efficiently.
EMBED_GROUP_CHUNKS = 512
# The first groups are smaller, so embedding starts while the parser is still on the first
# files instead of waiting for a full group.
FIRST_GROUP_CHUNKS = 64
# What IngestReport.stages times, in seconds: waiting for the parser process (what of
# parsing and splitting is not overlapped with embedding), embedding (with the model's load
# on first use), writing to the store and manifest.
STAGES = ("parse_wait", "encode", "write")


class Parser(Protocol):
    def parse_stream(
        self, paths: Iterable[Path]
    ) -> Iterator[tuple[Path, list[ChunkText] | LoadError]]: ...


class Progress(Protocol):
    def start(self, files: int) -> None: ...

    def advance(self, files: int = 0, chunks: int = 0) -> None: ...


class _NoProgress:
    def start(self, files: int) -> None:
        pass

    def advance(self, files: int = 0, chunks: int = 0) -> None:
        pass


@dataclass(frozen=True)
class _Candidate:
    path: Path
    doc_id: str
    size: int
    previous: DocumentEntry | None


@dataclass(frozen=True)
class _Parsed:
    candidate: _Candidate
    chunks: list[ChunkText]


def unexpected_failure(exc: Exception) -> str:
    detail = f"{type(exc).__name__}: {exc}"
    if len(detail) > 200:
        detail = detail[:200] + "..."
    return (
        f"unexpected error ({detail}); the other files were still ingested: check this file, "
        "and report the error if the file looks fine"
    )


def _warm_up(part: object, method: str) -> None:
    """Start a part that can start in the background (LazyEmbedder, ParserProcess)."""
    start = getattr(part, method, None)
    if start is not None:
        start()


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class IngestPipeline:
    def __init__(
        self,
        store: VectorStore,
        embedder: Embedder,
        manifest: Manifest,
        parser: Parser,
        max_file_bytes: int,
        *,
        keywords: KeywordEncoder | None = None,
        chunk_headers: bool = True,
    ) -> None:
        """`chunk_headers`: embed each chunk with its contextual header in front."""
        self._store = store
        self._embedder = embedder
        self._manifest = manifest
        self._parser = parser
        self._max_file_bytes = max_file_bytes
        self._keywords = keywords if keywords is not None else KeywordEncoder()
        self._chunk_headers = chunk_headers
        self._stages = dict.fromkeys(STAGES, 0.0)

    def run(
        self, paths: list[Path], acl: Sequence[str], progress: Progress | None = None
    ) -> IngestReport:
        started = time.monotonic()
        progress = progress or _NoProgress()
        report = IngestReport()
        groups = tuple(sorted(set(acl)))
        found = discover(paths)
        report.failed.extend(found.missing)
        report.failed.extend(found.skipped)
        progress.start(len(found.files))

        to_parse: list[_Candidate] = []
        for path in found.files:
            candidate = self._inspect(path, report)
            if candidate is None:
                progress.advance(files=1)
            elif self._is_current(candidate):
                self._keep(candidate, groups, report)
                progress.advance(files=1)
            else:
                to_parse.append(candidate)

        by_path = {c.path: c for c in to_parse}
        group: list[_Parsed] = []
        group_target = FIRST_GROUP_CHUNKS
        self._stages = dict.fromkeys(STAGES, 0.0)
        if to_parse:  # the model loads while the parser starts: neither when nothing changed
            _warm_up(self._embedder, "warm_up")
            _warm_up(self._parser, "prestart")
        for path, outcome in self._timed_stream(c.path for c in to_parse):
            candidate = by_path[path]
            if isinstance(outcome, LoadError):
                self._fail(candidate, str(outcome), report)
                progress.advance(files=1)
                continue
            if isinstance(outcome, FileChunks):  # pages that could not be read (OCR)
                report.failed.extend(FailedFile(str(path), p) for p in outcome.problems)
            group.append(_Parsed(candidate, outcome))
            if sum(len(p.chunks) for p in group) >= group_target:
                self._write(group, groups, report, progress)
                group = []
                group_target = min(group_target * 2, EMBED_GROUP_CHUNKS)
        self._write(group, groups, report, progress)

        seen = {str(path) for path in found.files}
        for folder in found.folders:
            self._remove_vanished(folder, seen, report)
        report.chunks_total = self._store.count()
        report.seconds = time.monotonic() - started
        report.stages = self._stages
        return report

    def _timed_stream(
        self, paths: Iterable[Path]
    ) -> Iterator[tuple[Path, list[ChunkText] | LoadError]]:
        """The parser's results, counting the time spent waiting for them."""
        stream = self._parser.parse_stream(paths)
        while True:
            waited = time.perf_counter()
            item = next(stream, None)
            self._stages["parse_wait"] += time.perf_counter() - waited
            if item is None:
                return
            yield item

    def _inspect(self, path: Path, report: IngestReport) -> _Candidate | None:
        try:
            size = path.stat().st_size
            if size > self._max_file_bytes:
                limit_mb = self._max_file_bytes / 1_000_000
                raise LoadError(
                    f"over the size limit ({size / 1_000_000:.1f} MB > "
                    f"{limit_mb:g} MB, APPLIANCE_MAX_FILE_SIZE_MB)"
                )
            doc_id = sha256_of_file(path)
            previous = self._manifest.get(str(path))
        except (OSError, LoadError) as exc:
            reason = str(exc) if isinstance(exc, LoadError) else f"cannot read: {exc.strerror}"
            report.failed.append(FailedFile(str(path), reason))
            return None
        except Exception as exc:  # one file's surprise is that file's failure, not the run's
            report.failed.append(FailedFile(display_path(path), unexpected_failure(exc)))
            log.warning(
                "event=file_failed source=%s error=%s: %s",
                display_path(path),
                type(exc).__name__,
                exc,
            )
            return None
        return _Candidate(path, doc_id, size, previous)

    def _is_current(self, candidate: _Candidate) -> bool:
        previous = candidate.previous
        if previous is None or previous.doc_id != candidate.doc_id:
            return False
        # The manifest vouches for this version; check the store still holds exactly it.
        source = str(candidate.path)
        return (
            self._store.count(source=source)
            == previous.chunks
            == self._store.count(source=source, doc_id=candidate.doc_id)
        )

    def _keep(self, candidate: _Candidate, groups: tuple[str, ...], report: IngestReport) -> None:
        previous = candidate.previous
        assert previous is not None
        if previous.acl == groups:
            report.unchanged += 1
            return
        self._store.set_acl(previous.source, groups)
        self._store.flush()
        self._manifest.put(
            DocumentEntry(
                previous.source, previous.doc_id, previous.size, previous.chunks, groups, utc_now()
            )
        )
        report.changed += 1

    def _fail(self, candidate: _Candidate, reason: str, report: IngestReport) -> None:
        report.failed.append(FailedFile(str(candidate.path), reason))
        # Keep the version the manifest vouches for; drop leftovers of an interrupted run.
        previous = candidate.previous
        if previous is not None:
            self._store.delete_stale(previous.source, previous.doc_id, previous.chunks)
        else:
            self._store.delete_source(str(candidate.path))

    def _write(
        self,
        parsed: list[_Parsed],
        groups: tuple[str, ...],
        report: IngestReport,
        progress: Progress,
    ) -> None:
        if not parsed:
            return
        now = utc_now()
        chunks = [
            IndexedChunk(
                p.candidate.doc_id,
                str(p.candidate.path),
                c.position,
                c.text,
                groups,
                now,
                page=c.page,
                section=c.section,
                ocr=c.ocr,
                ocr_confidence=c.ocr_confidence,
            )
            for p in parsed
            for c in p.chunks
        ]
        for start in range(0, len(chunks), EMBED_GROUP_CHUNKS):
            batch = chunks[start : start + EMBED_GROUP_CHUNKS]
            texts = [
                embedding_text(c.source, c.section, c.text, self._chunk_headers) for c in batch
            ]
            encoding = time.perf_counter()
            vectors = self._embedder.embed(texts)
            writing = time.perf_counter()
            self._stages["encode"] += writing - encoding
            self._store.upsert(batch, vectors, self._keywords.documents(texts))
            self._stages["write"] += time.perf_counter() - writing
            progress.advance(chunks=len(batch))
        writing = time.perf_counter()
        self._store.flush()
        for p in parsed:
            self._store.delete_stale(str(p.candidate.path), p.candidate.doc_id, len(p.chunks))
        self._store.flush()
        for p in parsed:
            c = p.candidate
            self._manifest.put(
                DocumentEntry(str(c.path), c.doc_id, c.size, len(p.chunks), groups, now)
            )
            if c.previous is None:
                report.new += 1
            else:
                report.changed += 1
                report.chunks_deleted += c.previous.chunks
            report.chunks_added += len(p.chunks)
            log.info("event=document_indexed source=%s chunks=%d", c.path, len(p.chunks))
            progress.advance(files=1)
        self._stages["write"] += time.perf_counter() - writing

    def _remove_vanished(self, folder: Path, seen: set[str], report: IngestReport) -> None:
        for entry in list(self._manifest.entries()):
            if is_under(entry.source, folder) and entry.source not in seen:
                remove_document(self._store, self._manifest, [entry])
                report.deleted += 1
                report.chunks_deleted += entry.chunks
        # Chunks of files that vanished before any run completed them.
        for source, count in self._store.source_counts().items():
            if is_under(source, folder) and source not in seen:
                self._store.delete_source(source)
                report.chunks_deleted += count
        self._store.flush()


def forget(store: VectorStore, manifest: Manifest, target: str) -> list[DocumentEntry]:
    """Remove a document by doc id, or by path (a folder removes everything under it)."""
    entries = manifest.by_doc_id(target.lower())
    if not entries:
        path = Path(target).expanduser().resolve()
        entries = [
            e for e in manifest.entries() if e.source == str(path) or is_under(e.source, path)
        ]
    remove_document(store, manifest, entries)
    return entries


def remove_document(store: VectorStore, manifest: Manifest, entries: list[DocumentEntry]) -> None:
    """Delete the entries' chunks, then their manifest rows. Each row first records that no
    chunk need be there, so a process killed between the two leaves an index the check finds
    whole (a row of 0 chunks, gone at the next run or forget), not one it calls damaged."""
    for entry in entries:
        manifest.put(dataclasses.replace(entry, chunks=0))
    for entry in entries:
        store.delete_source(entry.source)
    store.flush()
    for entry in entries:
        manifest.remove(entry.source)
