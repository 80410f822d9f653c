"""The in-process index service: one write at a time, progress, errors, a reused parser."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from appliance.errors import ApplianceError, StoreError
from appliance.manifest import Manifest
from appliance.store.edge import EdgeStore
from ingest.chunking import ChunkConfig
from ingest.service import IndexService, IngestCancelled, IngestJob
from tests.support.fakes import BagOfWordsEmbedder, InlineParser

WAIT_S = 60


class ClosableInlineParser(InlineParser):
    def close(self) -> None:
        pass


class ScriptedEmbedder(BagOfWordsEmbedder):
    """Records which thread embedded what; can hold the first call, or fail once."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, list[str]]] = []
        self.hold = False
        self.entered = threading.Event()
        self.release = threading.Event()
        self.fail_next: Exception | None = None

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls.append((threading.current_thread().name, list(texts)))
        if self.hold:
            self.hold = False
            self.entered.set()
            assert self.release.wait(WAIT_S)
        if self.fail_next is not None:
            failure, self.fail_next = self.fail_next, None
            raise failure
        return super().embed(texts)


class Index:
    def __init__(self, root: Path, embed_model_dir: Path, real_parser: bool) -> None:
        self.embedder = ScriptedEmbedder()
        self.store = EdgeStore.open(root / "qdrant", "docs", self.embedder.dimension, "bow")
        self.manifest = Manifest(root / "manifest.sqlite3")
        config = ChunkConfig(embed_model_dir, 64, 8)
        self.service = IndexService(
            self.store,
            self.embedder,
            self.manifest,
            config,
            parse_timeout_s=60,
            max_file_bytes=10_000_000,
            parser_factory=None if real_parser else (lambda: ClosableInlineParser(config)),
        )

    def snapshot(self) -> tuple[dict[str, tuple[Any, ...]], list[tuple[Any, ...]]]:
        """Every chunk and every manifest row, without ingestion times."""
        points = {
            point_id: (p["doc_id"], p["source"], p["position"], p["text"], tuple(p["acl"]))
            for point_id, p in self.store.iter_payloads()
        }
        rows = [(e.source, e.doc_id, e.size, e.chunks, e.acl) for e in self.manifest.entries()]
        return points, rows

    def close(self) -> None:
        self.service.close()
        self.manifest.close()
        self.store.close()


@pytest.fixture
def open_index(tmp_path: Path, embed_model_dir: Path) -> Iterator[Callable[..., Index]]:
    opened: list[Index] = []

    def make(name: str = "state", real_parser: bool = False) -> Index:
        opened.append(Index(tmp_path / name, embed_model_dir, real_parser))
        return opened[-1]

    yield make
    for index in opened:
        index.close()


def write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    return write(
        tmp_path / "docs",
        {
            "alpha.txt": "Alpha facts. " * 60,
            "bravo.md": "# Bravo\n\nBravo facts.\n",
            "charlie.txt": "Charlie facts.",
        },
    )


def clean_run(
    open_index: Callable[..., Index], runs: list[tuple[Path, list[str]]]
) -> tuple[dict[str, tuple[Any, ...]], list[tuple[Any, ...]]]:
    clean = open_index("clean")
    for path, acl in runs:
        clean.service.ingest([path], acl, label="clean")
    return clean.snapshot()


def test_concurrent_ingests_run_one_after_the_other(
    open_index: Callable[..., Index], tmp_path: Path
) -> None:
    first = write(tmp_path / "first", {"a1.txt": "Apples are red.", "a2.md": "# Pears\n\nGreen."})
    second = write(tmp_path / "second", {"b1.txt": "Boats float.", "b2.txt": "Bikes roll."})
    index = open_index(real_parser=True)
    index.embedder.hold = True
    reports: dict[str, Any] = {}
    second_progress: list[IngestJob] = []

    def run(name: str, folder: Path, acl: list[str], progress: Any = None) -> None:
        reports[name] = index.service.ingest([folder], acl, label=name, on_progress=progress)

    one = threading.Thread(target=run, args=("first", first, ["everyone"]), name="first")
    two = threading.Thread(
        target=run, args=("second", second, ["hr"], second_progress.append), name="second"
    )
    one.start()
    assert index.embedder.entered.wait(WAIT_S)
    two.start()
    time.sleep(0.5)
    # The first run is held inside the embedder: the second waits without starting.
    current = index.service.current
    assert current is not None and current.label == "first"
    assert second_progress == []
    assert {thread for thread, _ in index.embedder.calls} == {"first"}
    index.embedder.release.set()
    one.join(WAIT_S)
    two.join(WAIT_S)

    assert (reports["first"].new, reports["first"].failed) == (2, [])
    assert (reports["second"].new, reports["second"].failed) == (2, [])
    threads = [thread for thread, _ in index.embedder.calls]
    assert threads == sorted(threads)  # every "first" call before any "second" one
    assert index.snapshot() == clean_run(open_index, [(first, ["everyone"]), (second, ["hr"])])


