"""Expand the PATH arguments of `ingest` into the files to consider.

What cannot be considered is reported with its reason rather than dropped in silence: a file
or folder name that is not valid UTF-8 (it cannot be stored in the manifest, the vector store's
payloads or a JSON report), a symbolic link loop, a folder that cannot be read.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from appliance.domain import FailedFile

BAD_FILE_NAME = "file name is not valid UTF-8: rename it and ingest it again"
BAD_FOLDER_NAME = (
    "folder name is not valid UTF-8, so nothing in it was ingested: rename it and ingest again"
)
BAD_PATH = "path is not valid UTF-8: rename it and ingest it again"
LINK_LOOP = "skipped: symbolic link loop (the link leads back to itself): fix or remove the link"


@dataclass
class Discovery:
    files: list[Path] = field(default_factory=list)
    folders: list[Path] = field(default_factory=list)
    missing: list[FailedFile] = field(default_factory=list)
    # Found but not ingested: bad names, link loops, unreadable folders.
    skipped: list[FailedFile] = field(default_factory=list)


def is_ignored(name: str) -> bool:
    # Hidden files and the lock files office suites leave next to an open document.
    return name.startswith(".") or name.startswith("~$")


def display_path(path: Path | str) -> str:
    """The path as printable text: bytes that are not UTF-8 shown escaped (e.g. `bad\\xff.txt`).

    Paths with such bytes reach Python as strings holding lone surrogates, which UTF-8 writers
    (SQLite, JSON, logs, the terminal) refuse.
    """
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def is_valid_utf8(path: Path | str) -> bool:
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def discover(paths: list[Path]) -> Discovery:
    found = Discovery()
    seen: set[Path] = set()
    for given in paths:
        if not is_valid_utf8(given):
            found.skipped.append(FailedFile(display_path(given), BAD_PATH))
            continue
        try:
            path = given.expanduser().resolve()
        except (OSError, RuntimeError):  # RuntimeError: a symbolic link loop
            found.skipped.append(FailedFile(str(given), LINK_LOOP))
            continue
        if path.is_file():
            _add(found, seen, path)
        elif path.is_dir():
            found.folders.append(path)
            _walk(found, seen, path)
        else:
            found.missing.append(FailedFile(str(given), "no such file or folder"))
    return found


def _add(found: Discovery, seen: set[Path], path: Path) -> None:
    if path not in seen:
        seen.add(path)
        found.files.append(path)


def _walk(found: Discovery, seen: set[Path], root: Path) -> None:
    def unreadable(error: OSError) -> None:
        where = display_path(error.filename) if error.filename is not None else display_path(root)
        found.skipped.append(
            FailedFile(where, f"cannot read the folder ({error.strerror}): check its permissions")
        )

    for folder, subfolders, names in os.walk(root, onerror=unreadable):
        kept = []
        for name in sorted(subfolders):
            if is_ignored(name):
                continue
            if is_valid_utf8(name):
                kept.append(name)
            else:
                found.skipped.append(FailedFile(display_path(Path(folder, name)), BAD_FOLDER_NAME))
        subfolders[:] = kept
        for name in sorted(names):
            if is_ignored(name):
                continue
            path = Path(folder, name)
            reason = _file_problem(path)
            if reason is None:
                _add(found, seen, path)
            elif reason:
                found.skipped.append(FailedFile(display_path(path), reason))


def _file_problem(path: Path) -> str | None:
    """None for a regular file to ingest, a reason to report, or "" to pass over in silence
    (a file that vanished meanwhile, a dangling link, a socket or other special file)."""
    if not is_valid_utf8(path):
        return BAD_FILE_NAME
    try:
        mode = os.stat(path).st_mode  # follows links
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return LINK_LOOP
        if exc.errno == errno.ENOENT:
            return ""
        return f"cannot read ({exc.strerror}): check its permissions"
    return None if stat.S_ISREG(mode) else ""


def is_under(source: str, folder: Path) -> bool:
    return Path(source).is_relative_to(folder)
