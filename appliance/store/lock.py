"""One process owns an embedded store; others get a message that says what to do.

`flock` is released by the kernel when the owner dies, even by `kill -9`, so a crash never
leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from appliance.errors import StoreLockedError


class OwnerLock:
    def __init__(self, path: Path, what: str | None = None) -> None:
        self._path = path
        self._what = what or f"the embedded store {path.parent}"
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        handle = self._path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "unknown"
            handle.close()
            raise StoreLockedError(
                f"{self._what} is in use by another appliance "
                f"process (pid {owner}). Wait for it to finish, or stop it (a running server "
                "ingests the documents folder itself) and try again."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None
