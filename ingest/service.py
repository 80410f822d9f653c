"""Every write to the index in a serving process: uploads, the watched folder, deletes.

The embedded store belongs to one process, so the web server ingests where it answers. Writes
run one at a time under a lock (a second caller waits); searches do not take it and go on
meanwhile. One parser process stays alive between runs, so an upload does not pay its start-up.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from appliance.domain import DocumentEntry, IngestReport
from appliance.embedding import Embedder, PacedEmbedder
from appliance.errors import ApplianceError, StoreError
from appliance.keywords import KeywordEncoder
from appliance.manifest import Manifest
from appliance.store import VectorStore
from appliance.threads import ThreadPlan
from ingest.chunking import ChunkConfig
from ingest.ocr import OcrConfig
from ingest.pipeline import IngestPipeline, Parser
from ingest.pipeline import forget as forget_documents
from ingest.worker import DEFAULT_MEMORY_MB, ParserProcess

log = logging.getLogger(__name__)

INGEST_AFTER_ERROR = "What was indexed before it is kept, and the next run completes the rest"
FORGET_AFTER_ERROR = "Some of the documents may still be in the index: try again"


class ClosableParser(Parser, Protocol):
    def close(self) -> None: ...


class IngestCancelled(ApplianceError):
    """A run stopped at a progress step: on_progress raised it, or the service is closing.

    What was written before stays; the next run over the same files completes it.
    """


@dataclass(frozen=True)
class IngestJob:
    """What the UI shows about the running or the last ingestion."""

    label: str  # e.g. "upload: report.pdf" or "folder: /docs"
    files_total: int
    files_done: int
    chunks_done: int
    started_at: float  # time.time()
    finished_at: float | None
    report: IngestReport | None  # set when the run finished
    error: str | None


class _JobProgress:
    """The pipeline's Progress, kept as an IngestJob and handed to `publish` at each step."""

    def __init__(
        self, job: IngestJob, publish: Callable[[IngestJob], None], closing: threading.Event
    ) -> None:
        self.job = job
        self._publish = publish
        self._closing = closing

    def start(self, files: int) -> None:
        self._set(replace(self.job, files_total=files))

    def advance(self, files: int = 0, chunks: int = 0) -> None:
        job = self.job
        self._set(
            replace(job, files_done=job.files_done + files, chunks_done=job.chunks_done + chunks)
        )

    def _set(self, job: IngestJob) -> None:
        if self._closing.is_set():
            raise IngestCancelled("ingestion stopped: the server is shutting down")
        self.job = job
        self._publish(job)


def _worker_alive(parser: object) -> bool:
    """False when a ParserProcess's worker exited between runs (killed for memory, say).

    The parser restarts a worker it killed itself, but a worker that died while idle would
    make the next run's first files look corrupt.
    """
    return bool(getattr(parser, "usable", True))


def _unexpected(exc: Exception, action: str, after: str) -> StoreError:
    detail = f"{type(exc).__name__}: {exc}"
    if len(detail) > 200:
        detail = detail[:200] + "..."
    return StoreError(
        f"{action} stopped on an unexpected error ({detail}). {after}; the server log has "
        "the details"
    )


