"""Run the real `appliance` command in a child process, as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from appliance.store.edge import EdgeStore, read_collection_meta


def cli_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    env["APPLIANCE_DATA_DIR"] = str(data_dir)
    # The audit key lives outside the data directory, as in production; never in ~/.config.
    env["APPLIANCE_AUDIT_KEY_FILE"] = str(data_dir.parent / "audit-key" / "audit.key")
    env.update(extra)
    return env


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "appliance", *args]


def run_cli(data_dir: Path, *args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(*args),
        env=cli_env(data_dir, **extra_env),
        cwd=data_dir.parent,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def run_json(data_dir: Path, *args: str, **extra_env: str) -> tuple[int, dict[str, Any]]:
    result = run_cli(data_dir, *args, "--json", **extra_env)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, json.loads(result.stdout)


def invoke(data_dir: Path, *args: str, **extra_env: str) -> Any:
    """`appliance ARGS` in this process (typer's CliRunner) with run_cli's environment, for a
    command whose child process is not the subject: no interpreter start, no imports again.
    The click Result: exit_code, stdout, stderr."""
    from typer.testing import CliRunner

    from appliance.cli import app

    env: dict[str, str | None] = dict(cli_env(data_dir, **extra_env))
    env.update({k: None for k in os.environ if k.startswith("APPLIANCE_") and k not in env})
    result = CliRunner().invoke(app, list(args), env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def invoke_json(data_dir: Path, *args: str, **extra_env: str) -> tuple[int, Any]:
    result = invoke(data_dir, *args, "--json", **extra_env)
    return result.exit_code, json.loads(result.stdout)


def index_snapshot(data_dir: Path) -> dict[str, tuple[Any, ...]]:
    """Every stored chunk, by point id, without the ingestion time."""
    root = data_dir / "qdrant"
    meta = read_collection_meta(root, "documents")
    assert meta is not None
    store = EdgeStore.open(root, "documents", int(meta["dimension"]), str(meta["embed_model"]))
    return chunk_rows(store)


def chunk_rows(store: Any) -> dict[str, tuple[Any, ...]]:
    """Every chunk of an open store (closed afterwards), by point id, without ingestion time."""
    try:
        return {
            point_id: (
                p["doc_id"],
                p["source"],
                p["position"],
                p["text"],
                tuple(p["acl"]),
                p["page"],
                p["section"],
            )
            for point_id, p in store.iter_payloads()
        }
    finally:
        store.close()
