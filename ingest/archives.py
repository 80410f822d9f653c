"""Refuse zip-based documents (DOCX, PPTX, XLSX) that unpack to far more than they weigh.

A zip bomb (a 0.3 MB DOCX holding 200 MB of XML) otherwise drives the parser to many GB of
memory. Only the zip's central directory is read here: cheap, whatever the content. The
readers (docx2txt, python-pptx, openpyxl) all unpack through Python's `zipfile`, which keeps
no more of a member than its declared size (checked here) and fails its CRC check when the
member holds more. What a lying member costs while it is unpacked, and what parsing the XML
costs, are bounded by the parser process's memory limit (APPLIANCE_PARSER_MEMORY_MB).

The limits leave real office documents far behind: their XML parts compress about 5 to 20
times and their images not at all, so a whole DOCX, PPTX or XLSX typically unpacks to 1 to 10
times its size. Apache POI refuses any part compressed more than 100:1 beyond its first
100 KB, for every Office file it opens; this check is laxer (parts up to 1 MB are exempt).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from appliance.errors import LoadError

ZIP_FORMATS = frozenset({".docx", ".pptx", ".xlsx"})
MB = 1_000_000
# One part may unpack to at most this many times its compressed size...
MAX_MEMBER_RATIO = 100
# ...unless it unpacks to less than this (small parts compress well and cost little).
RATIO_EXEMPT_BYTES = 1 * MB
# The whole archive may unpack to this many times the file's size...
MAX_TOTAL_RATIO = 100
# ...and always to this much (a small file with well-compressed text is fine)...
TOTAL_FLOOR_BYTES = 100 * MB
# ...but never to more than this, whatever the file's size.
TOTAL_CAP_BYTES = 512 * MB
# A 500-slide deck has about 2,000 parts.
MAX_MEMBERS = 20_000


def unpacked_limit(file_bytes: int) -> int:
    """The most a zip-based document of `file_bytes` may unpack to, in bytes."""
    return min(TOTAL_CAP_BYTES, max(TOTAL_FLOOR_BYTES, MAX_TOTAL_RATIO * file_bytes))


def check_zip_bounds(path: Path) -> None:
    """Raise `LoadError` when `path`, a zip-based document, unpacks beyond the limits.

    A file that is not a zip archive passes: its reader then says it is corrupt.
    """
    kind = path.suffix.lstrip(".").upper()
    file_bytes = path.stat().st_size
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError):
        return
    if len(members) > MAX_MEMBERS:
        raise LoadError(
            f"refused: the {kind} holds {len(members):,} parts, over the limit of "
            f"{MAX_MEMBERS:,}: a zip bomb, or a damaged document"
        )
    for member in members:
        ratio = member.file_size / max(member.compress_size, 1)
        if member.file_size > RATIO_EXEMPT_BYTES and ratio > MAX_MEMBER_RATIO:
            raise LoadError(
                f"refused: its part {member.filename[:100]!r} unpacks to "
                f"{_mb(member.file_size)} from {_mb(member.compress_size)} ({ratio:,.0f}:1), "
                f"over the limit of {MAX_MEMBER_RATIO}:1 for parts over "
                f"{_mb(RATIO_EXEMPT_BYTES)}: a zip bomb, or a damaged document"
            )
    total = sum(member.file_size for member in members)
    limit = unpacked_limit(file_bytes)
    if total > limit:
        raise LoadError(
            f"refused: the {kind} unpacks to {_mb(total)}, over the limit of {_mb(limit)} for "
            f"a {_mb(file_bytes)} file ({MAX_TOTAL_RATIO} times its size, at least "
            f"{_mb(TOTAL_FLOOR_BYTES)}, at most {_mb(TOTAL_CAP_BYTES)}): a zip bomb, or a "
            "document too large to parse safely; split it"
        )


def _mb(size: int) -> str:
    return f"{size / MB:,.1f} MB"
