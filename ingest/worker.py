"""Parse files in a separate process, under a time limit, several files ahead of the caller.

A pathological file (a PDF that makes the parser loop, a reader that segfaults) costs
that file only: the worker is killed and restarted, and the run goes on.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from appliance.domain import ChunkText
from appliance.errors import ApplianceError, LoadError, ParseTimeoutError
from ingest.chunking import ChunkConfig

log = logging.getLogger(__name__)
# Files handed to the worker before their results are read: enough that it keeps parsing
# while the caller embeds a whole group of chunks.
LOOKAHEAD = 24
STARTUP_TIMEOUT_S = 300
ParseOutcome = list[ChunkText] | LoadError


def parse_file(path: Path, chunker: Any) -> list[ChunkText]:
    from ingest.loaders import load_sections

    return list(chunker.split(load_sections(path)))


def _worker_main(conn: Connection, config: ChunkConfig) -> None:
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    from ingest.chunking import Chunker

    try:
        chunker = Chunker(config)
    except Exception as exc:
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", None))
    # A reply waits in this queue rather than in a full pipe, so the next file is parsed
    # while the caller is still busy with earlier ones.
    replies: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
    sender = threading.Thread(target=_send_replies, args=(conn, replies), daemon=True)
    sender.start()
    while True:
        request = conn.recv()
        if request is None:  # replies nobody will read die with the process
            return
        try:
            replies.put(("ok", parse_file(Path(request), chunker)))
        except LoadError as exc:
            replies.put(("error", str(exc)))
        except Exception as exc:
            replies.put(("error", f"cannot parse ({type(exc).__name__}: {exc})"))


def _send_replies(conn: Connection, replies: queue.SimpleQueue[tuple[str, Any]]) -> None:
    while True:
        try:
            conn.send(replies.get())
        except OSError:  # the caller went away; it starts a new worker if it needs one
            return


class ParserProcess:
    def __init__(self, config: ChunkConfig, timeout_s: float) -> None:
        self._config = config
        self._timeout_s = timeout_s
        self._context = multiprocessing.get_context("spawn")
        self._process: Any = None
        self._conn: Connection | None = None
        self._starting: Connection | None = None

    def prestart(self) -> None:
        """Start the worker now, without waiting for it: its imports then overlap whatever the
        caller loads meanwhile (the embedding model, say)."""
        if self._process is None:
            self._spawn()

    def _spawn(self) -> None:
        parent, child = self._context.Pipe()
        self._process = self._context.Process(
            target=_worker_main, args=(child, self._config), daemon=True, name="appliance-parser"
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
            self._process.kill()
            self._process.join()
        self._process = None
        self._conn = None
        self._starting = None

    def close(self) -> None:
        if self._conn is not None and self._process is not None and self._process.is_alive():
            try:
                self._conn.send(None)
                self._process.join(timeout=5)
            except OSError:
                pass
        self._kill()

    def parse_stream(self, paths: Iterable[Path]) -> Iterator[tuple[Path, ParseOutcome]]:
        """Yield (path, chunks or LoadError) in order; the next files parse meanwhile."""
        upcoming = iter(paths)
        pending: deque[Path] = deque()

        def refill() -> None:
            while len(pending) < LOOKAHEAD:
                path = next(upcoming, None)
                if path is None:
                    return
                self._send(path)
                pending.append(path)

        refill()
        while pending:
            path = pending.popleft()
            outcome = self._receive(path)
            if isinstance(outcome, LoadError) and self._conn is None:
                for waiting in pending:  # the worker was restarted: hand it the queue again
                    self._send(waiting)
            refill()
            yield path, outcome

    def _send(self, path: Path) -> None:
        conn = self._conn if self._conn is not None else self._start()
        conn.send(str(path))

    def _receive(self, path: Path) -> ParseOutcome:
        assert self._conn is not None
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
            self._kill()
            return LoadError("the parser crashed on this file; is it corrupt?")
        if status == "ok":
            return list(payload)
        return LoadError(str(payload))

    def __enter__(self) -> ParserProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
