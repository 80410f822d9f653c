"""The thread plan: how ingestion's embedder and llama.cpp share the cores of one process.

Two thread pools that each want every core collapse when they run together: llama.cpp's
threads wait for each other at every token, so with 2 threads on 2 cores and the embedder
busy, generation fell from about 22 to 1-2 tokens/s. The plan, while an answer streams:

- ingestion embeds with `ingest_threads` threads (APPLIANCE_INGEST_THREADS_WHILE_ANSWERING;
  default a quarter of the cores, so none on fewer than 4): with none, it waits between
  batches of chunks until the answer is done, then goes on with every core;
- llama.cpp generates on the cores nobody else is busy on, counting the cores the embedder
  gives back at its next batch as free, and never more than `cores - ingest_threads`.
Without ingestion, llama.cpp takes the idle cores as before (`threads_for_now`).
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

# How long ingestion waits before it looks again (a missed notification costs no more).
WAIT_SLICE_S = 1.0


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def idle_cores(sample_s: float = 0.05) -> float | None:
    """How many cores no process used over the last `sample_s` seconds (Linux), else None."""

    def read() -> tuple[int, int] | None:
        try:
            with open("/proc/stat", encoding="ascii") as stat:
                fields = [int(v) for v in stat.readline().split()[1:9]]
        except (OSError, ValueError):
            return None
        return fields[3] + fields[4], sum(fields)  # idle + iowait, all

    first = read()
    time.sleep(sample_s)
    second = read()
    if first is None or second is None or second[1] <= first[1]:
        return None
    idle = (second[0] - first[0]) / (second[1] - first[1])
    return idle * (os.cpu_count() or 1)


def threads_for_now(cores: int, idle: float | None) -> int:
    """Threads llama.cpp should use now: one per core nobody else is busy on.

    Measured on 2 cores (Qwen2.5-Coder-1.5B Q4_K_M): idle, 2 threads generate 14 tokens/s and
    1 thread 7.7; with another process busy on one core, 2 threads collapse to 1-2 tokens/s
    (their threads wait for each other) while 1 thread keeps 7.7, and reading the prompt is
    faster with 1 thread too (58 against 41-50 tokens/s).
    """
    if idle is None:
        return max(cores - 1, 1)
    return max(1, min(cores, math.floor(idle + 0.25)))


def default_ingest_threads(cores: int) -> int:
    """Embedder threads while an answer streams, unless configured: a quarter of the cores."""
    return cores // 4


def llm_threads_for(
    cores: int,
    idle: float | None,
    *,
    ingesting: bool,
    embedder_threads: int = 0,
    ingest_threads: int = 0,
) -> int:
    """llama.cpp's threads for an answer starting now.

    `idle`: cores no process used a moment ago (None: unknown); `ingesting`: an ingestion
    runs in this process; `embedder_threads`: threads it is embedding with now (0: it is
    waiting for the parser, say); `ingest_threads`: those it keeps while the answer streams.
    The embedder's other threads are free from its next batch on.
    """
    if not ingesting:
        return threads_for_now(cores, idle)
    kept = min(ingest_threads, cores - 1)
    freed = max(embedder_threads - kept, 0)
    threads = threads_for_now(cores, None if idle is None else idle + freed)
    return max(1, min(threads, cores - kept))


class ThreadPlan:
    """Shared by the generator (one answer at a time) and ingestion (one run at a time)."""

    def __init__(self, cores: int, ingest_threads: int | None = None) -> None:
        self.cores = max(cores, 1)
        wanted = default_ingest_threads(self.cores) if ingest_threads is None else ingest_threads
        self.ingest_threads = max(0, min(wanted, self.cores - 1))
        self._answers = 0
        self._ingesting = 0
        self._embedding = 0
        self._changed = threading.Condition()

    @property
    def answering(self) -> bool:
        return self._answers > 0

    @property
    def embedder_threads(self) -> int:
        """Threads ingestion is embedding with now (0: it is not)."""
        return self._embedding

    @contextmanager
    def answer(self) -> Iterator[None]:
        """Hold while an answer is generated: ingestion keeps to its share meanwhile."""
        with self._changed:
            self._answers += 1
        try:
            yield
        finally:
            with self._changed:
                self._answers -= 1
                self._changed.notify_all()

    @contextmanager
    def ingesting(self) -> Iterator[None]:
        """Hold while an ingestion runs: answers leave it its share of the cores."""
        with self._changed:
            self._ingesting += 1
        try:
            yield
        finally:
            with self._changed:
                self._ingesting -= 1

    def llm_threads(self, idle: float | None) -> int:
        return llm_threads_for(
            self.cores,
            idle,
            ingesting=self._ingesting > 0 or self._embedding > 0,
            embedder_threads=self._embedding,
            ingest_threads=self.ingest_threads,
        )

    def embed_threads(self) -> int:
        """Threads for ingestion's next batch; waits while an answer streams and the plan
        leaves ingestion no thread."""
        with self._changed:
            while self._answers and not self.ingest_threads:
                self._embedding = 0
                self._changed.wait(WAIT_SLICE_S)
            threads = max(self.ingest_threads, 1) if self._answers else self.cores
            self._embedding = threads
            return threads

    def embedding_done(self) -> None:
        with self._changed:
            self._embedding = 0
