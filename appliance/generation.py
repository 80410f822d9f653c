"""llama.cpp through llama-cpp-python, behind a small protocol that streams text pieces."""

from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import re
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from appliance.errors import ModelError
from appliance.filehash import cached_sha256, hash_cache_path
from appliance.threads import ThreadPlan, idle_cores, threads_for_now, usable_cores

log = logging.getLogger(__name__)

PromptMode = Literal["completion", "chat"]


LOCAL_BACKEND = "llama.cpp"


@dataclass(frozen=True)
class ModelIdentity:
    """Which weights produced an answer: what the audit log and `ask --json` report.

    `backend` says who ran them: "llama.cpp" (in this process; path and sha256 of the GGUF)
    or "openai-compatible" (a server: its `url`, without credentials, and the `served_model`
    it was asked for; its weights' path and sha256 are not known here). None: no model ran.
    """

    path: str | None
    sha256: str | None
    adapter_path: str | None = None
    adapter_sha256: str | None = None
    backend: str | None = None
    url: str | None = None
    served_model: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "path": self.path,
            "sha256": self.sha256,
            "adapter_sha256": self.adapter_sha256,
            "url": self.url,
            "served_model": self.served_model,
        }

    def audit_json(self) -> dict[str, Any]:
        return {**self.to_json(), "adapter_path": self.adapter_path}


@dataclass(frozen=True)
class Prompt:
    """What the model is given: a completion text, or chat turns for the model's template.

    In chat mode `text` is the last user turn and `preamble` the (role, content) turns before
    it: system rules and worked examples. They come first and never vary, so llama.cpp keeps
    them evaluated from one question to the next.
    """

    mode: PromptMode
    text: str
    stop: tuple[str, ...] = field(default_factory=tuple)
    preamble: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def messages(self) -> list[dict[str, str]]:
        turns = [{"role": role, "content": content} for role, content in self.preamble]
        return [*turns, {"role": "user", "content": self.text}]

    def sha256(self) -> str:
        rendered = self.text if self.mode == "completion" else json.dumps(self.messages())
        return hashlib.sha256(rendered.encode("utf-8")).hexdigest()


class Generator(Protocol):
    @property
    def identity(self) -> ModelIdentity: ...

    @property
    def mode(self) -> PromptMode: ...

    @property
    def context_size(self) -> int: ...

    def count_tokens(self, text: str) -> int: ...

    def sanitize(self, text: str) -> str:
        """`text` with any spelling of the model's control tokens made harmless."""

    def stream(self, prompt: Prompt, max_tokens: int) -> Iterator[str]:
        """Text pieces of the answer as the model produces them."""


@ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
def _llama_log(level: int, text: bytes | None, user_data: Any) -> None:
    # llama.cpp writes diagnostics to stderr even with verbose=False; route them to our log.
    if text:
        log.debug("event=llama_cpp message=%s", text.decode("utf-8", "replace").rstrip())


def silence_llama_cpp() -> None:
    import llama_cpp

    llama_cpp.llama_log_set(_llama_log, ctypes.c_void_p(0))


# Shapes of control-token spellings across model families: <end_of_turn>, <|im_end|>, [INST].
CONTROL_CANDIDATE = re.compile(r"<\|?[^<>|\s]{1,48}\|?>|\[/?[A-Z_]{2,24}\]")


DEFANG = str.maketrans({"<": "\u2039", ">": "\u203a", "[": "\u27e6", "]": "\u27e7"})


def detect_mode(metadata: dict[str, str], configured: str) -> PromptMode:
    """Chat mode only for models whose GGUF carries a chat template, unless configured."""
    if configured in ("completion", "chat"):
        return "chat" if configured == "chat" else "completion"
    return "chat" if metadata.get("tokenizer.chat_template") else "completion"


