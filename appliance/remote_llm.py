"""An OpenAI-compatible LLM server (llama.cpp's server, llama-cpp-python's, vLLM, TGI) over
HTTP with httpx, behind the same `Generator` protocol as the in-process model.

`APPLIANCE_LLM_URL` is the base of the server's OpenAI API, as OpenAI clients take it
(http://llm:8080/v1); a URL without the trailing /v1 gets it. Tokenizer and context-size
endpoints live at the server's root (the URL without /v1).

What the prompt fitting needs is asked of the server when it can tell:
- token counts: llama.cpp's `POST /tokenize`, llama-cpp-python's `POST /extras/tokenize`, or
  vLLM's `POST /tokenize`, whichever answers first. A server with none of them (TGI's OpenAI
  API) gets an estimate of one token per 3 bytes of UTF-8, which overcounts English text (so
  fewer passages fit) but can undercount other scripts: the server then refuses the prompt
  and the question fails with its message. Lower APPLIANCE_LLM_CONTEXT_SIZE in that case.
- context size: vLLM's `max_model_len` in `/v1/models`, or llama.cpp's `n_ctx` in `/props`;
  otherwise APPLIANCE_LLM_CONTEXT_SIZE, which must then match the server's.
- prompt mode: the server's chat template is not reliably visible (llama.cpp reports a
  fallback template for base models), so `auto` means completion here; set
  APPLIANCE_LLM_PROMPT_MODE=chat for instruct models.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from appliance.errors import ModelError
from appliance.generation import CONTROL_CANDIDATE, DEFANG, ModelIdentity, Prompt, PromptMode

log = logging.getLogger(__name__)

REMOTE_BACKEND = "openai-compatible"
SETTING = "APPLIANCE_LLM_URL"
BYTES_PER_TOKEN_ESTIMATE = 3
# Sampling exactly as llama-cpp-python's in-process `create_completion` defaults, so the same
# prompt gives the same text: its server would otherwise apply repeat_penalty=1.1. Servers
# that do not know these llama.cpp names (vLLM, TGI) ignore them.
LLAMA_CPP_SAMPLING = {"top_p": 0.95, "top_k": 40, "min_p": 0.05, "repeat_penalty": 1.0}
HEALTH_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class RemoteConfig:
    url: str
    api_key: str | None = None
    model: str | None = None
    timeout_s: float = 120.0
    context_size: int = 2048  # used when the server does not report its own
    temperature: float = 0.0
    prompt_mode: str = "auto"


def api_base(url: str) -> str:
    """The OpenAI API base: the URL with one trailing /v1."""
    base = url.rstrip("/")
    return base if base.endswith("/v1") else f"{base}/v1"


def server_root(url: str) -> str:
    return api_base(url).removesuffix("/v1")


def public_url(url: str) -> str:
    """The API base without user:password@, as recorded in the audit log."""
    parts = urlsplit(api_base(url))
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _client(config: RemoteConfig, transport: httpx.BaseTransport | None) -> httpx.Client:
    headers = {"authorization": f"Bearer {config.api_key}"} if config.api_key else {}
    return httpx.Client(
        base_url=server_root(config.url),
        headers=headers,
        timeout=httpx.Timeout(config.timeout_s, connect=min(config.timeout_s, 10.0)),
        transport=transport,
    )


class OpenAICompatibleGenerator:
    """A model served over HTTP. The server may serve other clients too; this process still
    sends one request at a time (the caller's gate)."""

    def __init__(self, config: RemoteConfig, transport: httpx.BaseTransport | None = None):
        self._config = config
        self._where = f"{SETTING}={public_url(config.url)}"
        self._http = _client(config, transport)
        listed = self._list_models()
        self._model = config.model or _first_model(listed, self._where)
        self._context_size = self._server_context(listed) or config.context_size
        self._mode: PromptMode = "chat" if config.prompt_mode == "chat" else "completion"
        self._tokenize: _Tokenizer | None = self._find_tokenizer()
        self._identity = ModelIdentity(
            path=None,
            sha256=None,
            backend=REMOTE_BACKEND,
            url=public_url(config.url),
            served_model=self._model,
        )
        log.info(
            "event=remote_model url=%s model=%s mode=%s context=%d tokenizer=%s",
            self._identity.url,
            self._model,
            self._mode,
            self._context_size,
            self._tokenize.path if self._tokenize else "estimate",
        )

    @property
    def identity(self) -> ModelIdentity:
        return self._identity

    @property
    def mode(self) -> PromptMode:
        return self._mode

    @property
    def context_size(self) -> int:
        return self._context_size

    def count_tokens(self, text: str) -> int:
        if self._tokenize is None:
            return math.ceil(len(text.encode("utf-8")) / BYTES_PER_TOKEN_ESTIMATE)
        try:
            tokens = self._tokenize.tokens(self._http, text, self._where)
        except httpx.HTTPError as exc:
            raise _transport_error(exc, self._where, self._config.timeout_s) from exc
        return max(len(tokens) - self._tokenize.offset, 0)

    def sanitize(self, text: str) -> str:
        """The server's control tokens are not known here, so every spelling shaped like one
        (<end_of_turn>, <|im_start|>, [INST], and also harmless markup such as <b>) gets
        look-alike brackets: document text can never open or close a turn."""
        return CONTROL_CANDIDATE.sub(lambda match: match.group(0).translate(DEFANG), text)

    def stream(self, prompt: Prompt, max_tokens: int) -> Iterator[str]:
        body: dict[str, Any] = {
            "model": self._model,
            "max_tokens": max_tokens,
            "temperature": self._config.temperature,
            "stop": list(prompt.stop),
            "stream": True,
            **LLAMA_CPP_SAMPLING,
        }
        if prompt.mode == "chat":
            path, body["messages"] = "/v1/chat/completions", prompt.messages()
        else:
            path, body["prompt"] = "/v1/completions", prompt.text
        try:
            with self._http.stream("POST", path, json=body) as response:
                _raise_for_status(response, self._where)
                yield from _pieces(response.iter_lines(), prompt.mode, self._where)
        except httpx.HTTPError as exc:
            raise _transport_error(exc, self._where, self._config.timeout_s) from exc

    def close(self) -> None:
        self._http.close()

    def _list_models(self) -> list[dict[str, Any]]:
        data = self._get_json("/v1/models")
        models = data.get("data") if isinstance(data, dict) else None
        return [m for m in models if isinstance(m, dict)] if isinstance(models, list) else []

    def _server_context(self, listed: list[dict[str, Any]]) -> int | None:
        for entry in listed:
            if entry.get("id") == self._model and isinstance(entry.get("max_model_len"), int):
                return int(entry["max_model_len"])  # vLLM
        try:
            props = self._get_json("/props")  # llama.cpp server
        except ModelError:
            return None
        if not isinstance(props, dict):
            return None
        settings = props.get("default_generation_settings")
        n_ctx = settings.get("n_ctx") if isinstance(settings, dict) else props.get("n_ctx")
        return int(n_ctx) if isinstance(n_ctx, int) and n_ctx > 0 else None

    def _find_tokenizer(self) -> _Tokenizer | None:
        for candidate in TOKENIZERS:
            try:
                response = self._http.post(candidate.path, json=candidate.body(""))
            except httpx.HTTPError as exc:
                raise _transport_error(exc, self._where, self._config.timeout_s) from exc
            if response.status_code in (401, 403) or response.status_code >= 500:
                _raise_for_status(response, self._where)
            tokens = _json_or_text(response) if response.status_code < 400 else None
            if isinstance(tokens, dict) and isinstance(tokens.get("tokens"), list):
                # Some endpoints add BOS; counting it once per passage would misfit prompts.
                offset = len(tokens["tokens"])
                return _Tokenizer(candidate.path, candidate.body_key, candidate.extra, offset)
        log.warning(
            "event=remote_tokenizer_missing url=%s estimate=bytes/%d",
            public_url(self._config.url),
            BYTES_PER_TOKEN_ESTIMATE,
        )
        return None

    def _get_json(self, path: str) -> Any:
        try:
            response = self._http.get(path)
        except httpx.HTTPError as exc:
            raise _transport_error(exc, self._where, self._config.timeout_s) from exc
        _raise_for_status(response, self._where)
        return _json(response, self._where)


@dataclass(frozen=True)
class _Tokenizer:
    path: str
    body_key: str
    extra: tuple[tuple[str, Any], ...] = ()
    offset: int = 0

    def body(self, text: str) -> dict[str, Any]:
        return {self.body_key: text, **dict(self.extra)}

    def tokens(self, http: httpx.Client, text: str, where: str) -> list[Any]:
        response = http.post(self.path, json=self.body(text))
        _raise_for_status(response, where)
        payload = _json(response, where)
        tokens = payload.get("tokens") if isinstance(payload, dict) else None
        if not isinstance(tokens, list):
            raise ModelError(f"the LLM server at {where}: {self.path} returned no token list")
        return tokens


# Probed in this order; the first that answers counts tokens for the process's lifetime.
TOKENIZERS = (
    _Tokenizer("/tokenize", "content", (("add_special", False), ("parse_special", True))),
    _Tokenizer("/extras/tokenize", "input"),
    _Tokenizer("/tokenize", "prompt", (("add_special_tokens", False),)),
)


def _first_model(listed: list[dict[str, Any]], where: str) -> str:
    for entry in listed:
        if isinstance(entry.get("id"), str) and entry["id"]:
            return str(entry["id"])
    raise ModelError(
        f"{where} lists no model at /v1/models: set APPLIANCE_LLM_REMOTE_MODEL to the name "
        "of the model to use"
    )


def _pieces(lines: Iterator[str], mode: PromptMode, where: str) -> Iterator[str]:
    """Text pieces of an OpenAI server-sent event stream, until [DONE] or a finish_reason."""
    finished = False
    for line in lines:
        if not line.startswith("data:"):
            continue  # comments (": ping"), event names, blank separators
        data = line.removeprefix("data:").strip()
        if data == "[DONE]":
            return
        chunk = _event(data, where)
        choices = chunk.get("choices") or [{}]
        choice = choices[0] if isinstance(choices[0], dict) else {}
        text = (choice.get("delta") or {}).get("content") if mode == "chat" else choice.get("text")
        if text:
            yield str(text)
        finished = finished or bool(choice.get("finish_reason"))
    if not finished:
        raise ModelError(
            f"the LLM server at {where} ended the answer before it finished: check the "
            "server's logs (it may have restarted or run out of memory), then ask again"
        )


def _event(data: str, where: str) -> dict[str, Any]:
    try:
        chunk = json.loads(data)
    except json.JSONDecodeError:
        raise ModelError(f"the LLM server at {where} sent a malformed stream event") from None
    if not isinstance(chunk, dict):
        raise ModelError(f"the LLM server at {where} sent a malformed stream event")
    if "error" in chunk:
        raise ModelError(f"the LLM server at {where} failed mid-answer: {_message(chunk)}")
    return chunk


def _raise_for_status(response: httpx.Response, where: str) -> None:
    if response.status_code < 400:
        return
    response.read()
    detail = _message(_json_or_text(response))
    status = response.status_code
    if status in (401, 403):
        raise ModelError(
            f"the LLM server at {where} refused the request (HTTP {status}: {detail}): set "
            "APPLIANCE_LLM_API_KEY to a key it accepts"
        )
    if status >= 500:
        raise ModelError(
            f"the LLM server at {where} failed (HTTP {status}: {detail}): check the server "
            "and its logs, then ask again"
        )
    raise ModelError(f"the LLM server at {where} rejected the request (HTTP {status}: {detail})")


def _transport_error(exc: httpx.HTTPError, where: str, timeout_s: float) -> ModelError:
    if isinstance(exc, httpx.TimeoutException):
        return ModelError(
            f"the LLM server at {where} did not answer within APPLIANCE_LLM_TIMEOUT_S="
            f"{timeout_s:g} s: check that it is running and not overloaded, or raise "
            "APPLIANCE_LLM_TIMEOUT_S"
        )
    if isinstance(exc, httpx.ConnectError):
        return ModelError(
            f"cannot reach the LLM server at {where} ({exc}): start it, or fix "
            f"{SETTING} (and check that this machine may connect to it)"
        )
    return ModelError(
        f"the connection to the LLM server at {where} broke ({type(exc).__name__}: {exc}): "
        "check the server's logs, then ask again"
    )


def _json(response: httpx.Response, where: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise ModelError(
            f"{where}: {response.request.url.path} did not return JSON; is this the base URL "
            "of an OpenAI-compatible server (e.g. http://llm:8080/v1)?"
        ) from None


def _json_or_text(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text[:300]


def _message(payload: Any) -> str:
    """The error message of an OpenAI ({"error": {"message"}}) or FastAPI ({"detail"}) body."""
    if isinstance(payload, dict):
        error = payload.get("error", payload.get("detail", payload.get("message")))
        if isinstance(error, dict):
            return str(error.get("message", error))
        if error is not None:
            return str(error)
    return str(payload).strip() or "no details"


def server_problem(config: RemoteConfig) -> str | None:
    """Why the server cannot answer now (unreachable, refusing the key...), or None: /healthz."""
    probe = RemoteConfig(
        config.url, config.api_key, timeout_s=min(config.timeout_s, HEALTH_TIMEOUT_S)
    )
    where = f"{SETTING}={public_url(config.url)}"
    try:
        with _client(probe, None) as http:
            response = http.get("/v1/models")
            _raise_for_status(response, where)
    except httpx.HTTPError as exc:
        return str(_transport_error(exc, where, probe.timeout_s))
    except ModelError as exc:
        return str(exc)
    return None
