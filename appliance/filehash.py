"""sha256 of large model files, remembered by path, size and modification time."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20


def hash_cache_path(models_dir: Path) -> Path:
    """Where the sha256 of the model files in models_dir are remembered."""
    return models_dir / ".sha256-cache.json"


def sha256_of_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(CHUNK_BYTES):
            digest.update(block)
    return digest.hexdigest()


def cached_sha256(path: Path, cache_file: Path) -> str:
    """The file's sha256, computed once per version of the file and kept in `cache_file`.

    A multi-gigabyte GGUF takes many seconds to hash; the cache keeps start-up fast while a
    replaced or rewritten file (new inode, size, mtime or ctime) is hashed again.
    """
    resolved = path.resolve()
    stat = resolved.stat()
    # ctime and inode change on any rewrite or replacement, even when mtime is forged.
    key = f"{resolved}|{stat.st_size}|{stat.st_mtime_ns}|{stat.st_ctime_ns}|{stat.st_ino}"
    cache = _read_cache(cache_file)
    if key in cache:
        return cache[key]
    value = sha256_of_file(resolved)
    cache = {k: v for k, v in cache.items() if not k.startswith(f"{resolved}|")}
    cache[key] = value
    _write_cache(cache_file, cache)
    return value


def _read_cache(cache_file: Path) -> dict[str, str]:
    try:
        data = json.loads(cache_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _write_cache(cache_file: Path, cache: dict[str, str]) -> None:
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        temporary = cache_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(cache, indent=1), encoding="utf-8")
        os.replace(temporary, cache_file)
    except OSError as exc:  # a read-only data dir only costs a re-hash next time
        log.warning("event=hash_cache_unwritable path=%s error=%s", cache_file, exc)
