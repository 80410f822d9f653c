"""The docker compose deployment, checked without a Docker engine: Debian's docker-compose
validates and resolves the files; the properties IT relies on are asserted on the result."""

from __future__ import annotations

import ipaddress
import re
import socket
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from appliance.settings import Settings
from tests.support.deploy import (
    COMPOSE,
    GPU_OVERRIDE,
    QDRANT_KEY,
    REPO,
    TEST_QDRANT_KEY,
    Stage,
    compose_config,
    depends_on_healthy,
    deploy_project,
    dockerfile_args,
    dockerfile_stages,
    mounts,
    published_ports,
    read_yaml,
    resolved,
    unescape,
)

QDRANT_NODES = ("qdrant", "qdrant-2", "qdrant-3")
COMPILERS = ("gcc", "g++", "build-essential", "cmake", "clang", "nvcc", "make")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return deploy_project(tmp_path_factory.mktemp("deploy"))


@pytest.fixture(scope="module")
def config(project: Path) -> dict[str, Any]:
    return resolved(project, profiles=("llm", "cluster"))


@pytest.fixture(scope="module")
def gpu_config(project: Path) -> dict[str, Any]:
    return resolved(project, COMPOSE, GPU_OVERRIDE, profiles=("llm", "cluster"))


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    """compose.yaml as written (before interpolation)."""
    data: dict[str, Any] = read_yaml(COMPOSE)["services"]
    return data


@pytest.fixture(scope="module")
def final_stage() -> Stage:
    return dockerfile_stages()[-1]


def test_a_missing_qdrant_key_stops_compose_with_a_message_naming_it(tmp_path: Path) -> None:
    project = deploy_project(tmp_path, **{QDRANT_KEY: ""})
    result = compose_config(project)
    assert result.returncode != 0
    assert f"set {QDRANT_KEY} in .env" in result.stderr


# Qdrant


def test_qdrant_is_the_official_image_pinned_to_a_version(services: dict[str, Any]) -> None:
    pinned = re.compile(r"qdrant/qdrant:v\d+\.\d+\.\d+(-unprivileged)?")
    for name in QDRANT_NODES:
        assert pinned.fullmatch(services[name]["image"])


def test_qdrant_sends_no_telemetry_and_requires_the_key_from_the_env_file(
    services: dict[str, Any], config: dict[str, Any]
) -> None:
    for name in QDRANT_NODES:
        written = services[name]["environment"]
        assert written["QDRANT__TELEMETRY_DISABLED"] == "true"
        assert written["QDRANT__SERVICE__API_KEY"].startswith(f"${{{QDRANT_KEY}:?")
    qdrant_env = config["services"]["qdrant"]["environment"]
    appliance_env = config["services"]["appliance"]["environment"]
    assert qdrant_env["QDRANT__SERVICE__API_KEY"] == TEST_QDRANT_KEY
    assert appliance_env[QDRANT_KEY] == TEST_QDRANT_KEY


def test_qdrant_keeps_its_data_in_volumes_on_an_internal_network_and_publishes_no_port(
    config: dict[str, Any],
) -> None:
    qdrant = config["services"]["qdrant"]
    assert mounts(qdrant)["/qdrant/storage"] == ("qdrant-storage", False)
    assert mounts(qdrant)["/qdrant/snapshots"] == ("qdrant-snapshots", False)
    assert {"qdrant-storage", "qdrant-snapshots"} <= set(config["volumes"])
    assert "ports" not in qdrant
    assert list(qdrant["networks"]) == ["backend"]
    assert config["networks"]["backend"]["internal"] is True
    assert "healthcheck" in qdrant


class ReadyHandler(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        code = self.status if self.path == "/readyz" else 404
        self.send_response(code)
        self.end_headers()
        self.wfile.write(b"all shards are ready" if code == 200 else b"no")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def ready_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), ReadyHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        ReadyHandler.status = 200


def run_qdrant_healthcheck(config: dict[str, Any], port: int) -> int:
    """The qdrant service's health check as Docker runs it, against 127.0.0.1:`port`."""
    test = [unescape(word) for word in config["services"]["qdrant"]["healthcheck"]["test"]]
    assert test[0] == "CMD"
    command = [word.replace("127.0.0.1/6333", f"127.0.0.1/{port}") for word in test[1:]]
    return subprocess.run(command, capture_output=True, timeout=30, check=False).returncode


