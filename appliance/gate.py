"""One model, one caller at a time: a lock with a bounded waiting queue."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from appliance.errors import BusyError


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
