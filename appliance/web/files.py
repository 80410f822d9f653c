"""`/documents/{doc_id}`: open the original of a cited document, if the user may read it.

Only a document id is accepted, never a path: the file served is the one the manifest
records for that id, and only while its bytes still hash to that id. The response is
sandboxed: an HTML document renders without scripts, forms or remote loads.
"""

from __future__ import annotations

import mimetypes
import re
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse

from appliance.auth import User
from appliance.filehash import sha256_of_file
from ingest.service import IndexService

DOC_ID = re.compile(r"^[0-9a-f]{64}$")
INLINE_TYPES = {
    ".pdf": "application/pdf",
    ".txt": "text/plain; charset=utf-8",
    ".md": "text/plain; charset=utf-8",
    ".csv": "text/plain; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".htm": "text/html; charset=utf-8",
}
SANDBOX = "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def build_router(index: IndexService) -> APIRouter:
    router = APIRouter()

    @router.get("/documents/{doc_id}")
    def open_document(doc_id: str, request: Request) -> FileResponse:
        user: User = request.state.user
        entry = index.document(doc_id) if DOC_ID.match(doc_id) else None
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

    return router
