"""Files an admin uploads: taken only from the web server's upload folder, checked (type,
size, name) and stored under <data>/uploads."""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from appliance.domain import FailedFile

UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._ -]+")
MAX_NAME_CHARS = 120


@dataclass
class UploadResult:
    saved: list[Path] = field(default_factory=list)
    refused: list[FailedFile] = field(default_factory=list)


def safe_file_name(name: str) -> str:
    """A plain file name: no folders, no hidden files, no odd characters."""
    base = UNSAFE_CHARS.sub("_", Path(name.replace("\\", "/")).name).strip(" .")
    stem, dot, suffix = base.rpartition(".")
    if dot and len(base) > MAX_NAME_CHARS:
        base = f"{stem[: MAX_NAME_CHARS - len(suffix) - 1]}.{suffix}"
    return base[:MAX_NAME_CHARS] or "upload"


def received_files(paths: Sequence[str], upload_root: Path) -> tuple[list[Path], list[str]]:
    """The files really uploaded (inside `upload_root`), and the names of the others.

    An upload's path is sent by the client: only a file inside the upload folder, symbolic
    links resolved, is taken. Anything else on the server is refused, audit exports included
    (they are written to <data>/audit-exports, outside the upload folder, and served only
    to auditors by their own route), as are documents already stored in <data>/uploads.
    """
    root = upload_root.resolve()
    received: list[Path] = []
    foreign: list[str] = []
    for raw in paths:
        path = Path(raw).resolve()
        if path.is_relative_to(root):
            received.append(path)
        else:
            foreign.append(Path(raw).name)
    return received, foreign


def save_uploads(
    files: Sequence[Path], target: Path, extensions: Sequence[str], max_bytes: int
) -> UploadResult:
    result = UploadResult()
    target.mkdir(parents=True, exist_ok=True)
    for path in files:
        name = safe_file_name(path.name)
        suffix = Path(name).suffix.lower()
        size = path.stat().st_size if path.is_file() else -1
        if suffix not in extensions:
            allowed = ", ".join(extensions)
            reason = f"file type '{suffix or 'none'}' is not accepted (allowed: {allowed})"
        elif size < 0:
            reason = "the upload did not arrive: try again"
        elif size == 0:
            reason = "the file is empty"
        elif size > max_bytes:
            reason = f"the file is larger than the limit of {max_bytes / 1_000_000:.0f} MB"
        else:
            destination = target / name
            partial = target / f".{name}.part"
            shutil.copyfile(path, partial)
            partial.replace(destination)
            result.saved.append(destination)
            continue
        result.refused.append(FailedFile(path.name, reason))
    return result
