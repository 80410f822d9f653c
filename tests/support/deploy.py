"""The docker compose deployment as files: compose.yaml, compose.gpu.yaml, the Dockerfile and
.env.example, read as Docker reads them, for tests that run without a Docker engine.

`docker-compose` is Debian's (v1.29, `make compose`): its `config` validates a file against
the Compose Specification schema and interpolates ${VARIABLES}, without a daemon.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from dotenv import dotenv_values

REPO = Path(__file__).resolve().parents[2]
COMPOSE = "compose.yaml"
GPU_OVERRIDE = "compose.gpu.yaml"
DEPLOY_FILES = (COMPOSE, GPU_OVERRIDE, "Dockerfile", ".env.example")
QDRANT_KEY = "APPLIANCE_QDRANT_API_KEY"
TEST_QDRANT_KEY = "test-qdrant-key-0123456789abcdef"


def read_yaml(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((REPO / name).read_text(encoding="utf-8"))
    return data


def docker_compose() -> str:
    path = shutil.which("docker-compose")
    assert path, "docker-compose is missing: run `make compose` (Debian's docker-compose)"
    return path


def deploy_project(root: Path, **env: str) -> Path:
    """A copy of the deployment files in `root`, with .env made from .env.example as IT makes
    it (the Qdrant key filled in) plus `env`; the folder compose runs in."""
    root.mkdir(parents=True, exist_ok=True)
    for name in DEPLOY_FILES:
        shutil.copy2(REPO / name, root / name)
    values = {QDRANT_KEY: TEST_QDRANT_KEY, **env}
    lines = (REPO / ".env.example").read_text(encoding="utf-8").splitlines()
    for name, value in values.items():
        lines = [line for line in lines if not line.startswith(f"{name}=")]
        lines.append(f"{name}={value}")
    (root / ".env").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def compose_config(
    project: Path, *files: str, profiles: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    args = [docker_compose()]
    for profile in profiles:
        args += ["--profile", profile]
    for name in files or (COMPOSE,):
        args += ["-f", name]
    return subprocess.run(
        [*args, "config"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def resolved(project: Path, *files: str, profiles: tuple[str, ...] = ()) -> dict[str, Any]:
    """The configuration compose runs: validated, merged, interpolated."""
    result = compose_config(project, *files, profiles=profiles)
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = yaml.safe_load(result.stdout)
    return data


def unescape(value: str) -> str:
    """What the container gets from a value of a resolved compose file ($$ is a literal $)."""
    return value.replace("$$", "$")


def mounts(service: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    """Container path -> (source, read-only), from the short or the long volume syntax."""
    found: dict[str, tuple[str, bool]] = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            found[volume["target"]] = (volume["source"], bool(volume.get("read_only")))
            continue
        source, target, *mode = volume.split(":")
        found[target] = (source, "ro" in ",".join(mode).split(","))
    return found


def published_ports(service: dict[str, Any]) -> list[tuple[str, int]]:
    """(published, container port) pairs, from the short or the long port syntax."""
    pairs: list[tuple[str, int]] = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            pairs.append((str(port["published"]), int(port["target"])))
        else:
            published, _, target = str(port).rpartition(":")
            pairs.append((published, int(target.split("/")[0])))
    return pairs


def depends_on_healthy(service: dict[str, Any]) -> list[str]:
    """The services this one waits for until they are healthy."""
    return [
        name
        for name, condition in service.get("depends_on", {}).items()
        if condition.get("condition") == "service_healthy"
    ]


def env_file(project: Path, service: dict[str, Any]) -> dict[str, str]:
    names = service.get("env_file", [])
    values: dict[str, str] = {}
    for name in [names] if isinstance(names, str) else names:
        values.update({k: v or "" for k, v in dotenv_values(project / name).items()})
    return values


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def last(self, keyword: str) -> str | None:
        found = self.all(keyword)
        return found[-1] if found else None

    def env(self) -> dict[str, str]:
        """The stage's ENV values, with `${NAME}` of its ARG defaults and earlier ENVs
        substituted as Docker does (other variables, like `$PATH`, are left as written)."""
        values: dict[str, str] = {}
        known: dict[str, str] = {}

        def expand(text: str) -> str:
            return re.sub(
                r"\$\{(\w+)\}|\$(\w+)",
                lambda m: known.get(m.group(1) or m.group(2), m.group(0)),
                text,
            )

        for keyword, args in self.instructions:
            if keyword == "ARG" and "=" in args:
                name, _, value = args.partition("=")
                known[name.strip()] = value.strip().strip('"')
            if keyword != "ENV":
                continue
            words = shlex.split(args)
            if len(words) == 2 and "=" not in words[0]:
                words = [f"{words[0]}={words[1]}"]
            for word in words:
                name, _, value = word.partition("=")
                values[name] = known[name] = expand(value)
        return values

    def json_form(self, keyword: str) -> list[str]:
        """The exec (JSON) form of CMD or ENTRYPOINT."""
        args = self.last(keyword)
        assert args is not None and args.startswith("["), f"{keyword} is not in exec form"
        words: list[str] = yaml.safe_load(args)
        return words


def dockerfile_stages(path: Path = REPO / "Dockerfile") -> list[Stage]:
    """Instructions per stage, continuation lines joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        logical.append(pending + line)
        pending = ""
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            match = re.fullmatch(r"(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?", args, re.IGNORECASE)
            assert match, line
            stages.append(Stage(base=match.group(1), name=match.group(2)))
        elif stages:
            stages[-1].instructions.append((keyword, args))
    return stages


def dockerfile_args() -> dict[str, str]:
    """Default values of the ARGs declared before the first FROM."""
    values: dict[str, str] = {}
    for raw in (REPO / "Dockerfile").read_text(encoding="utf-8").splitlines():
        if raw.startswith("FROM "):
            break
        if raw.startswith("ARG ") and "=" in raw:
            name, _, value = raw[4:].partition("=")
            values[name.strip()] = value.strip().strip('"')
    return values