class IndexService:
    """Every write to the index in a serving process, one at a time: uploads, the watched
    folder, deletes."""

    def __init__(
        self,
        store: VectorStore,
        embedder: Embedder,
        manifest: Manifest,
        chunk_config: ChunkConfig,
        parse_timeout_s: float,
        max_file_bytes: int,
        *,
        parser_memory_mb: int = DEFAULT_MEMORY_MB,
        ocr: OcrConfig | None = None,
        parser_factory: Callable[[], ClosableParser] | None = None,
        chunk_headers: bool = True,
        thread_plan: ThreadPlan | None = None,
    ) -> None:
        """`thread_plan`: the cores shared with answers in this process (appliance/threads.py);
        ingestion then embeds with the plan's share while an answer streams."""
        self._chunk_headers = chunk_headers
        self._thread_plan = thread_plan
        self._keywords = KeywordEncoder()
        self._store = store
        self._embedder = embedder
        self._manifest = manifest
        self._max_file_bytes = max_file_bytes
        self._new_parser = parser_factory or (
            lambda: ParserProcess(chunk_config, parse_timeout_s, parser_memory_mb, ocr=ocr)
        )
        self._parser: ClosableParser | None = None
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._current: IngestJob | None = None
        self._last: IngestJob | None = None

    @property
    def current(self) -> IngestJob | None:
        """The running job, if any."""
        return self._current

    @property
    def last(self) -> IngestJob | None:
        """The last finished job, successful or not."""
        return self._last

    def ingest(
        self,
        paths: list[Path],
        acl: Sequence[str],
        label: str,
        on_progress: Callable[[IngestJob], None] | None = None,
    ) -> IngestReport:
        """Ingest files or folders (see IngestPipeline.run); waits while another write runs.

        `on_progress` is called in this thread after each step; an exception it raises stops
        the run (raise IngestCancelled to cancel). ApplianceErrors propagate; any other error
        becomes a StoreError. Either way the job's `error` records it.
        """
        with self._lock:
            self._check_open()
            progress = _JobProgress(
                IngestJob(label, 0, 0, 0, time.time(), None, None, None),
                lambda job: self._publish(job, on_progress),
                self._closing,
            )
            self._current = progress.job
            log.info("event=ingest_started label=%s", label)
            finished = False
            plan = self._thread_plan
            try:
                with plan.ingesting() if plan is not None else nullcontext():
                    report = self._pipeline().run(list(paths), acl, progress)
                finished = True
            except Exception as exc:
                error = (
                    exc
                    if isinstance(exc, ApplianceError)
                    else _unexpected(exc, "ingestion", INGEST_AFTER_ERROR)
                )
                self._failed(progress.job, exc, error, on_progress)
                if error is exc:
                    raise
                raise error from exc
            finally:
                if not finished:
                    # Its pipe may still hold replies for files this run did not read.
                    self._drop_parser()
                    self._current = None
            self._finish(replace(progress.job, report=report), on_progress)
            log.info(
                "event=ingest_finished label=%s new=%d changed=%d unchanged=%d deleted=%d "
                "failed=%d chunks_added=%d seconds=%.1f",
                label,
                report.new,
                report.changed,
                report.unchanged,
                report.deleted,
                len(report.failed),
                report.chunks_added,
                report.seconds,
            )
            return report

    def forget(self, target: str) -> list[DocumentEntry]:
        """Remove a document by doc id, or by path (a folder removes everything under it)."""
        with self._lock:
            self._check_open()
            try:
                removed = forget_documents(self._store, self._manifest, target)
            except ApplianceError:
                raise
            except Exception as exc:
                log.error("event=forget_failed error=%s", type(exc).__name__, exc_info=exc)
                raise _unexpected(exc, "removing documents", FORGET_AFTER_ERROR) from exc
            log.info("event=documents_forgotten target=%s documents=%d", target, len(removed))
            return removed

    def documents(self) -> list[DocumentEntry]:
        """The manifest's entries, sorted by source. Reads do not wait for a running write."""
        return sorted(self._manifest.entries(), key=lambda entry: entry.source)

    def document(self, doc_id: str) -> DocumentEntry | None:
        entries = self._manifest.by_doc_id(doc_id.strip().lower())
        return entries[0] if entries else None

    def close(self) -> None:
        """Stop a running ingestion at its next step, then the parser process."""
        self._closing.set()
        with self._lock:
            self._drop_parser()

    def _check_open(self) -> None:
        if self._closing.is_set():
            raise IngestCancelled("the index service is closed: the server is shutting down")

    def _pipeline(self) -> IngestPipeline:
        plan = self._thread_plan
        return IngestPipeline(
            self._store,
            self._embedder if plan is None else PacedEmbedder(self._embedder, plan),
            self._manifest,
            self._parser_for_run(),
            self._max_file_bytes,
            keywords=self._keywords,
            chunk_headers=self._chunk_headers,
        )

    def _parser_for_run(self) -> ClosableParser:
        if self._parser is not None and not _worker_alive(self._parser):
            log.warning("event=parser_restarted reason=worker_exited")
            self._drop_parser()
        if self._parser is None:
            self._parser = self._new_parser()
        return self._parser

    def _drop_parser(self) -> None:
        parser, self._parser = self._parser, None
        if parser is None:
            return
        try:
            parser.close()
        except Exception as exc:
            log.warning("event=parser_close_failed error=%s", type(exc).__name__)

    def _publish(self, job: IngestJob, on_progress: Callable[[IngestJob], None] | None) -> None:
        self._current = job
        if on_progress is not None:
            on_progress(job)

    def _failed(
        self,
        job: IngestJob,
        exc: Exception,
        error: Exception,
        on_progress: Callable[[IngestJob], None] | None,
    ) -> None:
        if error is exc:
            log.warning("event=ingest_failed label=%s error=%s", job.label, error)
        else:
            log.error(
                "event=ingest_failed label=%s error=%s", job.label, type(exc).__name__, exc_info=exc
            )
        self._finish(replace(job, error=str(error)), on_progress)

    def _finish(self, job: IngestJob, on_progress: Callable[[IngestJob], None] | None) -> None:
        finished = replace(job, finished_at=time.time())
        self._last = finished
        self._current = None
        if on_progress is None:
            return
        try:  # the run is over: a failing callback cannot change its outcome
            on_progress(finished)
        except Exception as exc:
            log.warning("event=progress_callback_failed error=%s", type(exc).__name__)
