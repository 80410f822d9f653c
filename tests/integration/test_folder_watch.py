"""The watched documents folder, with the real parts: MiniLM, Qdrant Edge, the parser process.

Files added, changed and deleted while the server runs reach the index within seconds, and
questions keep being answered from the same store while the watcher ingests.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from appliance.domain import RetrievedPassage
from appliance.embedding import Embedder
from appliance.manifest import Manifest
from appliance.services import build_embedder
from appliance.settings import load_settings
from appliance.store.edge import EdgeStore
from ingest.chunking import ChunkConfig
from ingest.service import IndexService
from ingest.watch import FolderWatcher

pytestmark = pytest.mark.integration

WAIT_S = 60
GROUPS = ["everyone"]


@dataclass
class Searcher:
    """Asks questions in a loop from its own thread, as the web server's users would."""

    embedder: Embedder
    store: EdgeStore
    service: IndexService
    searches: int = 0
    while_ingesting: int = 0
    errors: list[BaseException] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="searcher", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        questions = ["Which reactor uses heavy water?", "When does the ferry leave?"]
        while not self._stop.is_set():
            try:
                ingesting = self.service.current is not None
                vector = self.embedder.embed([questions[self.searches % 2]])[0]
                passages = self.store.search(vector, GROUPS, 5)
                self.service.documents()
                self.searches += 1
                if ingesting and passages:
                    self.while_ingesting += 1
            except BaseException as exc:
                self.errors.append(exc)
            time.sleep(0.01)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)


@dataclass
class Served:
    folder: Path
    embedder: Embedder
    store: EdgeStore
    service: IndexService
    watcher: FolderWatcher
    searcher: Searcher

    def search(self, question: str) -> list[RetrievedPassage]:
        return self.store.search(self.embedder.embed([question])[0], GROUPS, 5)

    def wait_for(self, what: str, condition: Callable[[], bool]) -> float:
        started = time.monotonic()
        while time.monotonic() - started < WAIT_S:
            if condition():
                return time.monotonic() - started
            time.sleep(0.2)
        pytest.fail(
            f"{what}: not reflected within {WAIT_S} s "
            f"(watcher runs={self.watcher.runs}, last_error={self.watcher.last_error})"
        )


def found(passages: list[RetrievedPassage], path: Path, words: str) -> bool:
    return any(p.source == str(path) and words in p.text for p in passages)


@pytest.fixture
def served(tmp_path: Path, embed_model_dir: Path) -> Iterator[Served]:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "reactor.md").write_text(
        "# Reactor\n\nThe research reactor is cooled with heavy water.\n", encoding="utf-8"
    )
    embedder = build_embedder(load_settings(data_dir=tmp_path / "data", embed_device="cpu"))
    store = EdgeStore.open(
        tmp_path / "data" / "qdrant", "documents", embedder.dimension, embedder.name
    )
    manifest = Manifest(tmp_path / "data" / "manifest.sqlite3")
    service = IndexService(
        store,
        embedder,
        manifest,
        ChunkConfig(embed_model_dir, 128, 16),
        parse_timeout_s=120,
        max_file_bytes=10_000_000,
    )
    watcher = FolderWatcher(folder, GROUPS, service, debounce_s=0.3)
    searcher = Searcher(embedder, store, service)
    try:
        yield Served(folder, embedder, store, service, watcher, searcher)
    finally:
        watcher.stop()
        searcher.stop()
        service.close()
        manifest.close()
        store.close()


