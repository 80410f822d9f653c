"""Build the serving process: every part from the settings, then the FastAPI app with the
Gradio UI mounted under /ui, the OpenAI-compatible API under /v1, and health and metrics."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import RedirectResponse
from gradio import utils as gradio_utils

from appliance.audit.denials import Denials
from appliance.auth import LoginLimiter, ProxyAuth, UserStore
from appliance.conversation import FollowUpRewriter
from appliance.errors import ConfigError
from appliance.gate import ModelGate
from appliance.generation import Generator
from appliance.services import AnswerServices, build_answer_services
from appliance.settings import Settings
from appliance.store import VectorStore
from appliance.store.check import IndexHealth, warn_missing_sparse
from appliance.web import files, login, openai_api, ops
from appliance.web.chat import ChatEngine
from appliance.web.guard import AuthGuard
from appliance.web.identity import Identifier
from appliance.web.limits import BodyLimit
from appliance.web.metrics import Metrics
from ingest.chunking import ChunkConfig, check_chunk_size
from ingest.service import IndexService
from ingest.watch import FolderWatcher

log = logging.getLogger(__name__)
MAX_QUESTION_CHARS = 4000


@dataclass
class WebServices:
    settings: Settings
    answers: AnswerServices
    users: UserStore
    identifier: Identifier
    limiter: LoginLimiter
    index: IndexService
    engine: ChatEngine
    metrics: Metrics
    watcher: FolderWatcher | None
    index_health: IndexHealth

    def start(self) -> None:
        """Watch the documents folder, and load the model now rather than at the first question."""
        if self.watcher is not None:
            self.watcher.start()
        threading.Thread(target=self._load_model, name="model-load", daemon=True).start()

    def _load_model(self) -> None:
        try:
            self.answers.assistant.generator()
        except Exception as exc:  # reported by /healthz and at the first question
            log.error("event=model_load_failed error=%s", exc)

    def health(self) -> dict[str, Any]:
        report: dict[str, Any] = {"model_loaded": self.answers.assistant.model_loaded}
        report.update(ops.llm_health(self.settings))
        try:
            info = self.answers.index.store.info()
            report.update(store_open=True, chunks=info.points, store=info.backend)
        except Exception as exc:
            report.update(store_open=False, store_error=str(exc))
        try:
            check = self.index_health.current(writing=self.index.current is not None)
            if check is not None:
                report["index_ok"] = check.ok
                if not check.ok:
                    report["index_error"] = check.message()
        except Exception as exc:
            report.update(index_ok=False, index_error=str(exc))
        try:
            self.answers.audit.check_writable()
            report["audit_writable"] = True
        except Exception as exc:
            report.update(audit_writable=False, audit_error=str(exc))
        report["documents"] = len(self.index.documents())
        return report

    def close(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
        self.index.close()
        self.users.close()
        self.answers.close()


def check_watched_folder(settings: Settings) -> None:
    """The watched folder's files all get APPLIANCE_DOCS_ACL: it must not hold the data folder
    (uploads with narrower groups would be widened, and the index's own writes would keep
    triggering runs), nor lie inside it."""
    if settings.docs_dir is None or not settings.watch_docs:
        return
    docs, data = settings.docs_dir.resolve(), settings.data_dir.resolve()
    if docs == data or data.is_relative_to(docs) or docs.is_relative_to(data):
        raise ConfigError(
            f"APPLIANCE_DOCS_DIR ({docs}) and APPLIANCE_DATA_DIR ({data}) overlap: keep the "
            "documents folder and the appliance's data folder apart"
        )


def build_web_services(
    settings: Settings, load_generator: Callable[[], Generator] | None = None
) -> WebServices:
    check_watched_folder(settings)
    # A damaged index does not stop the server: /healthz reports it, and the log names the fix.
    answers = build_answer_services(settings, load_generator, allow_damaged=True)
    try:
        index_health = IndexHealth(answers.index.store, answers.index.manifest.entries)
        check = index_health.full_check()
        if not check.ok:
            log.error("event=index_damaged %s", check.message())
        warn_missing_sparse(answers.index.store, settings.retrieval)
        check_chunk_size(answers.index.embed_model_dir, settings.chunk_size)
        users = UserStore(settings.users_path, settings.session_hours)
        proxy = ProxyAuth(
            settings.proxy_user_header,
            settings.proxy_groups_header,
            settings.proxy_role_header,
            settings.trusted_proxies,
        )
    except BaseException:
        answers.close()
        raise
    index = IndexService(
        answers.index.store,
        answers.embedder,
        answers.index.manifest,
        ChunkConfig(answers.index.embed_model_dir, settings.chunk_size, settings.chunk_overlap),
        settings.parse_timeout_s,
        int(settings.max_file_size_mb * 1_000_000),
        parser_memory_mb=settings.parser_memory_mb,
        chunk_headers=settings.chunk_headers,
    )
    assistant = answers.assistant
    metrics = Metrics(lambda: live_metrics(assistant.gate, answers.index.store, index))
    watcher = None
    if settings.docs_dir is not None and settings.watch_docs:
        watcher = FolderWatcher(
            settings.docs_dir, settings.docs_acl, index, settings.watch_debounce_s
        )
    return WebServices(
        settings=settings,
        answers=answers,
        users=users,
        identifier=Identifier(users, proxy, Denials(answers.audit)),
        limiter=LoginLimiter(settings.login_max_failures, settings.login_lockout_s),
        index=index,
        engine=ChatEngine(
            assistant,
            FollowUpRewriter(assistant.gate, assistant.generator),
            metrics,
            settings.top_k,
        ),
        metrics=metrics,
        watcher=watcher,
        index_health=index_health,
    )


def live_metrics(
    gate: ModelGate, store: VectorStore, index: IndexService
) -> dict[str, tuple[str, float]]:
    return {
        "appliance_queue_depth": ("Requests waiting for the model.", gate.waiting),
        "appliance_model_busy": ("1 while the model is generating.", float(gate.busy)),
        "appliance_documents": ("Documents in the index.", len(index.documents())),
        "appliance_chunks": ("Chunks in the index.", store.count()),
        "appliance_ingesting": ("1 while an ingestion runs.", float(index.current is not None)),
    }


def create_app(services: WebServices) -> FastAPI:
    from ui.app import CSS, THEME, UiParts, build_blocks
    from ui.documents import DocumentsConfig

    settings = services.settings
    # Audit exports stay out of Gradio's file cache: only the auditors' route serves them.
    exports_dir = settings.data_dir / "audit-exports"
    exports_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    app = FastAPI(title="Private assistant", docs_url=None, redoc_url=None, openapi_url=None)
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
    app.include_router(files.build_router(services.index, exports_dir, services.identifier.denials))

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse("/ui/", status_code=303)

    max_bytes = int(settings.max_file_size_mb * 1_000_000)
    blocks = build_blocks(
        UiParts(
            engine=services.engine,
            identifier=services.identifier,
            index=services.index,
            audit=services.answers.audit,
            documents=DocumentsConfig(
                Path(gradio_utils.get_upload_folder()),
                settings.uploads_dir,
                settings.docs_dir,
                settings.upload_extensions,
                max_bytes,
            ),
            exports_dir=exports_dir,
            max_question_chars=MAX_QUESTION_CHARS,
            queue_size=settings.llm_queue_size,
        )
    )

    def user_name(request: Request) -> str | None:
        user = getattr(request.state, "user", None)
        return user.name if user is not None else None

    gr.mount_gradio_app(
        app,
        blocks,
        path="/ui",
        auth_dependency=user_name,
        allowed_paths=[],
        blocked_paths=[str(exports_dir.resolve()), str(settings.uploads_dir.resolve())],
        max_file_size=max_bytes,
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
    # No cross-origin access at all. A CORS middleware on the parent app is also Gradio's
    # switch to drop its own, which echoes any Origin with credentials allowed whenever the
    # Host is not localhost.
    app.add_middleware(CORSMiddleware, allow_origins=[], allow_credentials=False)
    app.add_middleware(AuthGuard, identifier=services.identifier)
    app.add_middleware(BodyLimit, max_upload_bytes=max_bytes)
    return app