def test_the_qdrant_health_check_passes_only_when_readyz_answers_200(
    config: dict[str, Any], ready_server: ThreadingHTTPServer
) -> None:
    port = int(ready_server.server_address[1])
    assert run_qdrant_healthcheck(config, port) == 0
    ReadyHandler.status = 503
    assert run_qdrant_healthcheck(config, port) != 0
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = int(probe.getsockname()[1])
    assert run_qdrant_healthcheck(config, closed_port) != 0


# The appliance


def test_the_appliance_is_built_here_and_talks_to_qdrant_once_it_is_healthy(
    config: dict[str, Any], project: Path
) -> None:
    appliance = config["services"]["appliance"]
    assert Path(appliance["build"]["context"]) == project
    assert depends_on_healthy(appliance) == ["qdrant"]
    assert appliance["environment"]["APPLIANCE_QDRANT_URL"] == "http://qdrant:6333"
    assert "backend" in appliance["networks"]


def test_the_appliance_mounts_documents_and_models_read_only_and_keeps_state_in_a_volume(
    config: dict[str, Any], final_stage: Stage
) -> None:
    appliance = config["services"]["appliance"]
    env = {**final_stage.env(), **appliance["environment"]}
    mounted = mounts(appliance)
    assert mounted[env["APPLIANCE_DOCS_DIR"]][1] is True
    assert mounted["/models"][1] is True
    assert mounted[env["APPLIANCE_DATA_DIR"]] == ("appliance-data", False)
    assert "appliance-data" in config["volumes"]


def test_the_appliance_publishes_its_port_and_checks_healthz_on_it(
    config: dict[str, Any],
) -> None:
    appliance = config["services"]["appliance"]
    port = appliance["environment"]["APPLIANCE_PORT"]
    assert port == "7860"
    assert appliance["environment"]["APPLIANCE_HOST"] == "0.0.0.0"
    assert published_ports(appliance) == [("7860", int(port))]
    test = appliance["healthcheck"]["test"]
    assert f"http://127.0.0.1:{port}/healthz" in test
    assert test[:2] == ["CMD", "curl"] and "-f" in test[2]


def test_a_proxy_on_the_host_reaches_the_appliance_from_the_address_the_example_trusts(
    config: dict[str, Any],
) -> None:
    """The frontend subnet is fixed, so its gateway (where a reverse proxy on the host
    connects from) stays the same across `docker compose down` and `up`."""
    subnet = config["networks"]["frontend"]["ipam"]["config"][0]["subnet"]
    gateway = next(ipaddress.ip_network(subnet).hosts())
    example = (REPO / ".env.example").read_text(encoding="utf-8")
    assert f"# APPLIANCE_TRUSTED_PROXIES={gateway}\n" in example
    assert set(config["services"]["appliance"]["networks"]) == {"backend", "frontend"}


def test_it_chooses_settings_in_the_env_file_but_not_the_container_paths(
    services: dict[str, Any],
) -> None:
    appliance = services["appliance"]
    assert appliance["env_file"] == ".env"
    fixed = {"APPLIANCE_DATA_DIR", "APPLIANCE_DOCS_DIR", "APPLIANCE_HOST", "APPLIANCE_PORT"}
    assert fixed <= set(appliance["environment"])


def test_every_appliance_setting_named_in_the_deployment_exists() -> None:
    """A misspelt APPLIANCE_* variable would be ignored without a word."""
    named = set(re.findall(r"\bAPPLIANCE_[A-Z0-9_]+", (REPO / ".env.example").read_text()))
    for name in (COMPOSE, GPU_OVERRIDE, "Dockerfile"):
        named |= set(re.findall(r"\bAPPLIANCE_[A-Z0-9_]+", (REPO / name).read_text()))
    not_settings = {"APPLIANCE_IMAGE"}  # the image name, read by compose only
    unknown = {
        name
        for name in named - not_settings
        if name.removeprefix("APPLIANCE_").lower() not in Settings.model_fields
    }
    assert not unknown


