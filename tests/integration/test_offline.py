"""Offline proof: ingest, ask and one served API request in a network namespace that has only
loopback (`ip netns`): no model hub, no telemetry, no DNS.

Every appliance process runs under a Python audit hook that logs each name lookup and each
socket connection it makes, so an attempt to phone home is caught even where the library
would swallow the failure (Gradio's version check does): only loopback and Unix sockets
may appear. Needs root (CI runs as root); without it the test fails, it does not skip.
"""

from __future__ import annotations

import json
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from appliance.models import GEMMA_3_270M, prepare_llm
from tests.integration.cli import cli_env
from tests.integration.web_server import SAMPLES, create_users

pytestmark = pytest.mark.integration

QUESTION = "How many days of paid holiday does an employee get per year?"
SERVE_TIMEOUT_S = 240
LOCAL_HOSTS = {"127.0.0.1", "::1", "localhost"}

# Runs `appliance ARGS...` with every name lookup and socket connection appended, as JSON
# lines, to $NETWORK_LOG.
GUARDED_APPLIANCE = """
import json, os, runpy, sys
log = open(os.environ["NETWORK_LOG"], "a", encoding="utf-8")
LOOKUPS = ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex",
           "socket.gethostbyaddr")
def hook(event, args):
    if event in LOOKUPS:
        log.write(json.dumps({"event": event, "host": str(args[0])}) + "\\n")
        log.flush()
    elif event == "socket.connect":
        address = args[1]
        host = address if isinstance(address, (str, bytes)) else address[0]
        family = "unix" if isinstance(address, (str, bytes)) else "inet"
        log.write(json.dumps({"event": event, "host": str(host), "family": family}) + "\\n")
        log.flush()
sys.addaudithook(hook)
sys.argv = ["appliance", *sys.argv[1:]]
runpy.run_module("appliance", run_name="__main__", alter_sys=True)
"""

# Waits for the server's /healthz, then asks one question with an API key; prints the reply.
API_CLIENT = """
import json, sys, time
import httpx
url, key, question, timeout = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
deadline, last = time.monotonic() + timeout, "no answer"
while time.monotonic() < deadline:
    try:
        health = httpx.get(url + "/healthz", timeout=5)
        if health.status_code == 200:
            break
        last = health.text
    except httpx.HTTPError as exc:
        last = repr(exc)
    time.sleep(0.5)
else:
    sys.exit(f"/healthz not ready after {timeout} s: {last}")
reply = httpx.post(url + "/v1/chat/completions", timeout=300,
                   headers={"authorization": "Bearer " + key},
                   json={"messages": [{"role": "user", "content": question}]})
print(json.dumps({"status": reply.status_code, "body": reply.json()}))
"""


@dataclass
class Namespace:
    name: str
    root: Path
    env: dict[str, str]

    def command(self, *args: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *args]

    def appliance(self, *args: str) -> list[str]:
        return self.command(sys.executable, "-c", GUARDED_APPLIANCE, *args)

    def run(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.appliance(*args),
            env=self.env,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def network_log(self) -> list[dict[str, str]]:
        path = Path(self.env["NETWORK_LOG"])
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        return [json.loads(line) for line in lines]


def create_namespace() -> str:
    name = f"appliance-offline-{secrets.token_hex(4)}"
    for command in (["ip", "netns", "add", name], ["ip", "-n", name, "link", "set", "lo", "up"]):
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
            pytest.fail(
                f"the offline proof needs a network namespace, and `{' '.join(command)}` failed "
                f"({result.stderr.strip() or result.returncode}): run the tests as root, with "
                "iproute2 installed (CI does both)",
                pytrace=False,
            )
    return name


@pytest.fixture(scope="module")
def namespace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Namespace]:
    root = tmp_path_factory.mktemp("offline")
    model = prepare_llm(GEMMA_3_270M, root / "models")
    name = create_namespace()
    env = cli_env(
        root / "data", APPLIANCE_LLM_MODEL=str(model), NETWORK_LOG=str(root / "network.jsonl")
    )
    try:
        yield Namespace(name, root, env)
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


def json_of(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def test_the_namespace_has_no_network(namespace: Namespace) -> None:
    probe = (
        "import socket\n"
        "for host in ('huggingface.co', 'api.gradio.app'):\n"
        "    try:\n"
        "        socket.getaddrinfo(host, 443)\n"
        "        print('resolved', host)\n"
        "    except socket.gaierror:\n"
        "        pass\n"
        "try:\n"
        "    socket.create_connection(('1.1.1.1', 53), timeout=3)\n"
        "    print('connected')\n"
        "except OSError:\n"
        "    pass\n"
    )
    result = subprocess.run(
        namespace.command(sys.executable, "-c", probe),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0 and result.stdout == "", result.stdout + result.stderr


def test_ingest_ask_and_serve_work_with_only_loopback(namespace: Namespace) -> None:
    docs = namespace.root / "docs"
    docs.mkdir()
    for sample in SAMPLES.iterdir():
        (docs / sample.name).write_bytes(sample.read_bytes())
    ingested = json_of(namespace.run("ingest", str(docs), "--json"))
    assert ingested["files"]["new"] == len(list(docs.iterdir())) and not ingested["files"]["failed"]

    answer = json_of(namespace.run("ask", QUESTION, "--json"))
    assert answer["outcome"] == "answered" and "28" in answer["answer"]
    assert answer["model"]["backend"] == "llama.cpp"

    key = create_users(namespace.root / "data")["bob"]
    reply = serve_and_ask(namespace, key)
    assert reply["status"] == 200, reply
    body = reply["body"]
    assert body["outcome"] == "answered" and "28" in body["choices"][0]["message"]["content"]
    assert body["audit_id"] and body["sources"]

    remote = [
        entry
        for entry in namespace.network_log()
        if entry.get("family") != "unix" and entry["host"] not in LOCAL_HOSTS
    ]
    assert remote == [], f"the appliance tried to reach the network: {remote}"


def serve_and_ask(namespace: Namespace, key: str) -> dict[str, Any]:
    port, log_path = 7860, namespace.root / "server.log"
    with log_path.open("ab") as log:
        server = subprocess.Popen(
            namespace.appliance("serve", "--host", "127.0.0.1", "--port", str(port)),
            env=namespace.env,
            cwd=namespace.root,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        client = subprocess.run(
            namespace.command(
                sys.executable,
                "-c",
                API_CLIENT,
                f"http://127.0.0.1:{port}",
                key,
                QUESTION,
                str(SERVE_TIMEOUT_S),
            ),
            capture_output=True,
            text=True,
            timeout=SERVE_TIMEOUT_S + 330,
            check=False,
        )
        server_log = log_path.read_text(encoding="utf-8", errors="replace")
        assert client.returncode == 0, f"{client.stderr}\nserver log:\n{server_log}"
        assert server.poll() is None, f"the server exited:\n{server_log}"
        reply: dict[str, Any] = json.loads(client.stdout)
        return reply
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)
