"""`/healthz` for orchestrators (no login) and `/metrics` for Prometheus (any user or key).

`/healthz` is 503 until the model can answer (loaded in this process, or its LLM server
reachable), the store is open and whole (`index_ok`: every chunk the manifest records is
there and the store has read its points; a count comparison cached for 30 s, the full read
at start) and the audit log writable. It says which part is down; the reason goes to the
log."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from appliance.metrics import Metrics

log = logging.getLogger(__name__)


# /healthz needs no login: it says what is wrong, and the log says why (error texts name
# files, hosts and URLs inside the deployment).
PRIVATE_KEYS = ("llm_url",)


def _public(report: dict[str, Any]) -> dict[str, Any]:
    public = {}
    for key, value in report.items():
        if key.endswith("_error"):
            log.warning("event=health_check_failed part=%s error=%s", key[: -len("_error")], value)
        elif key not in PRIVATE_KEYS:
            public[key] = value
    return public


def build_router(health: Callable[[], dict[str, Any]], metrics: Metrics) -> APIRouter:
    router = APIRouter()

    @router.get("/healthz")
    def healthz() -> JSONResponse:
        report = _public(health())
        # A remote model is ready when its server answers; a local one once it is loaded.
        model_ready = report.get("llm_reachable", report["model_loaded"])
        ready = (
            model_ready
            and report["store_open"]
            and report.get("index_ok", True)
            and report["audit_writable"]
        )
        report["status"] = "ok" if ready else "unavailable"
        return JSONResponse(report, status_code=200 if ready else 503)

    @router.get("/metrics")
    def prometheus() -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    return router