def test_env_example_documents_every_variable_compose_reads_and_holds_no_secret() -> None:
    example = (REPO / ".env.example").read_text(encoding="utf-8")
    documented = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]*)=", example, re.MULTILINE))
    for name in (COMPOSE, GPU_OVERRIDE):
        text = (REPO / name).read_text(encoding="utf-8").replace("$$", "")
        used = set(re.findall(r"\$\{([A-Z0-9_]+)", text))
        assert used <= documented, (name, used - documented)
    assigned = re.findall(r"^([A-Z][A-Z0-9_]*)=(.*)$", example, re.MULTILINE)
    assert assigned == [(QDRANT_KEY, "")]


# Profiles and the GPU variant


def test_only_qdrant_and_the_appliance_start_without_a_profile(services: dict[str, Any]) -> None:
    default = {name for name, service in services.items() if "profiles" not in service}
    assert default == {"qdrant", "appliance"}
    assert services["llm"]["profiles"] == ["llm"]


def test_the_cluster_profile_makes_three_qdrant_nodes_that_join_the_first(
    gpu_config: dict[str, Any],
) -> None:
    nodes = {name: gpu_config["services"][name] for name in QDRANT_NODES}
    profiles = [nodes[name].get("profiles") for name in QDRANT_NODES]
    assert profiles == [None, ["cluster"], ["cluster"]]
    first_uri = nodes["qdrant"]["command"][nodes["qdrant"]["command"].index("--uri") + 1]
    assert first_uri == "http://qdrant:6335"
    storages = set()
    for name, node in nodes.items():
        assert node["environment"]["QDRANT__CLUSTER__ENABLED"] == "true"
        assert node["environment"]["QDRANT__SERVICE__API_KEY"] == TEST_QDRANT_KEY
        command = node["command"]
        assert command[command.index("--uri") + 1] == f"http://{name}:6335"
        if name != "qdrant":
            assert command[command.index("--bootstrap") + 1] == first_uri
            assert depends_on_healthy(node) == ["qdrant"]
        storages.add(mounts(node)["/qdrant/storage"][0])
        assert "ports" not in node
    assert len(storages) == 3


def test_the_llm_service_is_an_openai_server_on_the_appliance_image_behind_a_key(
    gpu_config: dict[str, Any],
) -> None:
    llm = gpu_config["services"]["llm"]
    appliance = gpu_config["services"]["appliance"]
    assert llm["image"] == appliance["image"]
    assert "python -m llama_cpp.server" in llm["command"][-1]
    assert llm["environment"]["PORT"] == "8080"
    assert list(llm["networks"]) == ["backend"] and "ports" not in llm
    assert "$API_KEY" in unescape(llm["healthcheck"]["test"][1])


def test_the_llm_service_refuses_to_start_without_a_key(config: dict[str, Any]) -> None:
    command = [unescape(word) for word in config["services"]["llm"]["command"]]
    env = {"API_KEY": "", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 2
    assert "set APPLIANCE_LLM_API_KEY in .env" in result.stderr


def test_the_gpu_variant_builds_llama_cpp_with_cuda_and_reserves_an_nvidia_gpu(
    gpu_config: dict[str, Any], config: dict[str, Any]
) -> None:
    for name in ("appliance", "llm"):
        service = gpu_config["services"][name]
        assert service["build"]["args"]["LLAMA_BACKEND"] == "cuda"
        assert service["image"] != config["services"][name]["image"]
        devices = service["deploy"]["resources"]["reservations"]["devices"]
        assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert gpu_config["services"]["appliance"]["environment"]["APPLIANCE_LLM_GPU_LAYERS"] == "-1"
    assert gpu_config["services"]["llm"]["environment"]["N_GPU_LAYERS"] == "-1"
    assert config["services"]["appliance"]["build"]["args"]["LLAMA_BACKEND"] == "cpu"
    assert "deploy" not in config["services"]["appliance"]


# The Dockerfile


def test_the_dockerfile_builds_in_one_stage_and_runs_from_another() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2
    args = dockerfile_args()
    for stage in stages:
        base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], stage.base)
        assert re.fullmatch(r"[\w./-]+:[\w.-]+", base) and not base.endswith(":latest")
    final = stages[-1]
    copies = final.all("COPY")
    assert any(arg.startswith(f"--from={stages[0].name} /opt/venv") for arg in copies), copies


