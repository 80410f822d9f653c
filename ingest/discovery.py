"""Expand the PATH arguments of `ingest` into the files to consider.

What cannot be considered is reported with its reason rather than dropped in silence: a file
or folder name that is not valid UTF-8 (it cannot be stored in the manifest, the vector store's
payloads or a JSON report), a symbolic link loop, a folder that cannot be read, a symbolic link
that leads out of the folder.

Symbolic links in a folder never publish what lies outside it: whoever can put a link in the
documents folder could otherwise have any file the appliance can read (its own keys, say)
indexed, answered from and served to users. So, inside an ingested folder:
- a link to a file or folder outside the folder is skipped and reported;
- a link to a file inside the folder is followed, and the file is ingested once, under its
  real path: the same bytes under two names would be two documents (duplicate passages and
  citations), and a path that is a link can be re-pointed between runs;
- a link to a folder inside the folder is not descended: the walk reaches that folder under
  its real path anyway (unless it is hidden), and not descending rules out link cycles.
A path named explicitly (on the command line, APPLIANCE_DOCS_DIR) may itself be a link: the
administrator chose it, so it is followed, and its real path is ingested (for a folder: the
real folder is the boundary its links are checked against).
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
LINK_OUT_FILE = (
    "skipped: symbolic link to a file outside the folder: {target} (links out of an ingested "
    "folder are not followed: copy the file into the folder, or ingest it by naming it)"
)
LINK_OUT_FOLDER = (
    "skipped: symbolic link to a folder outside the folder: {target} (links out of an ingested "
    "folder are not followed: copy the folder into it, or ingest it by naming it)"
)


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

    # `root` is a real path and links are not descended, so every `folder` is a real path.
    for folder, subfolders, names in os.walk(root, onerror=unreadable):
        kept = []
        for name in sorted(subfolders):  # links to folders included
            if is_ignored(name):
                continue
            path = Path(folder, name)
            if not is_valid_utf8(name):
                found.skipped.append(FailedFile(display_path(path), BAD_FOLDER_NAME))
            elif not path.is_symlink():
                kept.append(name)
            elif not (target := Path(os.path.realpath(path))).is_relative_to(root):
                reason = LINK_OUT_FOLDER.format(target=display_path(target))
                found.skipped.append(FailedFile(display_path(path), reason))
        subfolders[:] = kept
        for name in sorted(names):
            if is_ignored(name):
                continue
            path = Path(folder, name)
            real, reason = _file_to_ingest(path, root)
            if real is not None:
                _add(found, seen, real)
            elif reason:
                found.skipped.append(FailedFile(display_path(path), reason))


def _file_to_ingest(path: Path, root: Path) -> tuple[Path | None, str]:
    """The real path of a regular file to ingest, or None and a reason to report, or None and
    "" to pass over in silence (a file that vanished meanwhile, a dangling link, a socket or
    other special file)."""
    if not is_valid_utf8(path):
        return None, BAD_FILE_NAME
    real = Path(os.path.realpath(path)) if path.is_symlink() else path
    try:
        mode = os.stat(real).st_mode
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None, LINK_LOOP
        if exc.errno == errno.ENOENT:
            return None, ""
        return None, f"cannot read ({exc.strerror}): check its permissions"
    if not stat.S_ISREG(mode):
        return None, ""
    if not real.is_relative_to(root):
        return None, LINK_OUT_FILE.format(target=display_path(real))
    return real, ""


def is_under(source: str, folder: Path) -> bool:
    return Path(source).is_relative_to(folder)
