import threading
import time

import pytest

from appliance.errors import BusyError
from appliance.gate import ModelGate, SharedModel
from tests.support.fakes import ScriptedGenerator


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


def test_the_shared_model_loads_once_for_every_caller_and_is_used_under_the_gate() -> None:
    loads: list[ScriptedGenerator] = []

    def load() -> ScriptedGenerator:
        time.sleep(0.05)  # a slow load: callers arriving meanwhile wait for it
        loads.append(ScriptedGenerator())
        return loads[-1]

    gate = ModelGate(queue_size=4, timeout_s=5)
    model = SharedModel(gate, load)
    assert not model.loaded and not model.busy
    preload = threading.Thread(target=model.load)  # the server's preload
    preload.start()
    with model.hold() as generator:
        assert model.busy and gate.busy
    preload.join(5)
    assert len(loads) == 1 and generator is loads[0] and model.load() is generator
    assert model.loaded and not model.busy


def test_a_failed_load_is_tried_again_by_the_next_caller() -> None:
    attempts: list[int] = []

    def load() -> ScriptedGenerator:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("model file busy")
        return ScriptedGenerator()

    model = SharedModel(ModelGate(queue_size=0, timeout_s=1), load)
    with pytest.raises(RuntimeError):
        model.load()
    assert not model.loaded
    with model.hold():
        pass
    assert model.loaded and len(attempts) == 2 and not model.busy
