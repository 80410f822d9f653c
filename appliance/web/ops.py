"""`/healthz` for orchestrators (no login) and `/metrics` for Prometheus (any user or key)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from appliance.web.metrics import Metrics


def build_router(health: Callable[[], dict[str, Any]], metrics: Metrics) -> APIRouter:
    router = APIRouter()

    @router.get("/healthz")
    def healthz() -> JSONResponse:
        report = health()
        ready = report["model_loaded"] and report["store_open"] and report["audit_writable"]
        report["status"] = "ok" if ready else "unavailable"
        return JSONResponse(report, status_code=200 if ready else 503)

    @router.get("/metrics")
    def prometheus() -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    return router
