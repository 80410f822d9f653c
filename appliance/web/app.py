"""The serving process's app: FastAPI with the Gradio UI mounted under /ui, the
OpenAI-compatible API under /v1, and health and metrics, over the parts that
appliance.services.web built."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import RedirectResponse
from gradio import utils as gradio_utils

from appliance.answers import MAX_QUESTION_CHARS
from appliance.services.web import WebServices
from appliance.web import feedback_api, files, login, openai_api, ops
from appliance.web.guard import AuthGuard
from appliance.web.limits import BodyLimit
from ui.app import CSS, THEME, UiParts, build_blocks
from ui.documents import DocumentsConfig


def create_app(services: WebServices) -> FastAPI:
    # Audit exports stay out of Gradio's file cache: only the auditors' route serves them.
    exports_dir = services.settings.data_dir / "audit-exports"
    exports_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    app = FastAPI(title="Private assistant", docs_url=None, redoc_url=None, openapi_url=None)
    _include_routers(app, services, exports_dir)
    _mount_ui(app, services, exports_dir)
    # No cross-origin access at all. A CORS middleware on the parent app is also Gradio's
    # switch to drop its own, which echoes any Origin with credentials allowed whenever the
    # Host is not localhost.
    app.add_middleware(CORSMiddleware, allow_origins=[], allow_credentials=False)
    app.add_middleware(AuthGuard, identifier=services.identifier)
    app.add_middleware(BodyLimit, max_upload_bytes=services.settings.max_file_size_bytes)
    return app


def _include_routers(app: FastAPI, services: WebServices, exports_dir: Path) -> None:
    settings = services.settings
    app.include_router(ops.build_router(services.health, services.metrics))
    app.include_router(
        login.build_router(
            services.users,
            services.limiter,
            settings.session_hours,
            settings.secure_cookies,
            services.identifier.denials,
        )
    )
    app.include_router(openai_api.build_router(services.engine))
    app.include_router(feedback_api.build_router(services.feedback))
    app.include_router(files.build_router(services.index, exports_dir, services.identifier.denials))

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse("/ui/", status_code=303)


def _ui_blocks(services: WebServices, exports_dir: Path) -> gr.Blocks:
    settings = services.settings
    return build_blocks(
        UiParts(
            engine=services.engine,
            identifier=services.identifier,
            index=services.index,
            audit=services.answers.audit,
            feedback=services.feedback,
            documents=DocumentsConfig(
                Path(gradio_utils.get_upload_folder()),
                settings.uploads_dir,
                settings.docs_dir,
                settings.upload_extensions,
                settings.max_file_size_bytes,
            ),
            exports_dir=exports_dir,
            max_question_chars=MAX_QUESTION_CHARS,
            queue_size=settings.llm_queue_size,
        )
    )


def _user_name(request: Request) -> str | None:
    user = getattr(request.state, "user", None)
    return user.name if user is not None else None


def _mount_ui(app: FastAPI, services: WebServices, exports_dir: Path) -> None:
    settings = services.settings
    blocks = _ui_blocks(services, exports_dir)
    gr.mount_gradio_app(
        app,
        blocks,
        path="/ui",
        auth_dependency=_user_name,
        allowed_paths=[],
        blocked_paths=[str(exports_dir.resolve()), str(settings.uploads_dir.resolve())],
        max_file_size=settings.max_file_size_bytes,
        show_error=True,
        enable_monitoring=False,
        footer_links=[],
        ssr_mode=False,
        pwa=False,
        mcp_server=False,
        theme=THEME,
        css=CSS,
    )
    # Gradio checks that a file named in a request was uploaded through it (not any file on
    # the server) only for apps it launched itself; a mounted app must turn that check on.
    blocks.has_launched = True
