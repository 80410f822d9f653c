"""`finetune` options and files that are wrong get a message naming them, never a traceback."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from appliance.cli import app


@pytest.fixture
def model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF")  # never loaded: each command stops before it would be
    monkeypatch.setenv("APPLIANCE_LLM_MODEL", str(path))
    monkeypatch.setenv("APPLIANCE_DATA_DIR", str(tmp_path / "data"))
    return path


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return result.exit_code, result.output


def test_bad_training_files_and_options_are_named(model: Path, tmp_path: Path) -> None:
    data = tmp_path / "train.jsonl"
    data.write_text('{"mode": "completion", "prompt": "p"}\n', encoding="utf-8")
    code, output = run("finetune", "train", str(data), "--out", str(tmp_path / "run"))
    assert code == 2 and "train.jsonl:1: not a training example" in output
    code, output = run(
        "finetune", "train", str(data), "--out", str(tmp_path / "r"), "--device", "tpu"
    )
    assert code == 2 and "--device 'tpu'" in output
    code, output = run(
        "finetune", "train", str(data), "--out", str(tmp_path / "r"), "--name", "a b"
    )
    assert code == 2 and "--name 'a b'" in output
    assert not (tmp_path / "run" / "manifest.json").exists()


def test_bad_pair_files_are_named_before_anything_loads(model: Path, tmp_path: Path) -> None:
    pairs = tmp_path / "qa.jsonl"
    pairs.write_text('{"question": "Why?"}\n', encoding="utf-8")
    code, output = run("finetune", "build-data", str(pairs), "--out", str(tmp_path / "t.jsonl"))
    assert code == 2 and "qa.jsonl:1: field 'answer'" in output
    code, output = run("ask", "Why?", "--adapter", str(tmp_path / "missing.gguf"))
    assert code == 2 and "APPLIANCE_LLM_ADAPTER" in output and "missing.gguf" in output
