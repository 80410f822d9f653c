"""The OpenAI-compatible backend against a real `python -m llama_cpp.server` serving the
default Gemma GGUF on loopback: the same question over the same index gives the same answer,
citations, sources and audit record (but the model identity) as the in-process model, through
`appliance ask` and through the appliance's own streaming `/v1` API."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from appliance.audit import AuditLog
from appliance.audit.records import entry_to_dict
from appliance.models import GEMMA_3_270M, prepare_llm
from tests.integration.cli import cli_env, run_json
from tests.integration.llm_server import LlamaServer, start_llama_server
from tests.integration.web_server import SAMPLES, WebServer, create_users, ingest

pytestmark = pytest.mark.integration

# Answered with a citation by the default model over the samples.
QUESTION = "When is the office open?"


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepare_llm(GEMMA_3_270M, tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def llm_server(tmp_path_factory: pytest.TempPathFactory, model: Path) -> Iterator[LlamaServer]:
    server = start_llama_server(model, tmp_path_factory.mktemp("llm") / "llama-server.log")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("remote") / "data"
    ingest(data, SAMPLES, "everyone")
    return data


def ask(data: Path, **env: str) -> dict[str, Any]:
    code, answer = run_json(data, "ask", QUESTION, "--user", "ann", **env)
    assert code == 0, answer
    return answer


@pytest.fixture(scope="module")
def answers(
    data: Path, model: Path, llm_server: LlamaServer
) -> tuple[dict[str, Any], dict[str, Any]]:
    """`ask --json` of the in-process model, then of the LLM server, over the same index."""
    return ask(data, APPLIANCE_LLM_MODEL=str(model)), ask(data, APPLIANCE_LLM_URL=llm_server.url)


def audit_entry(data: Path, record_id: str) -> dict[str, Any]:
    with AuditLog(data / "audit.sqlite3", read_only=True) as log:
        record = log.get(record_id)
    assert record is not None
    return entry_to_dict(record.entry)


def without_model(entry: dict[str, Any]) -> dict[str, Any]:
    """What must not depend on the backend: all but the model and the timings."""
    return {k: v for k, v in entry.items() if k not in ("model", "timings")}


def test_the_remote_backend_answers_and_audits_like_the_in_process_model(
    data: Path, model: Path, llm_server: LlamaServer, answers: tuple[dict[str, Any], ...]
) -> None:
    local, remote = answers
    assert local["outcome"] == remote["outcome"] == "answered"
    assert local["citations"], local  # the comparison covers citations too
    for key in ("answer", "citations", "sources", "message"):
        assert remote[key] == local[key], key
    assert local["model"]["backend"] == "llama.cpp" and local["model"]["sha256"]
    assert remote["model"] == {
        "backend": "openai-compatible",
        "path": None,
        "sha256": None,
        "adapter_sha256": None,
        "url": llm_server.url,
        "served_model": str(model),
    }
    local_entry = audit_entry(data, local["audit_id"])
    remote_entry = audit_entry(data, remote["audit_id"])
    # Same passages, ranks, hashes, cited flags, prompt sha256 and answer.
    assert without_model(remote_entry) == without_model(local_entry)
    assert remote_entry["model"]["backend"] == "openai-compatible"
    assert remote_entry["model"]["url"] == llm_server.url
    assert not list((data / "models").glob("*.gguf"))  # no local GGUF was prepared


@pytest.fixture(scope="module")
def remote_web(
    tmp_path_factory: pytest.TempPathFactory, data: Path, llm_server: LlamaServer
) -> Iterator[WebServer]:
    """`appliance serve` answering through the LLM server, over a copy of the same index."""
    root = tmp_path_factory.mktemp("remote-web")
    web_data = root / "data"
    shutil.copytree(data, web_data, ignore=shutil.ignore_patterns("audit.sqlite3*"))
    server = WebServer(
        url="",
        root=root,
        data_dir=web_data,
        docs_dir=SAMPLES,
        secret_path=root / "unused",
        log_path=root / "server.log",
        keys=create_users(web_data),
        env=cli_env(web_data, APPLIANCE_LLM_URL=llm_server.url),
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def stream_answer(server: WebServer, key: str) -> tuple[str, dict[str, Any]]:
    """The joined content deltas of a streamed `/v1/chat/completions`, and its last chunk."""
    body = {"messages": [{"role": "user", "content": QUESTION}], "stream": True}
    text, last = "", {}
    with server.client(key) as http, http.stream("POST", "/v1/chat/completions", json=body) as r:
        assert r.status_code == 200, r.read()
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line.removeprefix("data: "))
            assert "error" not in chunk, chunk
            text += chunk["choices"][0]["delta"].get("content") or ""
            last = chunk
    return text, last


def test_the_served_api_streams_the_remote_models_recorded_answer(
    remote_web: WebServer, llm_server: LlamaServer, answers: tuple[dict[str, Any], ...]
) -> None:
    health = httpx.get(f"{remote_web.url}/healthz", timeout=30).json()
    assert health["llm_reachable"] is True
    streamed, last = stream_answer(remote_web, remote_web.keys["bob"])
    entry = audit_entry(remote_web.data_dir, last["audit_id"])
    assert streamed == entry["answer"] and entry["channel"] == "api"
    assert last["model_identity"] == answers[1]["model"]
    assert last["sources"] == answers[1]["sources"]
    # The same question as `ask` asked: the server answers it from its prompt cache, whose
    # last token is computed on another kernel path, so the wording may differ; the passages
    # and what makes it an answer do not.
    assert last["outcome"] == answers[1]["outcome"] == "answered"
    assert streamed and set(last["citations"]) <= {s["n"] for s in last["sources"]}
