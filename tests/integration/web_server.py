"""A real `appliance serve` in a child process, on a free loopback port, for the web tests.

The data directory is prepared the way an operator would: the sample documents (in a watched
documents folder, readable by everyone) and a board-only secret ingested with the CLI, users
and API keys created in the user database, then the server started and waited for.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from appliance.auth import Role, UserStore
from appliance.models import GEMMA_3_270M, prepare_llm
from tests.integration.cli import cli_env, command, run_cli
from tests.support.net import free_port

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
PASSWORD = "correct horse battery staple"
CODEWORD = "NIGHTJAR"
SECRET_TEXT = (
    "Board minutes, strictly confidential.\n\n"
    f"The acquisition of Contoso Robotics is called Project {CODEWORD}. "
    f"Project {CODEWORD} closes on 14 November and its budget is 41 million euros.\n"
)
START_TIMEOUT_S = 180
LOGIN_MAX_FAILURES = 3
SERVER_ENV = {
    "APPLIANCE_LLM_MAX_TOKENS": "48",
    "APPLIANCE_LOGIN_MAX_FAILURES": str(LOGIN_MAX_FAILURES),
    "APPLIANCE_LOGIN_LOCKOUT_S": "300",
    "APPLIANCE_WATCH_DEBOUNCE_S": "0.5",
    "APPLIANCE_LOG_LEVEL": "INFO",
}
# name -> (groups, role); every one has PASSWORD. "mallory" exists to be locked out and
# "frank" to be removed.
USERS: dict[str, tuple[list[str], Role]] = {
    "alice": (["everyone"], Role.ADMIN),
    "bob": (["everyone"], Role.USER),
    "carol": (["everyone"], Role.AUDITOR),
    "dana": (["everyone", "board"], Role.USER),
    "mallory": (["everyone"], Role.USER),
    "frank": (["everyone"], Role.USER),
}
KEY_OWNERS = ("bob", "dana")


@dataclass
class WebServer:
    url: str
    root: Path
    data_dir: Path
    docs_dir: Path
    secret_path: Path
    log_path: Path
    keys: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    password: str = PASSWORD
    env: dict[str, str] = field(default_factory=dict)

    def doc_id(self, path: Path) -> str:
        """A document's id is the sha256 of its bytes."""
        return hashlib.sha256(path.read_bytes()).hexdigest()

    @property
    def model(self) -> Path:
        return Path(self.env["APPLIANCE_LLM_MODEL"])

    def sample(self, name: str) -> Path:
        return self.docs_dir / name

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def client(self, key: str | None = None, **kwargs: Any) -> httpx.Client:
        headers = {"authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=120, **kwargs)

    def session_cookie(self, user: str, password: str = PASSWORD) -> str:
        """Log in through the form, as a browser does; the value of the session cookie."""
        with self.client(follow_redirects=False) as http:
            response = http.post("/login", data={"username": user, "password": password})
        assert response.status_code == 303, (response.status_code, response.text[:300])
        cookie = response.cookies.get("appliance_session")
        assert cookie, response.headers
        return cookie

    def as_user(self, user: str, **kwargs: Any) -> httpx.Client:
        """A client with `user`'s browser session."""
        cookies = {"appliance_session": self.session_cookie(user)}
        return self.client(cookies=cookies, follow_redirects=False, **kwargs)

    def ask(self, key: str, question: str) -> httpx.Response:
        with self.client(key) as http:
            return http.post(
                "/v1/chat/completions", json={"messages": [{"role": "user", "content": question}]}
            )

    def start(self) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command("serve", "--host", "127.0.0.1", "--port", str(port)),
                env=self.env,
                cwd=self.root,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.wait_healthy()

    def wait_healthy(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        last = "no answer"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"the server exited with {self.process.returncode}:\n{self.log()}"
                )
            try:
                response = httpx.get(f"{self.url}/healthz", timeout=5)
                if response.status_code == 200:
                    return
                last = f"{response.status_code} {response.text}"
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.5)
        self.stop()
        raise AssertionError(
            f"/healthz not 200 after {START_TIMEOUT_S} s ({last}); server log:\n{self.log()}"
        )

    def stop(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def gradio_call(http: httpx.Client, api_name: str, data: list[Any]) -> tuple[str, Any]:
    """Call a UI event handler through Gradio's HTTP API: ("complete", outputs) or
    ("error", message)."""
    started = http.post(f"/ui/gradio_api/call/{api_name}", json={"data": data})
    assert started.status_code == 200, (started.status_code, started.text[:300])
    event_id = started.json()["event_id"]
    stream = http.get(f"/ui/gradio_api/call/{api_name}/{event_id}")
    assert stream.status_code == 200, (stream.status_code, stream.text[:300])
    kind, payload = "", None
    for line in stream.text.splitlines():
        if line.startswith("event: "):
            kind = line.removeprefix("event: ").strip()
        elif line.startswith("data: ") and kind in ("complete", "error"):
            payload = json.loads(line.removeprefix("data: "))
            if kind == "error" and isinstance(payload, dict):
                payload = payload.get("error")
            return kind, payload
    raise AssertionError(f"no result from {api_name}: {stream.text[:500]}")


def ingest(data_dir: Path, folder: Path, *acl: str) -> dict[str, Any]:
    args = [arg for group in acl for arg in ("--acl", group)]
    result = run_cli(data_dir, "ingest", str(folder), *args, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def create_users(data_dir: Path) -> dict[str, str]:
    """The users, and an API key for each of KEY_OWNERS."""
    with UserStore(data_dir / "users.sqlite3") as users:
        for name, (groups, role) in USERS.items():
            users.add_user(name, PASSWORD, groups, role)
        return {name: users.create_key(name)[1] for name in KEY_OWNERS}


def prepare(
    root: Path, *, with_secret: bool = True, model: Path | None = None, **extra_env: str
) -> WebServer:
    """Data directory, documents and users under `root`; the server is not started yet.

    `model`: a Gemma GGUF already assembled (by another server's `prepare`), else one is
    assembled under `root`.
    """
    data_dir = root / "data"
    docs_dir = root / "docs"
    shutil.copytree(SAMPLES, docs_dir)
    secret_path = root / "board" / "board-minutes.txt"
    secret_path.parent.mkdir()
    secret_path.write_text(SECRET_TEXT, encoding="utf-8")
    model = model if model is not None else prepare_llm(GEMMA_3_270M, root / "models")
    ingest(data_dir, docs_dir, "everyone")
    if with_secret:
        ingest(data_dir, secret_path.parent, "board")
    keys = create_users(data_dir)
    env = cli_env(
        data_dir,
        APPLIANCE_DOCS_DIR=str(docs_dir),
        APPLIANCE_LLM_MODEL=str(model),
        **{**SERVER_ENV, **extra_env},
    )
    return WebServer(
        url="",
        root=root,
        data_dir=data_dir,
        docs_dir=docs_dir,
        secret_path=secret_path,
        log_path=root / "server.log",
        keys=keys,
        env=env,
    )
