"""A terminal progress bar for ingestion: files, chunks and chunk rate."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class TerminalProgress:
    def __init__(self) -> None:
        self._bar = Progress(
            TextColumn("[bold]ingest"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("files  {task.fields[chunks]} chunks  {task.fields[rate]:.1f} chunks/s"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self._task = self._bar.add_task("ingest", total=0, chunks=0, rate=0.0)
        self._chunks = 0
        self._started = time.monotonic()

    def __enter__(self) -> TerminalProgress:
        self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.stop()

    def start(self, files: int) -> None:
        self._started = time.monotonic()
        self._bar.update(self._task, total=files)

    def advance(self, files: int = 0, chunks: int = 0) -> None:
        self._chunks += chunks
        rate = self._chunks / max(time.monotonic() - self._started, 1e-6)
        self._bar.update(self._task, advance=files, chunks=self._chunks, rate=rate)