def test_folder_changes_reach_the_index_while_questions_are_answered(served: Served) -> None:
    folder, watcher = served.folder, served.watcher
    reactor, ferry = folder / "reactor.md", folder / "ferry.md"
    watcher.start()
    served.searcher.start()

    # Catch-up: what was in the folder before the server started.
    served.wait_for(
        "the file present at start",
        lambda: found(served.search("Which reactor uses heavy water?"), reactor, "heavy water"),
    )

    # Added: a longer file, so that the searcher overlaps its ingestion.
    timetable = "".join(
        f"On day {day} the ferry to the island leaves at {7 + day % 5}:30 from pier {day % 3}. "
        for day in range(1, 120)
    )
    ferry.write_text(f"# Ferry\n\n{timetable}\n", encoding="utf-8")
    served.wait_for(
        "the added file",
        lambda: found(served.search("When does the ferry leave?"), ferry, "ferry to the island"),
    )

    # Changed: the new text replaces the old one.
    reactor.write_text(
        "# Reactor\n\nThe research reactor is now cooled with liquid sodium.\n", encoding="utf-8"
    )
    served.wait_for(
        "the changed file",
        lambda: (
            found(served.search("How is the reactor cooled?"), reactor, "liquid sodium")
            and not any("heavy water" in p.text for p in served.search("heavy water reactor"))
        ),
    )

    # Deleted: its chunks and its manifest row go.
    ferry.unlink()
    served.wait_for(
        "the deleted file",
        lambda: (
            str(ferry) not in served.store.source_counts()
            and all(p.source != str(ferry) for p in served.search("When does the ferry leave?"))
            and [Path(e.source).name for e in served.service.documents()] == ["reactor.md"]
        ),
    )

    # Hidden and temporary files start no run; nothing of them is indexed.
    served.wait_for("the end of the run", lambda: served.service.current is None)
    time.sleep(1.5)
    runs = watcher.runs
    (folder / ".notes.md").write_text("# Hidden\n\nSecret plans.\n", encoding="utf-8")
    (folder / "draft.md.tmp").write_text("half-written", encoding="utf-8")
    time.sleep(3)
    assert watcher.runs == runs
    assert set(served.store.source_counts()) == {str(reactor)}

    served.searcher.stop()
    assert served.searcher.errors == []
    assert served.searcher.while_ingesting > 0
    assert watcher.last_error is None


def test_missing_folder_is_reported_and_watched_for(served: Served) -> None:
    folder = served.folder
    (folder / "reactor.md").unlink()
    folder.rmdir()
    served.watcher.start()
    served.wait_for("the missing folder", lambda: served.watcher.last_error is not None)
    assert "does not exist" in (served.watcher.last_error or "")
    assert served.watcher.runs == 0

    folder.mkdir()
    (folder / "bus.md").write_text("# Bus\n\nThe night bus stops at the harbour.\n", "utf-8")
    served.wait_for(
        "the folder that appeared",
        lambda: found(served.search("Where does the night bus stop?"), folder / "bus.md", "bus"),
    )
    served.wait_for("the cleared error", lambda: served.watcher.last_error is None)


def test_links_out_of_the_watched_folder_are_never_indexed(served: Served, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "salaries.md").write_text("# Pay\n\nThe director earns 412,000.\n", "utf-8")
    folder = served.folder
    served.watcher.start()
    served.wait_for("the catch-up run", lambda: served.watcher.runs >= 1)

    (folder / "salaries.md").symlink_to(outside / "salaries.md")
    (folder / "hr").symlink_to(outside, target_is_directory=True)
    (folder / "canteen.md").write_text("# Canteen\n\nThe canteen opens at noon.\n", "utf-8")

    def skipped() -> set[str]:
        last = served.service.last
        report = last.report if last is not None else None
        failed = report.failed if report is not None else []
        return {Path(f.path).name for f in failed if "outside the folder" in f.error}

    served.wait_for(
        "the added file, with the links skipped",
        lambda: (
            str(folder / "canteen.md") in served.store.source_counts()
            and skipped() == {"salaries.md", "hr"}
        ),
    )
    assert set(served.store.source_counts()) == {
        str(folder / "reactor.md"),
        str(folder / "canteen.md"),
    }
    assert not any("412,000" in p.text for p in served.search("What does the director earn?"))
