"""Every part the web server needs (`appliance serve`): the answer parts, sign-in, the index
service with its folder watcher, feedback, metrics and the health report."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

from appliance.audit.denials import Denials
from appliance.audit.feedback import Feedback, manifest_acl
from appliance.auth import LoginLimiter, ProxyAuth, UserStore
from appliance.auth.identity import Identifier
from appliance.chat import ChatEngine
from appliance.errors import ConfigError
from appliance.gate import SharedModel
from appliance.generation import Generator
from appliance.metrics import Metrics
from appliance.remote_llm import public_url, server_problem
from appliance.services.answers import AnswerServices, enter_answer_services, remote_config
from appliance.settings import Settings
from appliance.store import VectorStore
from appliance.store.check import IndexHealth, warn_missing_sparse
from ingest.chunking import ChunkConfig, check_chunk_size
from ingest.ocr import ocr_config
from ingest.service import IndexService
from ingest.watch import FolderWatcher

log = logging.getLogger(__name__)


@dataclass
class WebServices:
    settings: Settings
    answers: AnswerServices
    users: UserStore
    identifier: Identifier
    limiter: LoginLimiter
    index: IndexService
    engine: ChatEngine
    feedback: Feedback
    metrics: Metrics
    watcher: FolderWatcher | None
    index_health: IndexHealth
    resources: ExitStack = field(default_factory=ExitStack, repr=False)

    def start(self) -> None:
        """Watch the documents folder, and load the model now rather than at the first question."""
        if self.watcher is not None:
            self.watcher.start()
        threading.Thread(target=self._load_model, name="model-load", daemon=True).start()

    def _load_model(self) -> None:
        try:
            self.answers.model.load()
        except Exception as exc:  # reported by /healthz and at the first question
            log.error("event=model_load_failed error=%s", exc)

    def health(self) -> dict[str, Any]:
        report: dict[str, Any] = {"model_loaded": self.answers.model.loaded}
        report.update(llm_health(self.settings))
        report.update(self._store_health())
        report.update(self._index_health())
        report.update(self._audit_health())
        report["documents"] = len(self.index.documents())
        return report

    def _store_health(self) -> dict[str, Any]:
        try:
            info = self.answers.index.store.info()
        except Exception as exc:
            return {"store_open": False, "store_error": str(exc)}
        return {"store_open": True, "chunks": info.points, "store": info.backend}

    def _index_health(self) -> dict[str, Any]:
        try:
            check = self.index_health.current(writing=self.index.current is not None)
            if check is None:
                return {}
            return (
                {"index_ok": True}
                if check.ok
                else {"index_ok": False, "index_error": check.message()}
            )
        except Exception as exc:
            return {"index_ok": False, "index_error": str(exc)}

    def _audit_health(self) -> dict[str, Any]:
        try:
            self.answers.audit.check_writable()
        except Exception as exc:
            return {"audit_writable": False, "audit_error": str(exc)}
        return {"audit_writable": True}

    def close(self) -> None:
        """Stop the watcher, then close every part in the reverse order of opening."""
        self.resources.close()


def llm_health(settings: Settings) -> dict[str, Any]:
    """With APPLIANCE_LLM_URL, whether that server answers now (the model is loaded there)."""
    if not settings.llm_url:
        return {}
    problem = server_problem(remote_config(settings))
    report: dict[str, Any] = {
        "llm_backend": "openai-compatible",
        "llm_url": public_url(settings.llm_url),
        "llm_reachable": problem is None,
    }
    if problem is not None:
        report["llm_error"] = problem
    return report


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
    """Every part of the server, or none: a part that fails closes those opened before it."""
    check_watched_folder(settings)
    with ExitStack() as stack:
        # A damaged index does not stop the server: /healthz reports it, the log names the fix.
        answers = enter_answer_services(stack, settings, load_generator, allow_damaged=True)
        index_health = _check_index(answers, settings)
        users = UserStore(settings.users_path, settings.session_hours)
        stack.callback(users.close)
        identifier = Identifier(users, _proxy_auth(settings), Denials(answers.audit))
        index = _index_service(answers, settings)
        stack.callback(index.close)
        metrics = Metrics(lambda: live_metrics(answers.model, answers.index.store, index))
        watcher = _folder_watcher(settings, index)
        if watcher is not None:
            stack.callback(watcher.stop)
        services = WebServices(
            settings=settings,
            answers=answers,
            users=users,
            identifier=identifier,
            limiter=LoginLimiter(settings.login_max_failures, settings.login_lockout_s),
            index=index,
            engine=ChatEngine(answers.assistant, metrics, settings.top_k),
            feedback=Feedback(answers.audit, manifest_acl(index.documents), identifier.denied),
            metrics=metrics,
            watcher=watcher,
            index_health=index_health,
        )
        services.resources = stack.pop_all()
    return services


def _check_index(answers: AnswerServices, settings: Settings) -> IndexHealth:
    """Read the whole index once at start; the log names what is wrong and the fix."""
    index_health = IndexHealth(answers.index.store, answers.index.manifest.entries)
    check = index_health.full_check()
    if not check.ok:
        log.error("event=index_damaged %s", check.message())
    warn_missing_sparse(answers.index.store, settings.retrieval)
    check_chunk_size(answers.index.embed_model_dir, settings.chunk_size)
    return index_health


def _proxy_auth(settings: Settings) -> ProxyAuth:
    return ProxyAuth(
        settings.proxy_user_header,
        settings.proxy_groups_header,
        settings.proxy_role_header,
        settings.trusted_proxies,
    )


def _index_service(answers: AnswerServices, settings: Settings) -> IndexService:
    return IndexService(
        answers.index.store,
        answers.embedder,
        answers.index.manifest,
        ChunkConfig(answers.index.embed_model_dir, settings.chunk_size, settings.chunk_overlap),
        settings.parse_timeout_s,
        settings.max_file_size_bytes,
        parser_memory_mb=settings.parser_memory_mb,
        ocr=ocr_config(settings),
        chunk_headers=settings.chunk_headers,
        thread_plan=answers.threads,
    )


def _folder_watcher(settings: Settings, index: IndexService) -> FolderWatcher | None:
    if settings.docs_dir is None or not settings.watch_docs:
        return None
    return FolderWatcher(settings.docs_dir, settings.docs_acl, index, settings.watch_debounce_s)


def live_metrics(
    model: SharedModel, store: VectorStore, index: IndexService
) -> dict[str, tuple[str, float]]:
    return {
        "appliance_queue_depth": ("Requests waiting for the model.", model.waiting),
        "appliance_model_busy": ("1 while the model is generating.", float(model.busy)),
        "appliance_documents": ("Documents in the index.", len(index.documents())),
        "appliance_chunks": ("Chunks in the index.", store.count()),
        "appliance_ingesting": ("1 while an ingestion runs.", float(index.current is not None)),
    }
