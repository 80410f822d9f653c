"""`appliance adapters` without a model run: registration, the checks made before any
evaluation, a forced promotion without a question set, rollback, and their audit records.
(The gate's evaluations run for real in tests/integration/test_adapters.py.)"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from appliance.audit import AuditLog
from appliance.cli import app
from tests.support.adapters import adapter


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF")  # never loaded: no command here generates
    monkeypatch.setenv("APPLIANCE_LLM_MODEL", str(model))
    monkeypatch.setenv("APPLIANCE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("APPLIANCE_AUDIT_KEY_FILE", str(tmp_path / "key" / "audit.key"))
    monkeypatch.delenv("APPLIANCE_EVAL_QUESTIONS", raising=False)
    monkeypatch.delenv("APPLIANCE_LLM_ADAPTER", raising=False)
    base = hashlib.sha256(b"GGUF").hexdigest()
    return {
        "root": tmp_path,
        "fits": adapter(tmp_path / "fits.gguf", seed=1, base_sha256=base),
        "other_base": adapter(tmp_path / "other.gguf", seed=2, base_sha256="b" * 64),
    }


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return result.exit_code, result.output


def adapter_records(root: Path) -> list[dict[str, Any]]:
    with AuditLog(root / "data" / "audit.sqlite3", key_file=root / "key" / "audit.key") as log:
        assert log.verify().ok
        return [r.to_json() for r in log.query() if r.entry.outcome == "adapter"]


def test_register_promote_by_force_and_roll_back(env: dict[str, Path]) -> None:
    code, output = run("adapters", "add", str(env["fits"]), "--name", "fits", "--json")
    assert code == 0 and json.loads(output)["name"] == "fits"
    code, output = run("adapters", "promote", "fits")
    assert code == 2 and "APPLIANCE_EVAL_QUESTIONS" in output
    code, output = run("adapters", "promote", "fits", "--force", "--user", "ops", "--json")
    assert code == 0, output
    outcome = json.loads(output)
    assert outcome["promoted"] is True and outcome["forced"] is True
    code, output = run("adapters", "list", "--json")
    listed = json.loads(output)
    assert listed["promoted"] == "fits" and listed["adapters"][0]["promoted"] is True
    code, output = run("adapters", "rollback", "--user", "ops", "--json")
    assert code == 0 and json.loads(output) == {
        "rolled_back": "fits",
        "served": None,
        "audit_id": json.loads(output)["audit_id"],
    }
    code, output = run("adapters", "rollback")
    assert code == 2 and "base model alone is served already" in output
    steps = [(r["retrieval"]["action"], r["user"]) for r in adapter_records(env["root"])]
    assert steps[1:] == [("promote", "ops"), ("rollback", "ops")]
    assert steps[0][0] == "register"


def test_what_cannot_be_served_is_refused_before_any_evaluation(env: dict[str, Path]) -> None:
    junk = env["root"] / "junk.gguf"
    junk.write_bytes(b"junk")
    code, output = run("adapters", "add", str(junk), "--name", "junk")
    assert code == 2 and "not a readable GGUF" in output
    code, output = run("adapters", "promote", "nothing", "--force")
    assert code == 2 and "no adapter named 'nothing'" in output
    assert run("adapters", "add", str(env["other_base"]), "--name", "other")[0] == 0
    code, output = run("adapters", "promote", "other", "--force")
    assert code == 2 and "trained on the base model with sha256 bbbbbbbbbbbb" in output
    code, output = run("adapters", "list", "--json")
    assert json.loads(output)["promoted"] is None


def test_training_refuses_a_registered_name_before_it_starts(env: dict[str, Path]) -> None:
    assert run("adapters", "add", str(env["fits"]), "--name", "fits")[0] == 0
    data = env["root"] / "train.jsonl"
    data.write_text("{}\n", encoding="utf-8")
    code, output = run("finetune", "train", str(data), "--out", str(env["root"] / "fits"))
    assert code == 2 and "named 'fits' is registered already" in output
