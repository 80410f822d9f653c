"""The containers' start commands, run here as Docker would run them: the command and the
environment are read from the Dockerfile, compose.yaml and .env (made from .env.example), and
only what exists inside the image alone is moved: its paths (/data, /docs, /models,
/opt/appliance, /opt/venv, /home/appliance) into a temporary folder, the port to a free one.

No Qdrant server runs here: the appliance keeps compose.yaml's APPLIANCE_QDRANT_URL and key,
and its server backend talks to qdrant-client's on-disk mode instead of the network
(`tests.integration.local_qdrant_cli`, which runs the `appliance` command unchanged otherwise).
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from secrets import token_hex as secrets_hex
from typing import Any

import httpx
import pytest

from tests.support.deploy import (
    COMPOSE,
    REPO,
    TEST_QDRANT_KEY,
    deploy_project,
    dockerfile_stages,
    env_file,
    read_yaml,
    resolved,
    unescape,
)
from tests.support.net import free_port

pytestmark = pytest.mark.integration

CONTAINER_ROOTS = (
    "/data",
    "/docs",
    "/models",
    "/opt/appliance",
    "/home/appliance",
    "/run/secrets",
)
IMAGE_VENV_BIN = "/opt/venv/bin"
QDRANT_STAND_IN = [sys.executable, "-m", "tests.integration.local_qdrant_cli"]
LLM_KEY = "test-llm-key-0123456789"
START_TIMEOUT_S = 180
FIRST_PASSWORD = re.compile(r"sign in as 'admin' with password '([^']+)'")


@dataclass
class Container:
    """One service's command and environment, moved onto this machine."""

    command: list[str]
    env: dict[str, str]
    workdir: Path
    healthcheck: list[str]

    def start(self, log: Path, command: list[str] | None = None) -> subprocess.Popen[bytes]:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with log.open("wb") as out:
            return subprocess.Popen(
                command or self.command,
                env=self.env,
                cwd=self.workdir,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def wait_healthy(self, process: subprocess.Popen[bytes], log: Path) -> None:
        """Run the service's health check, as Docker does, until it passes."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert process.poll() is None, f"exited with {process.returncode}:\n{log.read_text()}"
            checked = subprocess.run(
                self.healthcheck, env=self.env, capture_output=True, timeout=30, check=False
            )
            if checked.returncode == 0:
                return
            time.sleep(1)
        raise AssertionError(f"health check failing after {START_TIMEOUT_S} s:\n{log.read_text()}")


def moved(value: str, root: Path) -> str:
    for container_path in CONTAINER_ROOTS:
        if value == container_path or value.startswith(f"{container_path}/"):
            return f"{root}{value}"
    return value


def container(project: Path, root: Path, service: str, port_name: str) -> Container:
    """`service` of compose.yaml as its container would start it, on a free port."""
    final = dockerfile_stages()[-1]
    written = read_yaml(COMPOSE)["services"][service]
    resolved_service = resolved(project, COMPOSE, profiles=("llm",))["services"][service]
    env = {
        **final.env(),
        **env_file(project, written),
        **{k: unescape(str(v)) for k, v in resolved_service["environment"].items()},
    }
    container_port = env[port_name]
    port = str(free_port())
    env = {name: moved(value, root) for name, value in env.items()}
    env[port_name] = port
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = env["PATH"].replace(IMAGE_VENV_BIN, venv_bin).replace("$PATH", os.environ["PATH"])
    env["HOME"] = f"{root}/home/appliance"

    command = [unescape(word) for word in resolved_service.get("command") or final.json_form("CMD")]
    if command[0] == "appliance":
        command[0] = f"{venv_bin}/appliance"
    test = [unescape(word) for word in resolved_service["healthcheck"]["test"]]
    test = [word.replace(f":{container_port}/", f":{port}/") for word in test]
    healthcheck = ["sh", "-c", test[1]] if test[0] == "CMD-SHELL" else test[1:]
    workdir = Path(moved(final.last("WORKDIR") or "/", root))
    return Container(command, env, workdir, healthcheck)


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The deployment folder, and the image's files after its `models prepare` step."""
    project = deploy_project(tmp_path_factory.mktemp("project"), APPLIANCE_LLM_API_KEY=LLM_KEY)
    root = tmp_path_factory.mktemp("container")
    final = dockerfile_stages()[-1]
    prepare = next(run for run in final.all("RUN") if "appliance models prepare" in run)
    match = re.search(r"(APPLIANCE_DATA_DIR=\S+) (appliance models prepare[^&\\\n]*)", prepare)
    assert match, prepare
    name, _, data_dir = match.group(1).partition("=")
    env = {**final.env(), name: moved(data_dir, root), "PATH": os.environ["PATH"]}
    args = shlex.split(match.group(2))
    args[0] = str(Path(sys.executable).parent / args[0])
    result = subprocess.run(
        [*args, "--json"], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr
    assert f'"llm": "{moved(final.env()["APPLIANCE_LLM_MODEL"], root)}"' in result.stdout
    for mount in ("data", "docs", "models"):
        (root / mount).mkdir()
    # The audit key IT creates once, as compose mounts it (see compose.yaml's `secrets:`).
    secrets = root / "run" / "secrets"
    secrets.mkdir(parents=True)
    (secrets / "audit_key").write_text(secrets_hex(32) + "\n", encoding="utf-8")
    (secrets / "audit_key").chmod(0o400)
    return project, root


@pytest.fixture
def stop_all() -> Iterator[list[subprocess.Popen[bytes]]]:
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def login(url: str, password: str) -> str:
    response = httpx.post(
        f"{url}/login", data={"username": "admin", "password": password}, follow_redirects=False
    )
    assert response.status_code == 303, response.text[:300]
    cookie = response.cookies.get("appliance_session")
    assert cookie
    return cookie


def test_the_appliance_container_starts_healthy_and_signs_in_its_first_admin(
    image: tuple[Path, Path], stop_all: list[subprocess.Popen[bytes]]
) -> None:
    project, root = image
    appliance = container(project, root, "appliance", "APPLIANCE_PORT")
    assert appliance.env["APPLIANCE_HOST"] == "0.0.0.0"
    assert appliance.env["APPLIANCE_QDRANT_URL"] == "http://qdrant:6333"
    assert appliance.env["APPLIANCE_QDRANT_API_KEY"] == TEST_QDRANT_KEY
    assert Path(appliance.command[0]).name == "appliance"
    appliance.env.update(QDRANT_LOCAL_PATH=str(root / "qdrant-server"), PYTHONPATH=str(REPO))
    log = root / "appliance.log"
    process = appliance.start(log, [*QDRANT_STAND_IN, *appliance.command[1:]])
    stop_all.append(process)
    appliance.wait_healthy(process, log)

    url = f"http://127.0.0.1:{appliance.env['APPLIANCE_PORT']}"
    health: dict[str, Any] = httpx.get(f"{url}/healthz").json()
    assert health["status"] == "ok"
    assert health["store"] == "qdrant-server"
    assert (root / "data" / "audit.sqlite3").is_file()  # state lands in the data volume
    assert not list((root / "docs").iterdir()) and not list((root / "models").iterdir())

    # As IT does: the password from `docker compose logs appliance`, ...
    found = FIRST_PASSWORD.search(log.read_text())
    assert found, log.read_text()
    cookie = login(url, found.group(1))
    models = httpx.get(f"{url}/v1/models", cookies={"appliance_session": cookie})
    assert models.status_code == 200, models.text
    assert httpx.get(f"{url}/v1/models").status_code == 401

    # ... and a key from `docker compose exec appliance appliance keys create admin`.
    created = subprocess.run(
        [appliance.command[0], "keys", "create", "admin"],
        env=appliance.env,
        cwd=appliance.workdir,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    with_key = httpx.get(f"{url}/v1/models", headers={"authorization": f"Bearer {key}"})
    assert with_key.status_code == 200, with_key.text

    # `docker compose stop` sends SIGTERM (tini passes it on): the appliance stops as on
    # Ctrl+C (exit 130), closing its store and audit log, instead of dying of the signal.
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 130, log.read_text()
    assert "Traceback" not in log.read_text()


def test_the_llm_service_serves_the_image_model_to_holders_of_its_key(
    image: tuple[Path, Path], stop_all: list[subprocess.Popen[bytes]]
) -> None:
    project, root = image
    llm = container(project, root, "llm", "PORT")
    assert llm.env["API_KEY"] == LLM_KEY
    assert Path(llm.env["MODEL"]).is_file()  # the GGUF prepared in the image
    log = root / "llm.log"
    process = llm.start(log)
    stop_all.append(process)
    llm.wait_healthy(process, log)

    url = f"http://127.0.0.1:{llm.env['PORT']}"
    assert httpx.get(f"{url}/v1/models").status_code == 401
    listed = httpx.get(f"{url}/v1/models", headers={"authorization": f"Bearer {LLM_KEY}"})
    assert listed.status_code == 200
    assert [model["id"] for model in listed.json()["data"]] == [llm.env["MODEL_ALIAS"]]
