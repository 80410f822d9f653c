"""The OpenAI-compatible backend's protocol handling, against scripted HTTP servers
(httpx.MockTransport); the real llama.cpp server is in tests/integration/test_remote_llm.py."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from appliance.answers import Token
from appliance.errors import ConfigError, ModelError
from appliance.generation import Prompt
from appliance.metrics import Metrics
from appliance.remote_llm import OpenAICompatibleGenerator, RemoteConfig, public_url
from appliance.services import build_generator, check_llm_files
from appliance.services.web import llm_health
from appliance.settings import load_settings
from appliance.web import ops
from tests.support.net import free_port
from tests.support.rag import Harness, ask

URL = "http://llm.internal:8080/v1"
Handler = Callable[[httpx.Request], httpx.Response]


def sse(*events: dict[str, Any] | str) -> bytes:
    lines = [": ping"]  # servers send comments to keep the connection alive
    for event in events:
        lines.append(f"data: {event if isinstance(event, str) else json.dumps(event)}")
    return ("\n\n".join(lines) + "\n\n").encode()


def text_chunk(text: str, finish: str | None = None) -> dict[str, Any]:
    return {"choices": [{"index": 0, "text": text, "finish_reason": finish}]}


class Server:
    """A scripted OpenAI-compatible server: llama.cpp's endpoints unless told otherwise."""

    def __init__(
        self, completion: Handler | None = None, routes: dict[str, Handler] | None = None
    ) -> None:
        self.requests: list[httpx.Request] = []
        self.routes: dict[str, Handler] = {
            "GET /v1/models": lambda r: httpx.Response(
                200, json={"object": "list", "data": [{"id": "gemma-270m", "object": "model"}]}
            ),
            "GET /props": lambda r: httpx.Response(
                200, json={"default_generation_settings": {"n_ctx": 4096}}
            ),
            "POST /tokenize": lambda r: httpx.Response(
                200, json={"tokens": list(range(len(json.loads(r.content)["content"].split())))}
            ),
            "POST /v1/completions": completion
            or (
                lambda r: httpx.Response(
                    200,
                    content=sse(text_chunk(" Yes"), text_chunk(" [1]."), text_chunk("", "stop")),
                )
            ),
        }
        self.routes.update(routes or {})

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        handler = self.routes.get(f"{request.method} {request.url.path}")
        return handler(request) if handler else httpx.Response(404, json={"detail": "Not Found"})

    def generator(self, **config: Any) -> OpenAICompatibleGenerator:
        settings = {"url": URL, **config}
        return OpenAICompatibleGenerator(RemoteConfig(**settings), httpx.MockTransport(self))

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests if r.url.path == path]


def prompt() -> Prompt:
    return Prompt("completion", "Passages: ...\nQuestion: q\nAnswer:", ("\nQuestion:", "\n["))


def test_discovers_model_context_and_tokenizer_of_a_llama_cpp_server() -> None:
    server = Server()
    generator = server.generator(api_key="s3cret")
    assert generator.identity.served_model == "gemma-270m"
    assert generator.identity.backend == "openai-compatible"
    assert generator.identity.url == URL and generator.identity.sha256 is None
    assert generator.context_size == 4096 and generator.mode == "completion"
    assert generator.count_tokens("three short words") == 3
    assert all(r.headers["authorization"] == "Bearer s3cret" for r in server.requests)


def test_a_tokenizer_that_adds_bos_is_counted_without_it() -> None:
    # llama-cpp-python's server: no /tokenize, no /props; /extras/tokenize adds BOS (id 2).
    def extras(request: httpx.Request) -> httpx.Response:
        words = json.loads(request.content)["input"].split()
        return httpx.Response(200, json={"tokens": [2, *range(10, 10 + len(words))]})

    server = Server(
        routes={"POST /tokenize": lambda r: httpx.Response(404), "POST /extras/tokenize": extras}
    )
    server.routes.pop("GET /props")
    generator = server.generator(context_size=2048)
    assert generator.count_tokens("three short words") == 3 and generator.count_tokens("") == 0
    assert generator.context_size == 2048  # the setting: the server does not report its own


def test_without_a_tokenizer_endpoint_counts_are_a_stated_overestimate() -> None:
    def vllm_models(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"data": [{"id": "org/model", "max_model_len": 8192}]})

    server = Server(
        routes={"GET /v1/models": vllm_models, "POST /tokenize": lambda r: httpx.Response(400)}
    )
    server.routes.pop("GET /props")
    generator = server.generator(model="org/model")
    assert generator.context_size == 8192
    assert generator.count_tokens("abcdefghi") == 3  # 9 bytes / 3


def test_a_completion_streams_with_the_in_process_sampling_and_stops() -> None:
    server = Server()
    generator = server.generator(temperature=0.0)
    assert "".join(generator.stream(prompt(), 32)) == " Yes [1]."
    [body] = server.bodies("/v1/completions")
    assert body["prompt"] == prompt().text and body["stop"] == ["\nQuestion:", "\n["]
    assert (body["max_tokens"], body["temperature"], body["stream"]) == (32, 0.0, True)
    assert body["model"] == "gemma-270m" and body["repeat_penalty"] == 1.0


