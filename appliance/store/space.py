"""Free space for the embedded store, checked before it is opened.

Qdrant Edge maps sparse files (32 MB WAL segments, payload pages and vector chunks; about
160 MB apparent for a new store). A write to a mapped page that the volume cannot back kills
the process with SIGBUS ("Bus error"), so the space the store may still fill is checked first.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from appliance.errors import StoreSpaceError

MB = 1024 * 1024  # du and df count in these
# Apparent size of a new store's files (measured: 128 MB empty, 160 MB once written to).
NEW_STORE_BYTES = 160 * MB
# Room to grow beyond the files that exist: a new WAL segment and a new payload page.
GROWTH_BYTES = 64 * MB


def free_bytes(path: Path) -> int:
    """Free space on the volume holding `path` (its nearest existing parent)."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def unbacked_bytes(folder: Path) -> int:
    """What the files under `folder` may still need: apparent size beyond their written blocks."""
    total = 0
    for item in folder.rglob("*"):
        try:
            stat = item.lstat()
        except OSError:
            continue
        if item.is_file() and not item.is_symlink():
            total += max(0, stat.st_size - stat.st_blocks * 512)
    return total


def required_bytes(shard_dir: Path) -> int:
    if shard_dir.is_dir() and any(shard_dir.iterdir()):
        return unbacked_bytes(shard_dir) + GROWTH_BYTES
    return NEW_STORE_BYTES + GROWTH_BYTES


def check_space(shard_dir: Path) -> None:
    """Refuse to open a store whose mapped files the volume could not hold."""
    needed = required_bytes(shard_dir)
    free = free_bytes(shard_dir)
    if free < needed:
        raise StoreSpaceError(
            f"the volume holding {shard_dir} has {free / MB:.0f} MB free, but the embedded "
            f"store maps sparse files that need up to {needed / MB:.0f} MB more as they are "
            "written (opening it anyway ends in 'Bus error'). Free space there, or point "
            "APPLIANCE_DATA_DIR (or APPLIANCE_QDRANT_PATH) at a larger volume: see "
            "'Data folder sizing' in the README."
        )
