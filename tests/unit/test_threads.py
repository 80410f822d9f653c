"""The thread plan: llama.cpp and ingestion's embedder share the cores of one process."""

import threading
import time
from collections.abc import Sequence

import pytest
import torch

from appliance.embedding import PacedEmbedder
from appliance.threads import ThreadPlan, default_ingest_threads, llm_threads_for


@pytest.mark.parametrize(
    ("cores", "idle", "ingesting", "embedder", "kept", "expected"),
    [
        (2, 2.0, False, 0, 0, 2),  # nothing else runs: every core
        (2, 1.0, False, 0, 0, 1),  # another process busy on one core, no ingestion here
        (2, 0.0, True, 2, 0, 2),  # our embedder holds both cores but pauses: both to answer
        (2, 0.0, True, 1, 0, 1),  # it held one core; the other is someone else's
        (2, None, True, 2, 0, 1),  # idle unknown: one core left free, as without ingestion
        (8, 0.0, True, 8, 2, 6),  # the embedder keeps 2 of its 8: the answer gets the other 6
        (8, 8.0, False, 0, 2, 8),  # no ingestion: the plan reserves nothing
        (8, 8.0, True, 0, 2, 6),  # ingestion waits for the parser: its 2 stay reserved
        (8, 1.0, True, 2, 2, 1),  # the embedder keeps its 2, others use 5: one thread
        (4, 0.0, True, 4, 9, 1),  # a share beyond the cores still leaves the answer one
    ],
)
def test_llm_threads_given_busy_embedder_threads(
    cores: int, idle: float | None, ingesting: bool, embedder: int, kept: int, expected: int
) -> None:
    threads = llm_threads_for(
        cores, idle, ingesting=ingesting, embedder_threads=embedder, ingest_threads=kept
    )
    assert threads == expected


def test_default_share_leaves_small_machines_to_the_answer() -> None:
    assert [default_ingest_threads(c) for c in (1, 2, 3, 4, 8, 16)] == [0, 0, 0, 1, 2, 4]
    assert ThreadPlan(2).ingest_threads == 0
    assert ThreadPlan(2, ingest_threads=5).ingest_threads == 1  # never every core


class RecordingEmbedder:
    """Records the torch threads of the thread that embeds each batch."""

    name = "recording"
    dimension = 1
    batch_size = 2

    def __init__(self) -> None:
        self.threads: list[int] = []
        self.batches: list[list[str]] = []

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.threads.append(torch.get_num_threads())
        self.batches.append(list(texts))
        time.sleep(0.05)
        return [[float(len(t))] for t in texts]


def test_paced_embedder_keeps_order_and_every_core_without_answers() -> None:
    inner = RecordingEmbedder()
    plan = ThreadPlan(4, ingest_threads=1)
    texts = ["a", "ccc", "bb", "dddd", "e"]
    assert PacedEmbedder(inner, plan).embed(texts) == [[1.0], [3.0], [2.0], [4.0], [1.0]]
    assert inner.batches == [["dddd", "ccc"], ["bb", "a"], ["e"]]  # longest first
    assert inner.threads == [4, 4, 4]
    assert plan.embedder_threads == 0  # done: nothing held


def test_ingestion_keeps_its_share_while_an_answer_streams() -> None:
    inner = RecordingEmbedder()
    plan = ThreadPlan(4, ingest_threads=1)
    with plan.ingesting(), plan.answer():
        assert plan.llm_threads(idle=4.0) == 3
        PacedEmbedder(inner, plan).embed(["x"] * 4)
    assert inner.threads == [1, 1]


def test_ingestion_waits_for_the_answer_when_its_share_is_none() -> None:
    inner = RecordingEmbedder()
    plan = ThreadPlan(2)
    embedded: list[float] = []
    with plan.answer():
        worker = threading.Thread(
            target=lambda: embedded.extend(r[0] for r in PacedEmbedder(inner, plan).embed(["x"]))
        )
        worker.start()
        time.sleep(0.3)
        assert inner.batches == []  # waiting: the answer has both cores
        assert plan.llm_threads(idle=2.0) == 2
        answer_done = time.monotonic()
    worker.join(timeout=5)
    assert embedded == [1.0] and inner.threads == [2]  # then every core again
    assert time.monotonic() - answer_done < 1.0  # woken by the answer's end, not a timer