def test_progress_reports_files_as_they_finish_and_the_final_report(
    open_index: Callable[..., Index], docs: Path
) -> None:
    index = open_index()
    seen: list[IngestJob] = []
    running: list[IngestJob | None] = []

    def on_progress(job: IngestJob) -> None:
        seen.append(job)
        running.append(index.service.current)

    report = index.service.ingest(
        [docs], ["everyone"], label="folder: docs", on_progress=on_progress
    )

    done = [job.files_done for job in seen]
    assert done == sorted(done) and done[-1] == 3
    assert all(job.label == "folder: docs" and job.files_total == 3 for job in seen[1:])
    assert all(job is not None and job.finished_at is None for job in running[:-1])
    final = seen[-1]
    assert final.report is report and report.new == 3
    assert final.chunks_done == report.chunks_added > 0
    assert final.finished_at is not None and final.error is None
    assert index.service.last == final
    assert index.service.current is None


def test_forget_removes_documents_and_the_listing_follows(
    open_index: Callable[..., Index], docs: Path
) -> None:
    index = open_index()
    index.service.ingest([docs], ["everyone"], label="docs")
    listed = index.service.documents()
    assert [Path(e.source).name for e in listed] == ["alpha.txt", "bravo.md", "charlie.txt"]
    bravo = listed[1]
    assert index.service.document(bravo.doc_id.upper()) == bravo
    assert index.service.document("0" * 64) is None

    removed = index.service.forget(str(docs / "alpha.txt"))
    assert [Path(e.source).name for e in removed] == ["alpha.txt"]
    assert index.service.forget(bravo.doc_id) == [bravo]
    assert set(index.store.source_counts()) == {str(docs / "charlie.txt")}
    assert [Path(e.source).name for e in index.service.documents()] == ["charlie.txt"]
    assert index.service.forget(str(docs / "alpha.txt")) == []


def test_unexpected_error_is_reported_clearly_and_the_next_run_works(
    open_index: Callable[..., Index], docs: Path
) -> None:
    index = open_index()
    index.embedder.fail_next = RuntimeError("tensor exploded")
    seen: list[IngestJob] = []
    with pytest.raises(StoreError) as raised:
        index.service.ingest([docs], ["everyone"], label="docs", on_progress=seen.append)
    message = str(raised.value)
    assert "RuntimeError: tensor exploded" in message and "next run" in message
    assert isinstance(raised.value.__cause__, RuntimeError)
    last = index.service.last
    assert last is not None and last.error == message and last.report is None
    assert last.finished_at is not None and seen[-1] == last
    assert index.service.current is None

    report = index.service.ingest([docs], ["everyone"], label="docs")
    assert (report.new, report.failed) == (3, [])
    assert index.service.last is not None and index.service.last.error is None
    assert index.snapshot() == clean_run(open_index, [(docs, ["everyone"])])


def test_appliance_errors_propagate_unchanged(open_index: Callable[..., Index], docs: Path) -> None:
    index = open_index()
    index.embedder.fail_next = StoreError("disk full: free some space")
    with pytest.raises(StoreError, match=r"^disk full: free some space$"):
        index.service.ingest([docs], ["everyone"], label="docs")
    assert index.service.last is not None
    assert index.service.last.error == "disk full: free some space"


def test_cancelled_run_leaves_the_parser_usable_and_the_rerun_clean(
    open_index: Callable[..., Index], docs: Path
) -> None:
    # A broken file fails while later files are queued in the parser: cancel right then.
    (docs / "aaa-broken.docx").write_bytes(b"not a docx")
    index = open_index(real_parser=True)

    def cancel_after_first_file(job: IngestJob) -> None:
        if job.files_done == 1:
            raise IngestCancelled("stopped by the admin")

    with pytest.raises(IngestCancelled, match="stopped by the admin"):
        index.service.ingest(
            [docs], ["everyone"], label="docs", on_progress=cancel_after_first_file
        )
    assert index.service.last is not None
    assert index.service.last.error == "stopped by the admin"

    report = index.service.ingest([docs], ["everyone"], label="docs")
    assert report.new == 3
    assert [Path(f.path).name for f in report.failed] == ["aaa-broken.docx"]
    assert index.snapshot() == clean_run(open_index, [(docs, ["everyone"])])


