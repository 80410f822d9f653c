"""The audit chain's key: a secret file kept outside the data directory.

With a key, each record's hash is HMAC-SHA256 of its body under the key, so someone who can
write the data directory but cannot read the key cannot alter a record and recompute the chain.
Each record stores how its hash was made: `sha256` (written before the chain was keyed) or
`hmac-sha256:<key id>`, where the key id (derived from the key by HMAC, so it reveals nothing
of it) tells which key wrote it. The key itself is never logged or printed.

Which records may be plain is said by the key file too, not by the data directory (whoever
can write that could otherwise mark every record plain and rewrite the whole chain): a line
`plain-until: N` accepts records 1..N as written before the key; every later record must be
keyed. The appliance writes that line when it creates a key for a log that already has
records; for a key IT provides, the refusal to open such a log says which line to add.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from appliance.errors import AuditError

log = logging.getLogger(__name__)

PLAIN_SCHEME = "sha256"
KEYED_SCHEME = "hmac-sha256"
MIN_KEY_BYTES = 32
PLAIN_UNTIL = re.compile(rb"^plain-until:\s*([0-9]+)\s*$")


@dataclass(frozen=True)
class AuditKey:
    path: Path
    secret: bytes = field(repr=False)
    # Records 1..plain_until were written before the key and may be plain SHA-256.
    plain_until: int = 0

    @property
    def id(self) -> str:
        """16 hex digits naming this key in the records it wrote."""
        return hmac.new(self.secret, b"appliance audit key id", hashlib.sha256).hexdigest()[:16]

    @property
    def scheme(self) -> str:
        return f"{KEYED_SCHEME}:{self.id}"


def scheme_key_id(scheme: str) -> str | None:
    """The key id in a keyed scheme, else None."""
    prefix = f"{KEYED_SCHEME}:"
    return scheme[len(prefix) :] if scheme.startswith(prefix) else None


def read_key(path: Path) -> AuditKey:
    """The key in the file at `path`: its first line, then an optional `plain-until: N`."""
    try:
        lines = [line.strip() for line in path.read_bytes().splitlines() if line.strip()]
    except OSError as exc:
        raise AuditError(
            f"cannot read the audit key file {path} ({exc.strerror or exc}): check that it is "
            "mounted and readable by the appliance's user (APPLIANCE_AUDIT_KEY_FILE)"
        ) from None
    secret = lines[0] if lines else b""
    if len(secret) < MIN_KEY_BYTES:
        raise AuditError(
            f"the audit key file {path} holds {len(secret)} bytes, fewer than {MIN_KEY_BYTES}: "
            f"make one with `openssl rand -hex 32 > {path}`"
        )
    plain_until = 0
    for line in lines[1:]:
        match = PLAIN_UNTIL.match(line)
        if match is None:
            raise AuditError(
                f"the audit key file {path} has a line that is neither the key (the first "
                "line) nor `plain-until: N`: remove it"
            )
        plain_until = int(match.group(1))
    return AuditKey(path, secret, plain_until)


def create_key(path: Path, plain_until: int = 0) -> AuditKey:
    """A new random key written to `path` (mode 0600, its folder 0700 when created here),
    accepting the `plain_until` records the log already holds as written before it."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first
        return read_key(path)
    except OSError as exc:
        raise AuditError(
            f"cannot create the audit key file {path} ({exc.strerror or exc}): create it "
            "yourself (`openssl rand -hex 32`, mode 0600) or set APPLIANCE_AUDIT_KEY_FILE"
        ) from None
    with os.fdopen(fd, "w", encoding="ascii") as stream:
        stream.write(secrets.token_hex(32) + "\n")
        if plain_until:
            stream.write(f"plain-until: {plain_until}\n")
        stream.flush()
        os.fsync(stream.fileno())
    key = read_key(path)
    log.warning("event=audit_key_created path=%s key_id=%s (back this file up)", path, key.id)
    return key


def is_inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def open_key(
    key_file: Path | None,
    *,
    log_path: Path,
    log_key_id: str | None,
    last_plain_seq: int,
    read_only: bool,
) -> AuditKey | None:
    """The key for the log at `log_path`, whose latest keyed record names `log_key_id`.

    A missing key file is created for a log that has no keyed record yet (unless `read_only`,
    which gives None); for a keyed log it is an error, as is a key file in the data directory
    or, when writing, a key other than the one the log was written with, or a log with plain
    records the key file does not accept (`last_plain_seq`: the last of them, 0 when none).
    """
    if key_file is None:
        return None
    if is_inside(key_file, log_path.parent):
        raise AuditError(
            f"the audit key file {key_file} is inside the data directory {log_path.parent}: "
            "keep it elsewhere (APPLIANCE_AUDIT_KEY_FILE), or it protects nothing"
        )
    if key_file.exists():
        key = read_key(key_file)
    elif read_only:
        return None
    elif log_key_id is not None:
        raise AuditError(
            f"the audit log {log_path} is keyed (key id {log_key_id}) but its key file "
            f"{key_file} is missing: restore the key file from backup or mount it there"
        )
    else:
        key = create_key(key_file, last_plain_seq)
    if not read_only and last_plain_seq > key.plain_until:
        raise AuditError(
            f"the audit log {log_path} has records hashed without the key up to record "
            f"{last_plain_seq}, but the key file {key_file} accepts "
            f"{key.plain_until or 'none'} as written before it. If the log predates this key, "
            f"add the line `plain-until: {last_plain_seq}` to the key file; otherwise it was "
            "rewritten without the key: run `appliance audit verify` and restore it from backup"
        )
    if not read_only and log_key_id is not None and log_key_id != key.id:
        raise AuditError(
            f"the audit key file {key_file} (key id {key.id}) is not the key the audit log "
            f"{log_path} was written with (key id {log_key_id}): mount that key file, or move "
            "the log aside to start a new one"
        )
    return key
