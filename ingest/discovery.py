"""Expand the PATH arguments of `ingest` into the files to consider."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from appliance.domain import FailedFile


@dataclass
class Discovery:
    files: list[Path] = field(default_factory=list)
    folders: list[Path] = field(default_factory=list)
    missing: list[FailedFile] = field(default_factory=list)


def is_ignored(name: str) -> bool:
    # Hidden files and the lock files office suites leave next to an open document.
    return name.startswith(".") or name.startswith("~$")


def discover(paths: list[Path]) -> Discovery:
    found = Discovery()
    seen: set[Path] = set()

    def add(path: Path) -> None:
        if path not in seen:
            seen.add(path)
            found.files.append(path)

    for given in paths:
        path = given.expanduser().resolve()
        if path.is_file():
            add(path)
        elif path.is_dir():
            found.folders.append(path)
            for folder, subfolders, names in os.walk(path):
                subfolders[:] = sorted(d for d in subfolders if not is_ignored(d))
                for name in sorted(names):
                    if not is_ignored(name) and (Path(folder) / name).is_file():
                        add(Path(folder) / name)
        else:
            found.missing.append(FailedFile(str(given), "no such file or folder"))
    return found


def is_under(source: str, folder: Path) -> bool:
    return Path(source).is_relative_to(folder)
