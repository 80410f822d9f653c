"""The data directory is private: files 0600 in a 0700 directory, whatever the umask.

Every entry point (each CLI command, `appliance serve`) calls `private_umask()` first, so
whatever the process creates (SQLite databases and their WAL, uploads, the manifest, Qdrant's
files, Gradio's temporary files) is its owner's only; `private_dir()` then tightens a data
directory that an earlier run or an operator left readable by others.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

PRIVATE_UMASK = 0o077
PRIVATE_DIR_MODE = 0o700


def private_umask() -> int:
    """Set the process umask so new files are 0600 and new folders 0700; the old umask."""
    return os.umask(PRIVATE_UMASK)


def private_dir(path: Path) -> None:
    """Make an existing folder 0700 and warn that it was open to others; a missing one is
    left to be created later (under `private_umask()` it is 0700 then).

    A folder this process may not chmod (someone else's, a read-only mount) is left as it is,
    with the same warning: the command still runs.
    """
    try:
        found = path.stat().st_mode
    except FileNotFoundError:
        return
    mode = stat.S_IMODE(found)
    if not stat.S_ISDIR(found) or not mode & 0o077:
        return
    try:
        path.chmod(PRIVATE_DIR_MODE)
    except OSError as exc:
        log.warning(
            "event=data_dir_not_private path=%s mode=%o fixed=false error=%s",
            path,
            mode,
            exc.strerror or exc,
        )
        return
    log.warning("event=data_dir_not_private path=%s mode=%o fixed=true new_mode=700", path, mode)
