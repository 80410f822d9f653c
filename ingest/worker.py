"""Parse files in a separate process, under a time limit, several files ahead of the caller.

A pathological file (a PDF that makes the parser loop, a reader that segfaults, a zip bomb
that unpacks to gigabytes) costs that file only: the worker runs under a time limit per file
and a memory limit (RLIMIT_AS, APPLIANCE_PARSER_MEMORY_MB); a file that exceeds either fails
with the reason, a worker that dies is restarted, and the run goes on.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import queue
import resource
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from appliance.domain import ChunkText, FileChunks, TextSection
from appliance.errors import ApplianceError, LoadError, ParseTimeoutError
from ingest.chunking import ChunkConfig
from ingest.ocr import OcrConfig

log = logging.getLogger(__name__)
# Files handed to the worker before their results are read: enough that it keeps parsing
# while the caller embeds a whole group of chunks.
LOOKAHEAD = 24
STARTUP_TIMEOUT_S = 300
ParseOutcome = list[ChunkText] | LoadError
ParseFunction = Callable[[Path, Any, OcrConfig], list[ChunkText]]
MB = 1024 * 1024
# Libraries that start a thread per core (OpenBLAS under pandas, say) reserve address space
# for each: on a machine with many cores that alone could exceed the memory limit. The worker
# parses one file at a time, so one thread each is enough.
SINGLE_THREADED = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def parse_file(path: Path, chunker: Any, ocr: OcrConfig) -> list[ChunkText]:
    """The file's chunks (a `FileChunks`: pages that could not be read are named in its
    `problems`), or LoadError."""
    from ingest.loaders import load_document

    # Discovery hands over real paths only: one that resolves elsewhere now was replaced by a
    # symbolic link (or its folder was) after the folder was read, perhaps to publish a file
    # from outside it.
    if os.path.realpath(path) != os.path.abspath(path):
        raise LoadError(
            "skipped: the file or a folder above it became a symbolic link after the folder "
            "was read (links are not followed this way); ingest again"
        )
    loaded = load_document(path, ocr)
    chunks = _mark_ocr(chunker.split(loaded.sections), loaded.sections)
    return FileChunks(
        chunks, (f"{problem}; the rest of the file was ingested" for problem in loaded.problems)
    )


def _mark_ocr(chunks: list[ChunkText], sections: list[TextSection]) -> list[ChunkText]:
    """Chunks of pages read by OCR say so (a section read by OCR is always a whole page)."""
    read = {s.page: s.ocr_confidence for s in sections if s.ocr and s.page is not None}
    return [
        dataclasses.replace(c, ocr=True, ocr_confidence=read[c.page]) if c.page in read else c
        for c in chunks
    ]


# About ten times what the parser needs with every reader loaded (~400 MB of address space).
DEFAULT_MEMORY_MB = 4096


def out_of_memory(memory_mb: int) -> str:
    if memory_mb <= 0:
        return "the parser ran out of memory (no limit set: the machine's memory is exhausted)"
    return f"the parser ran out of memory (limit {memory_mb} MB, APPLIANCE_PARSER_MEMORY_MB)"


def _limit_memory(memory_mb: int) -> None:
    """Cap this process's address space. Its normal size, every reader imported, is about
    400 MB of address space (180 MB resident), measured on a folder of every format."""
    if memory_mb <= 0:
        return
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    wanted = memory_mb * MB
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    try:
        resource.setrlimit(resource.RLIMIT_AS, (wanted, hard))
    except (ValueError, OSError) as exc:
        _one_line("parser_memory_limit_not_set", _describe(exc))


def _worker_main(
    conn: Connection,
    config: ChunkConfig,
    memory_mb: int,
    parse: ParseFunction = parse_file,
    ocr: OcrConfig | None = None,
) -> None:
    # A process group of its own: the OCR processes it starts are stopped with it.
    os.setpgid(0, 0)
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    for name in SINGLE_THREADED:
        os.environ.setdefault(name, "1")
    # Ctrl-C is the caller's to handle (it stops this worker itself), should one reach here.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        _limit_memory(memory_mb)
        _serve(conn, config, memory_mb, parse, ocr or OcrConfig())
    except (EOFError, OSError) as exc:  # the caller went away (killed, say): nothing to do
        cause = f"the process that started it went away ({_describe(exc)})"
        _one_line("parser_worker_stopped", cause)
    except BaseException as exc:
        _one_line("parser_worker_failed", _describe(exc))


def _serve(
    conn: Connection, config: ChunkConfig, memory_mb: int, parse: ParseFunction, ocr: OcrConfig
) -> None:
    from ingest.chunking import Chunker

    try:
        chunker = Chunker(config)
    except MemoryError:
        conn.send(("failed", f"{out_of_memory(memory_mb)} while starting: raise the limit"))
        return
    except Exception as exc:
        conn.send(("failed", _describe(exc)))
        return
    conn.send(("ready", None))
    # A reply waits in this queue rather than in a full pipe, so the next file is parsed
    # while the caller is still busy with earlier ones.
    replies: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
    sender = threading.Thread(target=_send_replies, args=(conn, replies, memory_mb), daemon=True)
    sender.start()
    while True:
        request = conn.recv()
        if request is None:  # replies nobody will read die with the process
            return
        # The reply is queued after the except clause: by then the memory a failed parse
        # held (referenced from the traceback) is free again, and the next file has it.
        reply: tuple[str, Any]
        try:
            reply = ("ok", parse(Path(request), chunker, ocr))
        except LoadError as exc:
            reply = ("error", str(exc))
        except MemoryError:
            reply = ("error", f"{out_of_memory(memory_mb)}: split the file, or raise the limit")
        except Exception as exc:
            reply = ("error", f"cannot parse ({_describe(exc)})")
        replies.put(reply)


def _send_replies(
    conn: Connection, replies: queue.SimpleQueue[tuple[str, Any]], memory_mb: int
) -> None:
    while True:
        try:
            try:
                conn.send(replies.get())
            except MemoryError:  # too many chunks to serialise under the limit
                conn.send(("error", f"{out_of_memory(memory_mb)}: split the file, or raise it"))
        except OSError:  # the caller went away; it starts a new worker if it needs one
            return


def _describe(exc: BaseException) -> str:
    text = str(exc).replace("\n", " ").strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _one_line(event: str, cause: str) -> None:
    """The worker has no logging set up (a spawned process): one line on stderr, which the
    server's log collects, instead of multiprocessing's traceback."""
    print(f"event={event} pid={os.getpid()} cause={cause}", file=sys.stderr, flush=True)


def exit_cause(exitcode: int | None) -> str:
    """Why a worker process ended, from its exit code."""
    if exitcode is None:
        return "it stopped answering"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = ", perhaps for lack of memory" if name == "SIGKILL" else ""
        return f"killed by {name}{hint}"
    return f"exited with code {exitcode}"


class ParserProcess:
    def __init__(
        self,
        config: ChunkConfig,
        timeout_s: float,
        memory_mb: int = DEFAULT_MEMORY_MB,
        *,
        ocr: OcrConfig | None = None,
        parse: ParseFunction = parse_file,
    ) -> None:
        """`memory_mb`: the worker's address-space limit (0: none; APPLIANCE_PARSER_MEMORY_MB).
        `ocr`: how scans and images are read (default: OCR on, in English).
        `parse`: what the worker does with each file (a module-level function; for tests)."""
        self._config = config
        self._ocr = ocr or OcrConfig()
        self._timeout_s = timeout_s
        self._memory_mb = memory_mb
        self._parse = parse
        self._context = multiprocessing.get_context("spawn")
        self._process: Any = None
        self._conn: Connection | None = None
        self._starting: Connection | None = None
        # Files that never reached the worker: it had gone when they were sent.
        self._undelivered: set[Path] = set()

    def prestart(self) -> None:
        """Start the worker now, without waiting for it: its imports then overlap whatever the
        caller loads meanwhile (the embedding model, say)."""
        if self._process is None:
            self._spawn()

    def _spawn(self) -> None:
        parent, child = self._context.Pipe()
        self._process = self._context.Process(
            target=_worker_main,
            args=(child, self._config, self._memory_mb, self._parse, self._ocr),
            daemon=True,
            name="appliance-parser",
        )
        self._process.start()
        child.close()
        self._starting = parent

    def _start(self) -> Connection:
        if self._starting is None:
            self._spawn()
        parent, self._starting = self._starting, None
        assert parent is not None
        # Wait for the worker's imports and tokenizer so that start-up never counts
        # against a file's parse time limit.
        if not parent.poll(STARTUP_TIMEOUT_S):
            self._process.kill()
            raise ApplianceError("the parser process did not start; see the log for why")
        try:
            status, detail = parent.recv()
        except EOFError:
            self._process.join()
            raise ApplianceError(
                "the parser process died while starting; see the log for why"
            ) from None
        if status != "ready":
            self._process.join()
            raise ApplianceError(f"the parser process cannot start: {detail}")
        self._conn = parent
        return parent

    @property
    def usable(self) -> bool:
        """False when the worker died on its own while idle (killed for memory, say); a worker
        not started yet is usable: it starts on first use."""
        return self._process is None or bool(self._process.is_alive())

    def _kill(self) -> None:
        if self._process is not None:
            try:  # the worker and the OCR process it may be waiting for
                os.killpg(self._process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):  # not yet in its own group
                self._process.kill()
            self._process.join()
        self._process = None
        self._conn = None
        self._starting = None
        self._undelivered = set()

    def close(self) -> None:
        if self._conn is not None and self._process is not None and self._process.is_alive():
            try:
                self._conn.send(None)
                self._process.join(timeout=5)
            except OSError:
                pass
        self._kill()

    def parse_stream(self, paths: Iterable[Path]) -> Iterator[tuple[Path, ParseOutcome]]:
        """Yield (path, chunks or LoadError) in order; the next files parse meanwhile.

        A worker that dies (killed for memory, say) costs the file it was reading, found by
        the order of the replies; one that died between files costs none. Either way it is
        restarted and given the files that were waiting.
        """
        upcoming = iter(paths)
        pending: deque[Path] = deque()

        def refill() -> None:
            while len(pending) < LOOKAHEAD:
                path = next(upcoming, None)
                if path is None:
                    return
                self._send(path)
                pending.append(path)

        def resend() -> None:
            for waiting in pending:
                self._send(waiting)

        refill()
        retried: Path | None = None
        while pending:
            path = pending[0]
            outcome = self._receive(path, blame=retried == path)
            if outcome is None:  # the worker died before this file reached it
                retried = path
                resend()
                continue
            pending.popleft()
            if self._conn is None:  # the worker was stopped: hand a new one the queue
                resend()
            refill()
            yield path, outcome

    def _send(self, path: Path) -> None:
        conn = self._conn if self._conn is not None else self._start()
        if self._undelivered:  # the worker is gone: the rest waits for the next one
            self._undelivered.add(path)
            return
        try:
            conn.send(str(path))
        except OSError:
            self._undelivered.add(path)

    def _receive(self, path: Path, blame: bool = False) -> ParseOutcome | None:
        """The worker's reply for `path`; None when the worker had gone before `path` reached
        it (it is then stopped, and the caller sends the file again), unless `blame`."""
        assert self._conn is not None
        if path in self._undelivered:  # every earlier reply was read: it died between files
            cause = self._stop_dead_worker(None)
            if not blame:
                return None
            return LoadError(f"the parser process stopped twice before reading this file ({cause})")
        try:
            ready = self._conn.poll(self._timeout_s)
            if not ready:
                self._kill()
                log.warning("event=parse_timeout path=%s seconds=%s", path, self._timeout_s)
                return ParseTimeoutError(
                    f"parsing took longer than {self._timeout_s:g} s and was stopped "
                    "(APPLIANCE_PARSE_TIMEOUT_S); check the file or raise the limit"
                )
            status, payload = self._conn.recv()
        except (EOFError, OSError):
            cause = self._stop_dead_worker(path)
            # Past the limit, native code (lxml, a Rust tokenizer) may abort or crash rather
            # than raise MemoryError; the kernel's OOM killer sends SIGKILL.
            return LoadError(
                f"the parser process stopped while reading this file ({cause}): most likely "
                f"{out_of_memory(self._memory_mb)}, or the file is corrupt; check the file, "
                "or raise the limit"
            )
        if status == "ok":
            return payload if isinstance(payload, list) else list(payload)
        return LoadError(str(payload))

    def _stop_dead_worker(self, reading: Path | None) -> str:
        """Reap a worker that died, log why in one line, and return why."""
        process = self._process
        if process is not None:
            process.join(timeout=5)
        cause = exit_cause(process.exitcode if process is not None else None)
        self._kill()
        log.warning(
            "event=parser_died cause=%s while=%s; it is restarted for the next files",
            cause,
            f"reading {reading}" if reading is not None else "waiting between files",
        )
        return cause

    def __enter__(self) -> ParserProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