def test_the_cuda_build_arg_reaches_llama_cpp(final_stage: Stage) -> None:
    builder = dockerfile_stages()[0]
    assert "LLAMA_BACKEND=cpu" in builder.all("ARG")
    assert "LLAMA_BACKEND=cpu" in final_stage.all("ARG")
    install = next(run for run in builder.all("RUN") if "pip install -r" in run)
    assert '"$LLAMA_BACKEND" = cuda' in install and "-DGGML_CUDA=on" in install
    assert 'CMAKE_ARGS="$cmake_args"' in install


def test_the_final_stage_runs_as_a_user_without_compilers(final_stage: Stage) -> None:
    user = final_stage.last("USER")
    assert user is not None
    assert user.split(":")[0] not in ("0", "root")
    for run in final_stage.all("RUN"):
        for install in re.findall(r"apt-get install([^&;]*)", run):
            packages = set(install.split())
            assert not packages & set(COMPILERS), run
    script = (REPO / "docker" / "install-cuda.sh").read_text(encoding="utf-8")
    runtime = script.split("    runtime)", 1)[1].split(";;", 1)[0]
    assert "nvcc" not in runtime and "-dev" not in runtime


def test_the_image_is_offline_and_carries_its_default_models(final_stage: Stage) -> None:
    env = final_stage.env()
    assert env["HF_HUB_OFFLINE"] == "1"
    assert env["GRADIO_ANALYTICS_ENABLED"] == "False"
    prepare = next(run for run in final_stage.all("RUN") if "appliance models prepare" in run)
    match = re.search(r"APPLIANCE_DATA_DIR=(\S+) appliance models prepare", prepare)
    assert match
    assert env["APPLIANCE_LLM_MODEL"].startswith(f"{match.group(1)}/models/")


def test_the_image_reads_scans_with_tesseract_in_the_configured_languages(
    final_stage: Stage,
) -> None:
    assert "OCR_LANGUAGES=eng" in final_stage.all("ARG")
    # The image tells the appliance the languages it was built with (the ARG, default eng).
    assert final_stage.env()["APPLIANCE_OCR_LANGUAGES"] == "eng"
    install = next(run for run in final_stage.all("RUN") if "tesseract-ocr" in run)
    packages = re.search(r"\$\((echo \"\$OCR_LANGUAGES\" [^)]*)\)", install)
    assert packages and " tesseract-ocr " in install
    # The same shell words, run on a value: each language becomes its Debian package.
    words = subprocess.run(
        ["sh", "-c", packages.group(1)],
        env={"OCR_LANGUAGES": "eng+chi_sim", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert words == ["tesseract-ocr-eng", "tesseract-ocr-chi-sim"]


def test_the_image_serves_on_port_7860_with_a_health_check(final_stage: Stage) -> None:
    assert final_stage.all("EXPOSE") == ["7860"]
    assert final_stage.env()["APPLIANCE_PORT"] == "7860"
    healthcheck = final_stage.last("HEALTHCHECK")
    assert healthcheck is not None and "/healthz" in healthcheck
    assert final_stage.json_form("CMD") == ["appliance", "serve"]


def test_the_build_context_holds_what_the_dockerfile_copies_and_nothing_secret() -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*"
    included = {p.removeprefix("!") for p in patterns if p.startswith("!")}
    copied = set()
    for stage in dockerfile_stages():
        for args in stage.all("COPY"):
            if not args.startswith("--from"):
                copied |= {word.split("/")[0] for word in args.split()[:-1]}
    assert copied == included
    assert not included & {".env", ".venv", "data", ".bench", ".git", "tests"}


def test_the_audit_key_is_a_read_only_secret_outside_the_data_volume(
    config: dict[str, Any],
) -> None:
    appliance = config["services"]["appliance"]
    key_file = appliance["environment"]["APPLIANCE_AUDIT_KEY_FILE"]
    assert key_file == "/run/secrets/audit_key"  # compose mounts secrets read-only there
    assert [s if isinstance(s, str) else s["source"] for s in appliance["secrets"]] == ["audit_key"]
    assert config["secrets"]["audit_key"]["file"] == "/etc/rag-appliance/audit.key"
    assert not key_file.startswith(appliance["environment"]["APPLIANCE_DATA_DIR"] + "/")