def test_parser_worker_that_died_between_runs_is_restarted(
    open_index: Callable[..., Index], docs: Path
) -> None:
    index = open_index(real_parser=True)
    index.service.ingest([docs], ["everyone"], label="docs")
    workers = [p for p in multiprocessing.active_children() if p.name == "appliance-parser"]
    assert len(workers) == 1  # kept alive between runs
    workers[0].kill()
    workers[0].join()

    (docs / "bravo.md").write_text("# Bravo\n\nNew bravo facts.\n", encoding="utf-8")
    report = index.service.ingest([docs], ["everyone"], label="docs")
    assert (report.changed, report.unchanged, report.failed) == (1, 2, [])

    index.service.close()
    assert not [p for p in multiprocessing.active_children() if p.name == "appliance-parser"]


def test_close_stops_a_running_ingestion_and_later_writes(
    open_index: Callable[..., Index], docs: Path
) -> None:
    index = open_index()
    index.embedder.hold = True
    errors: list[Exception] = []

    def run() -> None:
        try:
            index.service.ingest([docs], ["everyone"], label="docs")
        except Exception as exc:
            errors.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    assert index.embedder.entered.wait(WAIT_S)
    closer = threading.Thread(target=index.service.close)
    closer.start()
    time.sleep(0.2)
    index.embedder.release.set()
    closer.join(WAIT_S)
    worker.join(WAIT_S)
    assert not closer.is_alive() and not worker.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], IngestCancelled)
    with pytest.raises(ApplianceError, match="closed"):
        index.service.ingest([docs], ["everyone"], label="docs")
    with pytest.raises(ApplianceError, match="closed"):
        index.service.forget(str(docs))


def test_watched_folder_with_names_that_are_not_utf8_is_indexed_and_followed(
    open_index: Callable[..., Index], docs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ingest import watch

    monkeypatch.setattr(watch, "POLL_S", 0.2)
    monkeypatch.setattr(watch, "RESCAN_S", 0.2, raising=False)
    folder = os.fsencode(docs)
    os.mkdir(os.path.join(folder, b"dir\xfe"))  # the file watcher cannot even start
    with open(os.path.join(folder, b"bad\xff.txt"), "wb") as bad:
        bad.write(b"Bad name facts.")
    index = open_index()
    watcher = watch.FolderWatcher(docs, ["everyone"], index.service, debounce_s=0.1)

    def indexed() -> set[str]:
        return {Path(e.source).name for e in index.service.documents()}

    def wait_for(condition: Callable[[], bool]) -> None:
        deadline = time.monotonic() + WAIT_S
        while not condition():
            assert time.monotonic() < deadline, (watcher.runs, watcher.last_error)
            time.sleep(0.1)

    watcher.start()
    try:
        # A run's documents are visible a moment before the run is counted: wait for both.
        wait_for(lambda: indexed() == {"alpha.txt", "bravo.md", "charlie.txt"} and watcher.runs > 0)
        last = index.service.last
        assert last is not None and last.report is not None
        assert {Path(f.path).name for f in last.report.failed} == {"bad\\xff.txt", "dir\\xfe"}
        assert watcher.last_error is None

        runs = watcher.runs
        (docs / "delta.txt").write_text("Delta facts.", encoding="utf-8")
        wait_for(lambda: "delta.txt" in indexed() and watcher.runs > runs)
        runs = watcher.runs
        time.sleep(1.5)  # nothing changes: no run retries the bad names
        assert watcher.runs == runs

        os.rmdir(os.path.join(folder, b"dir\xfe"))
        os.remove(os.path.join(folder, b"bad\xff.txt"))
        wait_for(lambda: watcher.runs > runs)  # back to the file watcher, which catches up
        (docs / "echo.txt").write_text("Echo facts.", encoding="utf-8")
        wait_for(lambda: "echo.txt" in indexed())
    finally:
        watcher.stop()