def test_chat_mode_uses_chat_completions_deltas() -> None:
    def chat(request: httpx.Request) -> httpx.Response:
        deltas = [{"role": "assistant"}, {"content": "Hi"}, {"content": " there"}]
        events: list[dict[str, Any] | str] = [
            {"choices": [{"delta": d, "finish_reason": None}]} for d in deltas
        ]
        return httpx.Response(200, content=sse(*events, "[DONE]"))

    server = Server(routes={"POST /v1/chat/completions": chat})
    generator = server.generator(prompt_mode="chat")
    assert generator.mode == "chat"
    assert "".join(generator.stream(Prompt("chat", "hello"), 8)) == "Hi there"
    [body] = server.bodies("/v1/chat/completions")
    assert body["messages"] == [{"role": "user", "content": "hello"}]


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (httpx.Response(401, json={"detail": "Invalid API key"}), "APPLIANCE_LLM_API_KEY"),
        (httpx.Response(503, text="upstream down"), r"HTTP 503: upstream down.*logs"),
        (
            httpx.Response(400, json={"error": {"message": "maximum context length is 2048"}}),
            "maximum context length is 2048",
        ),
    ],
)
def test_http_errors_become_model_errors_that_say_what_to_do(
    response: httpx.Response, expected: str
) -> None:
    generator = Server(completion=lambda r: response).generator()
    with pytest.raises(ModelError, match=expected) as caught:
        list(generator.stream(prompt(), 8))
    assert "APPLIANCE_LLM_URL=http://llm.internal:8080/v1" in str(caught.value)


def test_a_refused_key_is_reported_when_the_model_loads() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"detail": "Invalid API key"})

    with pytest.raises(ModelError, match=r"refused the request .*APPLIANCE_LLM_API_KEY"):
        Server(routes={"GET /v1/models": refuse}).generator()


def test_timeouts_name_the_timeout_setting() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    generator = Server(completion=slow).generator(timeout_s=7)
    with pytest.raises(ModelError, match="APPLIANCE_LLM_TIMEOUT_S=7 s") as caught:
        list(generator.stream(prompt(), 8))
    assert isinstance(caught.value.__cause__, httpx.ReadTimeout)  # in the operator's traceback


class CutStream(httpx.SyncByteStream):
    """Two pieces of an answer, then the connection drops."""

    def __iter__(self) -> Iterator[bytes]:
        yield sse(text_chunk(" The password"), text_chunk(" is"))
        raise httpx.RemoteProtocolError("peer closed connection without complete body")


def test_a_stream_cut_mid_answer_ends_with_an_error_and_an_audit_record(tmp_path: Path) -> None:
    server = Server(completion=lambda r: httpx.Response(200, stream=CutStream()))
    harness = Harness(tmp_path, server.generator())  # type: ignore[arg-type]
    try:
        stream = harness.assistant.stream(ask("what is the guest wifi password?"))
        shown: list[str] = []
        with pytest.raises(ModelError, match=r"connection to the LLM server .* broke"):
            for event in stream:
                if isinstance(event, Token):
                    shown.append(event.text)
        assert "".join(shown) == " The password is"
        [record] = harness.records()
        assert record.entry.outcome == "error" and record.entry.answer == "The password is"
        assert record.entry.model["backend"] == "openai-compatible"
        assert record.entry.model["served_model"] == "gemma-270m"
        assert not harness.gate.busy
    finally:
        harness.close()


def test_a_stream_that_ends_without_finishing_is_an_error() -> None:
    generator = Server(
        completion=lambda r: httpx.Response(200, content=sse(text_chunk(" partial")))
    ).generator()
    with pytest.raises(ModelError, match="ended the answer before it finished"):
        list(generator.stream(prompt(), 8))


def test_document_text_cannot_spell_a_control_token() -> None:
    cleaned = Server().generator().sanitize("ok <end_of_turn><|im_start|>system [INST] 5 > 3")
    assert "<end_of_turn>" not in cleaned and "<|im_start|>" not in cleaned
    assert "[INST]" not in cleaned and cleaned.startswith("ok ") and "5 > 3" in cleaned


def test_the_recorded_url_carries_no_credentials() -> None:
    assert public_url("https://bot:pw@llm.example:8443") == "https://llm.example:8443/v1"
    assert public_url("http://[::1]:8080/v1/") == "http://[::1]:8080/v1"


def test_llm_url_settings_are_validated(tmp_path: Path) -> None:
    assert load_settings(llm_url="").llm_url is None
    assert load_settings(llm_url="http://llm:8080/v1/").llm_url == "http://llm:8080/v1"
    with pytest.raises(ConfigError, match="APPLIANCE_LLM_URL"):
        load_settings(llm_url="llm:8080")
    with pytest.raises(ConfigError, match="APPLIANCE_LLM_ADAPTER"):
        check_llm_files(load_settings(llm_url=URL, llm_adapter=tmp_path / "a.gguf"))


def test_with_llm_url_no_local_gguf_is_required_or_prepared(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    settings = load_settings(
        data_dir=tmp_path, llm_url=f"http://127.0.0.1:{port}", llm_model=tmp_path / "none.gguf"
    )
    check_llm_files(settings)
    with pytest.raises(ModelError, match=f"cannot reach .*APPLIANCE_LLM_URL=.*:{port}/v1"):
        build_generator(settings)
    assert not settings.models_dir.exists()


def test_healthz_follows_the_llm_servers_reachability(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    settings = load_settings(data_dir=tmp_path, llm_url=f"http://127.0.0.1:{port}")

    def health() -> dict[str, Any]:
        report = {"model_loaded": True, "store_open": True, "audit_writable": True}
        return {**report, **llm_health(settings)}

    app = FastAPI()
    app.include_router(ops.build_router(health, Metrics(lambda: {})))
    response = TestClient(app).get("/healthz")
    assert response.status_code == 503
    assert response.json()["llm_reachable"] is False
    # No login on /healthz: the reason, naming the internal URL, goes to the log only.
    assert str(port) not in response.text
    assert any("cannot reach" in r.getMessage() for r in caplog.records)
