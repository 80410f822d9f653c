import threading
import time

import pytest

from appliance.errors import BusyError
from appliance.gate import ModelGate


def test_callers_beyond_the_queue_are_told_busy_at_once() -> None:
    gate = ModelGate(queue_size=1, timeout_s=5)
    holding, release = threading.Event(), threading.Event()
    waiter_in, waiter_done = threading.Event(), threading.Event()

    def hold() -> None:
        with gate.hold():
            holding.set()
            release.wait(5)

    def wait_in_queue() -> None:
        waiter_in.set()
        with gate.hold():
            waiter_done.set()

    first = threading.Thread(target=hold)
    first.start()
    holding.wait(5)
    second = threading.Thread(target=wait_in_queue)
    second.start()
    waiter_in.wait(5)
    deadline = time.monotonic() + 5
    while gate.waiting < 1:
        assert time.monotonic() < deadline, "the second caller never queued"
        time.sleep(0.01)
    with pytest.raises(BusyError, match="busy"), gate.hold():
        pass
    release.set()
    first.join(5)
    second.join(5)
    assert waiter_done.is_set()  # the queued caller got its turn


def test_a_caller_that_waits_too_long_is_told_busy() -> None:
    gate = ModelGate(queue_size=4, timeout_s=0.2)
    release = threading.Event()
    holding = threading.Event()

    def hold() -> None:
        with gate.hold():
            holding.set()
            release.wait(5)

    worker = threading.Thread(target=hold)
    worker.start()
    holding.wait(5)
    with pytest.raises(BusyError, match="stayed busy"), gate.hold():
        pass
    release.set()
    worker.join(5)
    assert gate.waiting == 0


def test_the_gate_can_be_released_by_another_thread_than_the_one_that_took_it() -> None:
    gate = ModelGate(queue_size=0, timeout_s=1)

    def stream() -> object:
        with gate.hold():
            yield "token"

    tokens = stream()
    assert next(tokens) == "token"  # acquired on this thread
    closer = threading.Thread(target=tokens.close)
    closer.start()
    closer.join(5)
    assert not gate.busy
    with gate.hold():
        assert gate.busy
