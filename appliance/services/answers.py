"""What a question needs: the model (in this process or an LLM server), the audit log and the
assistant over the document index."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from appliance.audit import AuditLog
from appliance.embedding import Embedder
from appliance.errors import ConfigError, ModelError
from appliance.filehash import hash_cache_path
from appliance.gate import ModelGate, SharedModel
from appliance.generation import Generator
from appliance.models import known_model, resolve_llm
from appliance.rag import AnswerPolicy, Assistant
from appliance.retrieval import Retriever
from appliance.services.index import IndexServices, build_embedder, enter_index
from appliance.settings import Settings
from appliance.threads import ThreadPlan, usable_cores

if TYPE_CHECKING:
    from appliance.remote_llm import RemoteConfig


def resolve_llm_model(settings: Settings) -> Path:
    """The configured GGUF, or the known (default) model, joined from its packages on first
    use. Only for the in-process model: with APPLIANCE_LLM_URL no local GGUF is needed."""
    return resolve_llm(settings.llm_model, settings.models_dir)


def check_llm_files(settings: Settings) -> None:
    """Report a wrong model or adapter path at start-up, not at the first relevant question."""
    if settings.llm_url:
        # The server loads its own weights; an adapter set here would silently not apply.
        if settings.llm_adapter is not None:
            raise ConfigError(
                "APPLIANCE_LLM_ADAPTER is set, but APPLIANCE_LLM_URL sends questions to an LLM "
                "server, which loads its own adapters: unset one of the two"
            )
        return
    model = settings.llm_model
    if model is not None and known_model(model) is None and not Path(model).is_file():
        resolve_llm(model, settings.models_dir)  # raises the error that names the choices
    adapter = settings.llm_adapter
    if adapter is not None and not adapter.is_file():
        raise ModelError(f"APPLIANCE_LLM_ADAPTER={adapter} is not a file: point it at a .gguf file")


def remote_config(settings: Settings) -> RemoteConfig:
    from appliance.remote_llm import RemoteConfig

    if not settings.llm_url:
        raise ConfigError("APPLIANCE_LLM_URL is not set: no LLM server is configured")
    key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
    return RemoteConfig(
        url=settings.llm_url,
        api_key=key,
        model=settings.llm_remote_model,
        timeout_s=settings.llm_timeout_s,
        context_size=settings.llm_context_size,
        temperature=settings.llm_temperature,
        prompt_mode=settings.llm_prompt_mode,
    )


def build_thread_plan(settings: Settings) -> ThreadPlan:
    return ThreadPlan(usable_cores(), settings.ingest_threads_while_answering)


def build_generator(settings: Settings, plan: ThreadPlan | None = None) -> Generator:
    """The LLM server at APPLIANCE_LLM_URL when set, else the GGUF model in this process;
    `plan` shares the cores with ingestion in this process."""
    from appliance.generation import LlamaCppGenerator
    from appliance.remote_llm import OpenAICompatibleGenerator

    if settings.llm_url:
        return OpenAICompatibleGenerator(remote_config(settings))
    return LlamaCppGenerator(
        resolve_llm_model(settings),
        adapter_path=settings.llm_adapter,
        context_size=settings.llm_context_size,
        threads=settings.llm_threads,
        gpu_layers=settings.llm_gpu_layers,
        temperature=settings.llm_temperature,
        prompt_mode=settings.llm_prompt_mode,
        hash_cache=hash_cache_path(settings.models_dir),
        plan=plan,
    )


def open_audit_log(settings: Settings, *, read_only: bool = False) -> AuditLog:
    """The audit log at its configured place, with the configured HMAC key file."""
    return AuditLog(
        settings.audit_path, read_only=read_only, key_file=settings.resolved_audit_key_file
    )


def build_local_model(settings: Settings, model: Path) -> Generator:
    """The local GGUF `model` without an adapter, as `ask` loads it: `finetune build-data`
    counts tokens and builds prompts with it."""
    from appliance.generation import LlamaCppGenerator

    return LlamaCppGenerator(
        model,
        context_size=settings.llm_context_size,
        threads=settings.llm_threads,
        prompt_mode=settings.llm_prompt_mode,
        hash_cache=hash_cache_path(settings.models_dir),
    )


@dataclass
class AnswerServices:
    index: IndexServices
    embedder: Embedder
    audit: AuditLog
    model: SharedModel  # the assistant's; the server preloads it, /healthz and /metrics read it
    assistant: Assistant
    threads: ThreadPlan
    # What close() releases: empty when a larger set of services owns these parts.
    resources: ExitStack = field(default_factory=ExitStack, repr=False)

    def close(self) -> None:
        self.resources.close()


def build_answer_services(
    settings: Settings,
    load_generator: Callable[[], Generator] | None = None,
    allow_damaged: bool = False,
) -> AnswerServices:
    """Everything a question needs. The model itself loads on the first generated answer.

    `allow_damaged`: open a damaged index anyway (the server reports it on /healthz)."""
    with ExitStack() as stack:
        answers = enter_answer_services(stack, settings, load_generator, allow_damaged)
        answers.resources = stack.pop_all()
    return answers


def enter_answer_services(
    stack: ExitStack,
    settings: Settings,
    load_generator: Callable[[], Generator] | None = None,
    allow_damaged: bool = False,
) -> AnswerServices:
    """build_answer_services, with every part it opens closed by `stack`."""
    check_llm_files(settings)
    embedder = build_embedder(settings)
    threads = build_thread_plan(settings)
    index = enter_index(stack, settings, embedder, allow_damaged=allow_damaged)
    audit = open_audit_log(settings)
    stack.callback(audit.close)
    model = SharedModel(
        ModelGate(settings.llm_queue_size, settings.llm_queue_timeout_s),
        load_generator or (lambda: build_generator(settings, threads)),
    )
    assistant = Assistant(
        Retriever(embedder, index.store, settings.retrieval),
        audit,
        model,
        AnswerPolicy(
            score_threshold=settings.score_threshold,
            max_tokens=settings.llm_max_tokens,
            collection=settings.collection,
        ),
    )
    return AnswerServices(index, embedder, audit, model, assistant, threads)
