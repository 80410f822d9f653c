"""Keep the index in step with the documents folder while the server runs.

Each batch of changes re-ingests the whole folder: the pipeline skips unchanged files and
removes vanished ones, so this is both correct and cheap. The watch is set up before the
catch-up run, so a change made during any run is seen by the next one. A folder that goes
missing (an unmounted share, say) leaves the index as it was until the folder is back.

The file watcher cannot follow a folder holding a name that is not valid UTF-8; while one is
there, the folder is scanned for changes instead (and the run reports the name).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import watchfiles

from appliance.errors import ApplianceError
from ingest.discovery import display_path, is_ignored, is_valid_utf8
from ingest.service import IndexService, IngestCancelled, IngestJob

log = logging.getLogger(__name__)

# How often a missing folder is looked for again.
POLL_S = 3.0
# How often the watch wakes up without changes, to notice the folder itself going away.
WAKE_MS = 2_000
# How often a folder the file watcher cannot follow is scanned for changes.
RESCAN_S = 5.0
# Files that editors, browsers and office suites write while saving or downloading.
TEMPORARY_SUFFIXES = (".tmp", ".temp", ".part", ".partial", ".crdownload", ".swp", "~")


def watch_filter(folder: Path) -> Callable[[watchfiles.Change, str], bool]:
    """Changes worth a run: not in hidden folders, not hidden or temporary files."""

    def relevant(change: watchfiles.Change, path: str) -> bool:
        try:
            parts = Path(path).relative_to(folder).parts
        except ValueError:
            return True
        if not parts:  # the folder itself
            return True
        return not any(is_ignored(part) for part in parts) and not parts[-1].lower().endswith(
            TEMPORARY_SUFFIXES
        )

    return relevant


def _is_temporary(name: str) -> bool:
    return is_ignored(name) or name.lower().endswith(TEMPORARY_SUFFIXES)


def scan(folder: Path) -> tuple[frozenset[tuple[str, int, int]], str | None]:
    """The files worth a run, with size and modification time, and the first name found in
    the folder (hidden ones included) that is not valid UTF-8, escaped, or None."""
    files: set[tuple[str, int, int]] = set()
    bad_name: str | None = None
    for parent, subfolders, names in os.walk(folder):
        subfolders.sort()
        for name in sorted([*subfolders, *names]):
            if bad_name is None and not is_valid_utf8(name):
                bad_name = display_path(os.path.join(parent, name))
        relative = Path(parent).relative_to(folder).parts
        if any(is_ignored(part) for part in relative):
            continue
        for name in names:
            if not _is_temporary(name):
                try:
                    stat = os.stat(os.path.join(parent, name))
                except OSError:
                    continue
                files.add((os.path.join(parent, name), stat.st_size, stat.st_mtime_ns))
    return frozenset(files), bad_name


def _identity(folder: Path) -> tuple[int, int] | None:
    try:
        stat = folder.stat()
    except OSError:
        return None
    return (stat.st_dev, stat.st_ino) if folder.is_dir() else None


class FolderWatcher:
    """Keeps the index in step with a folder while the server runs."""

    def __init__(
        self, folder: Path, acl: Sequence[str], service: IndexService, debounce_s: float = 1.0
    ) -> None:
        self._folder = folder.expanduser().resolve()
        self._acl = list(acl)
        self._service = service
        self._debounce_ms = max(1, int(debounce_s * 1000))
        self._label = f"folder: {self._folder}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._runs = 0
        self._last_error: str | None = None

    @property
    def runs(self) -> int:
        """Ingestion runs that completed (a failed run is not counted: see last_error)."""
        return self._runs

    @property
    def last_error(self) -> str | None:
        """Why the last run failed, or why the folder cannot be watched; None after a success."""
        return self._last_error

    def start(self) -> None:
        """Catch up with the folder, then follow its changes, in a daemon thread."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="folder-watcher", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10) -> None:
        """Stop watching; a running ingestion stops at its next step."""
        self._stop.set()
        if self._thread is None:
            return
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            log.warning("event=watch_stop_timeout folder=%s seconds=%s", self._folder, timeout_s)

    def _loop(self) -> None:
        log.info("event=watch_started folder=%s", self._folder)
        while not self._stop.is_set():
            try:
                if self._folder_present():
                    self._watch()
            except Exception as exc:  # the thread outlives any failure and tries again
                self._record(f"watching stopped unexpectedly ({type(exc).__name__}: {exc})", exc)
            self._stop.wait(POLL_S)
        log.info("event=watch_stopped folder=%s runs=%d", self._folder, self._runs)

    def _folder_present(self) -> bool:
        if _identity(self._folder) is not None:
            return True
        self._record(
            f"the watched folder {self._folder} does not exist or is not a folder "
            "(APPLIANCE_DOCS_DIR); waiting for it to appear"
        )
        return False

    def _watch(self) -> None:
        """Runs once the watch is set up, then after each batch; returns if the folder goes."""
        identity = _identity(self._folder)
        batches = watchfiles.watch(
            self._folder,
            watch_filter=watch_filter(self._folder),
            debounce=self._debounce_ms,
            stop_event=self._stop,
            rust_timeout=WAKE_MS,
            yield_on_timeout=True,
            raise_interrupt=False,
            recursive=True,
        )
        caught_up = False
        try:
            for changes in batches:
                if identity is None or _identity(self._folder) != identity:
                    # Removed or replaced: this watch sees no more; catch up when it is back.
                    self._folder_present()
                    return
                if changes or not caught_up:
                    caught_up = True
                    self._ingest()
        except Exception:
            # The watcher fails on any name it cannot decode, at set-up (a folder) or at a
            # change (a file): scan instead while there is one.
            bad_name = scan(self._folder)[1]
            if bad_name is None:
                raise
            self._rescan(identity, bad_name)
        finally:
            batches.close()

    def _rescan(self, identity: tuple[int, int] | None, bad_name: str) -> None:
        """Follow the folder by scanning it, until no name in it is invalid UTF-8."""
        log.warning(
            "event=watch_scanning folder=%s name=%s reason=the file watcher cannot follow a "
            "name that is not valid UTF-8; changes are found by scanning every %gs until it "
            "is renamed",
            self._folder,
            bad_name,
            RESCAN_S,
        )
        last: frozenset[tuple[str, int, int]] | None = None
        while not self._stop.is_set():
            if _identity(self._folder) != identity:
                self._folder_present()
                return
            files, bad_name_left = scan(self._folder)
            if bad_name_left is None:
                log.info("event=watch_resumed folder=%s", self._folder)
                return  # the watch again; its first run catches up
            if files != last:
                last = files
                self._ingest()
            self._stop.wait(RESCAN_S)

    def _ingest(self) -> None:
        try:
            report = self._service.ingest(
                [self._folder], self._acl, label=self._label, on_progress=self._check_stop
            )
        except IngestCancelled as exc:
            if not self._stop.is_set():
                self._record(str(exc))
            return
        except ApplianceError as exc:
            self._record(str(exc))
            return
        self._runs += 1
        self._last_error = None
        log.log(
            logging.WARNING if report.failed else logging.INFO,
            "event=folder_ingested folder=%s new=%d changed=%d deleted=%d failed=%d seconds=%.1f",
            self._folder,
            report.new,
            report.changed,
            report.deleted,
            len(report.failed),
            report.seconds,
        )

    def _check_stop(self, job: IngestJob) -> None:
        if self._stop.is_set():
            raise IngestCancelled("ingestion stopped: the folder watcher is stopping")

    def _record(self, error: str, exc: Exception | None = None) -> None:
        if error != self._last_error:  # a folder that stays missing is logged once
            log.warning("event=watch_error folder=%s error=%s", self._folder, error, exc_info=exc)
        self._last_error = error
