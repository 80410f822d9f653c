"""`/documents/{doc_id}`: open the original of a cited document, if the user may read it.
`/audit/exports/{name}`: download an audit export, for auditors only.

Only a document id is accepted, never a path: the file served is the one the manifest
records for that id, and only while its bytes still hash to that id. The response is
sandboxed: an HTML document renders without scripts, forms or remote loads.

Audit exports are written outside Gradio's file cache (and that folder is blocked for
Gradio's file routes), so this route, with its role check, is the only way to them.
"""

from __future__ import annotations

import mimetypes
import re
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse

from appliance.audit.denials import Denials
from appliance.audit.export import EXPORT_PREFIX, EXPORTS_URL
from appliance.auth import User
from appliance.filehash import sha256_of_file
from ingest.service import IndexService

DOC_ID = re.compile(r"^[0-9a-f]{64}$")
EXPORT_NAME = re.compile(rf"^{EXPORT_PREFIX}[0-9]{{8}}T[0-9]{{6}}-[0-9a-f]{{16}}\.(csv|jsonl)$")
EXPORT_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}
INLINE_TYPES = {
    ".pdf": "application/pdf",
    ".txt": "text/plain; charset=utf-8",
    ".md": "text/plain; charset=utf-8",
    ".csv": "text/plain; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".htm": "text/html; charset=utf-8",
    # Scans, so that a reader can check a machine-read passage against the page (browsers
    # show no TIFF: those download).
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
}
SANDBOX = "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def build_router(
    index: IndexService, exports_dir: Path | None = None, denials: Denials | None = None
) -> APIRouter:
    router = APIRouter()

    def denied(user: User, action: str, target: str, reason: str) -> None:
        if denials is not None:
            denials.record(user.name, action, target, reason, groups=user.groups)

    @router.get("/documents/{doc_id}")
    def open_document(doc_id: str, request: Request) -> FileResponse:
        user: User = request.state.user
        entry = index.document(doc_id) if DOC_ID.match(doc_id) else None
        if entry is not None and not set(entry.acl) & set(user.groups):
            denied(user, "open a document", f"{doc_id} ({entry.source})", "not in its groups")
        if entry is None or not set(entry.acl) & set(user.groups):
            raise HTTPException(404, "no such document")
        path = Path(entry.source)
        if not path.is_file() or sha256_of_file(path) != doc_id:
            raise HTTPException(410, "the document changed or was removed since it was indexed")
        media_type = INLINE_TYPES.get(path.suffix.lower())
        return FileResponse(
            path,
            media_type=media_type
            or mimetypes.guess_type(path.name)[0]
            or "application/octet-stream",
            filename=path.name,
            content_disposition_type="inline" if media_type else "attachment",
            headers={"content-security-policy": SANDBOX, "cache-control": "private, no-store"},
        )

    @router.get(EXPORTS_URL + "/{name}")
    def download_export(name: str, request: Request) -> FileResponse:
        user: User = request.state.user
        if not user.is_auditor:
            denied(user, "download an audit export", name, "only auditors read audit exports")
            raise HTTPException(403, "only auditors read audit exports")
        match = EXPORT_NAME.match(name)
        path = exports_dir / name if exports_dir is not None and match else None
        if match is None or path is None or not path.is_file():
            raise HTTPException(404, "no such export: exports are kept for ten minutes")
        return FileResponse(
            path,
            media_type=EXPORT_TYPES[match.group(1)],
            filename=name,
            content_disposition_type="attachment",
            headers={"content-security-policy": SANDBOX, "cache-control": "private, no-store"},
        )

    return router