class LlamaCppGenerator:
    """One in-process llama.cpp model. Not thread-safe: callers serialise through a gate.

    Threads: when `threads` is given, that many generate tokens and every core reads the
    prompt; otherwise both are chosen before each answer from the cores that are idle at that
    moment (`threads_for_now`), so that an answer stays fast while ingestion or another
    program keeps a core busy. With a `plan`, ingestion in this process keeps to the plan's
    share while an answer streams, and the answer takes the rest (appliance/threads.py).

    Flash attention stays off: it reads a 2,000-token prompt 10 % faster on 2 cores, but
    with it the thread count changed the small Gemma's answer to the same prompt at
    temperature 0 (one thread: "10 days", two: "28 days"); without it the answers did not
    depend on the threads.
    """

    def __init__(
        self,
        model_path: Path,
        *,
        adapter_path: Path | None = None,
        context_size: int = 2048,
        threads: int | None = None,
        gpu_layers: int = 0,
        temperature: float = 0.0,
        prompt_mode: str = "auto",
        hash_cache: Path | None = None,
        plan: ThreadPlan | None = None,
    ) -> None:
        _check_file(model_path, "APPLIANCE_LLM_MODEL")
        if adapter_path is not None:
            _check_file(adapter_path, "APPLIANCE_LLM_ADAPTER")
        cache = hash_cache or hash_cache_path(model_path.parent)
        self._identity = ModelIdentity(
            path=str(model_path.resolve()),
            sha256=cached_sha256(model_path, cache),
            adapter_path=str(adapter_path.resolve()) if adapter_path else None,
            adapter_sha256=cached_sha256(adapter_path, cache) if adapter_path else None,
            backend=LOCAL_BACKEND,
        )
        self._temperature = temperature
        self._fixed_threads = threads
        self._plan = plan
        self._control_spellings: dict[str, bool] = {}
        self._llm = _load(model_path, adapter_path, context_size, threads, gpu_layers)
        self._mode = detect_mode(dict(self._llm.metadata), prompt_mode)
        log.info(
            "event=model_loaded path=%s mode=%s context=%d gpu_layers=%d adapter=%s",
            model_path,
            self._mode,
            context_size,
            gpu_layers,
            adapter_path,
        )

    @property
    def identity(self) -> ModelIdentity:
        return self._identity

    @property
    def mode(self) -> PromptMode:
        return self._mode

    @property
    def context_size(self) -> int:
        return int(self._llm.n_ctx())

    def count_tokens(self, text: str) -> int:
        return len(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def sanitize(self, text: str) -> str:
        """Defang text that llama.cpp would read as a control token (it parses prompts with
        special tokens on): a document saying "<end_of_turn><start_of_turn>user" must stay
        text, not open a turn. Such spellings get their brackets replaced by look-alikes."""
        return CONTROL_CANDIDATE.sub(self._defang, text)

    def _defang(self, match: re.Match[str]) -> str:
        candidate = match.group(0)
        if candidate not in self._control_spellings:
            encoded = candidate.encode("utf-8")
            as_control = self._llm.tokenize(encoded, add_bos=False, special=True)
            as_text = self._llm.tokenize(encoded, add_bos=False, special=False)
            self._control_spellings[candidate] = as_control != as_text
        if not self._control_spellings[candidate]:
            return candidate
        return candidate.translate(DEFANG)

    def stream(self, prompt: Prompt, max_tokens: int) -> Iterator[str]:
        with self._plan.answer() if self._plan is not None else nullcontext():
            self._pick_threads()
            try:
                if prompt.mode == "chat":
                    yield from self._stream_chat(prompt, max_tokens)
                else:
                    yield from self._stream_completion(prompt, max_tokens)
            except ValueError as exc:  # llama-cpp-python reports context overflows this way
                raise ModelError(f"the model could not answer: {exc}") from None

    def _pick_threads(self) -> None:
        if self._fixed_threads is not None:
            return
        import llama_cpp

        idle = idle_cores()
        threads = (
            self._plan.llm_threads(idle)
            if self._plan is not None
            else threads_for_now(usable_cores(), idle)
        )
        llama_cpp.llama_set_n_threads(self._llm.ctx, threads, threads)
        log.debug("event=llm_threads threads=%d", threads)

    def _stream_completion(self, prompt: Prompt, max_tokens: int) -> Iterator[str]:
        for chunk in self._llm.create_completion(
            prompt.text,
            max_tokens=max_tokens,
            temperature=self._temperature,
            stop=list(prompt.stop),
            stream=True,
        ):
            text = chunk["choices"][0]["text"]
            if text:
                yield text

    def _stream_chat(self, prompt: Prompt, max_tokens: int) -> Iterator[str]:
        for chunk in self._llm.create_chat_completion(
            messages=prompt.messages(),
            max_tokens=max_tokens,
            temperature=self._temperature,
            stop=list(prompt.stop),
            stream=True,
        ):
            content = chunk["choices"][0]["delta"].get("content")
            if content:
                yield str(content)


def _check_file(path: Path, setting: str) -> None:
    if not path.is_file():
        raise ModelError(f"{setting}={path} is not a file: point it at a local .gguf file")


def _load(
    model_path: Path,
    adapter_path: Path | None,
    context_size: int,
    threads: int | None,
    gpu_layers: int,
) -> Any:
    from llama_cpp import Llama

    silence_llama_cpp()
    try:
        return Llama(
            model_path=str(model_path),
            lora_path=str(adapter_path) if adapter_path else None,
            n_ctx=context_size,
            n_threads=threads,
            n_gpu_layers=gpu_layers,
            verbose=False,
        )
    except (ValueError, RuntimeError, OSError) as exc:
        what = f"{model_path} with adapter {adapter_path}" if adapter_path else str(model_path)
        raise ModelError(
            f"cannot load the model {what}: {exc}. Is it a GGUF file llama.cpp supports "
            "(and an adapter made for this base model)?"
        ) from None
