"""One model, one caller at a time: a lock with a bounded waiting queue, and the model
itself, loaded on first use and shared by every part that needs it (the assistant for its
answers and follow-up rewrites, the server's preload, /healthz and /metrics)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from appliance.errors import BusyError
from appliance.generation import Generator


class ModelGate:
    """Serialises use of the model. At most `queue_size` callers wait; others are told 'busy'.

    A plain Lock (not an RLock): a streaming generator may be resumed, and so release the
    gate, on another thread than the one that acquired it.
    """

    def __init__(self, queue_size: int, timeout_s: float) -> None:
        self._queue_size = queue_size
        self._timeout_s = timeout_s
        self._model = threading.Lock()
        self._state = threading.Lock()
        self._waiting = 0

    @property
    def waiting(self) -> int:
        return self._waiting

    @property
    def busy(self) -> bool:
        return self._model.locked()

    @contextmanager
    def hold(self) -> Iterator[None]:
        with self._state:
            if self._model.locked() and self._waiting >= self._queue_size:
                raise BusyError(
                    f"the model is busy answering other questions ({self._waiting} waiting): "
                    "try again in a moment"
                )
            self._waiting += 1
        try:
            acquired = self._model.acquire(timeout=self._timeout_s)
        finally:
            with self._state:
                self._waiting -= 1
        if not acquired:
            raise BusyError(
                f"the model stayed busy for {self._timeout_s:.0f} s: try again in a moment"
            )
        try:
            yield
        finally:
            self._model.release()


class SharedModel:
    """The one model of a process: loaded once, on first use, and used under its gate.

    Retrieve-only work never loads it; `load` may run ahead of the first question (the
    server's preload), and `hold` is how a caller generates: the gate first, then the model.
    """

    def __init__(self, gate: ModelGate, load: Callable[[], Generator]) -> None:
        self._gate = gate
        self._load = load
        self._generator: Generator | None = None
        self._load_lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._generator is not None

    @property
    def waiting(self) -> int:
        return self._gate.waiting

    @property
    def busy(self) -> bool:
        return self._gate.busy

    def load(self) -> Generator:
        """The model, loaded now if it is not yet."""
        with self._load_lock:
            if self._generator is None:
                self._generator = self._load()
            return self._generator

    @contextmanager
    def hold(self) -> Iterator[Generator]:
        """The model for one caller at a time (BusyError when the queue is full)."""
        with self._gate.hold():
            yield self.load()
