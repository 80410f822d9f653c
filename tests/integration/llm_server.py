"""llama-cpp-python's OpenAI-compatible server (`python -m llama_cpp.server`) in a child
process on a free loopback port: the external LLM server of the remote-backend tests."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from appliance.settings import Settings
from tests.support.net import free_port

START_TIMEOUT_S = 120
# The server gets the context window the appliance uses in process, so prompts fit alike.
DEFAULT_CONTEXT = int(Settings.model_fields["llm_context_size"].default)


@dataclass
class LlamaServer:
    url: str  # the OpenAI API base, as APPLIANCE_LLM_URL takes it
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def start_llama_server(model: Path, log_path: Path) -> LlamaServer:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        str(DEFAULT_CONTEXT),
    ]
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    server = LlamaServer(f"http://127.0.0.1:{port}/v1", process, log_path)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(
                f"llama_cpp.server exited with {process.returncode}:\n{server.log()}"
            )
        try:
            if httpx.get(f"{server.url}/models", timeout=5).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    server.stop()
    raise AssertionError(f"llama_cpp.server not up after {START_TIMEOUT_S} s:\n{server.log()}")
