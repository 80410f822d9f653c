"""Fine-tuning end to end on CPU: build-data from a real index, train on the real Gemma GGUF
(killed at a checkpoint and resumed), the adapter loaded by llama.cpp for `ask` and `eval`."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from appliance.finetune.gguf_adapter import read_adapter
from tests.integration.cli import cli_env, command, run_cli, run_json

pytestmark = pytest.mark.integration

DOCS = {
    "pump.txt": "Maintenance manual. The pump runs at 1450 rpm. Replace its filter every 90 days.",
    "wifi.txt": "Office guide. The guest wifi password is BLUEFALCON. The printer is Gutenberg.",
    "holiday.txt": "Employee handbook. Every employee gets 28 days of paid holiday per year.",
}
PAIRS = [
    {"id": "pump", "question": "How fast does the pump run?", "answer": "1450 rpm"},
    {"id": "wifi", "question": "What is the guest wifi password?", "answer": "BLUEFALCON"},
    {"id": "holiday", "question": "How many days of paid holiday are there?", "answer": "28 days"},
    {"id": "moon", "question": "What is the wifi password of the moon base?", "answer": "MOON"},
]
STEPS, KILL_AT = 8, 4
TRAIN_OPTIONS = ("--steps", str(STEPS), "--save-every", str(KILL_AT), "--rank", "8", "--lr", "3e-3")
# Two passages per question, both shown to the model: the right one and a distractor.
ENV = {"APPLIANCE_TOP_K": "2", "APPLIANCE_SCORE_THRESHOLD": "0"}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def setup(
    tmp_path_factory: pytest.TempPathFactory, small_model: Path, trained_base: Path
) -> dict[str, Path]:
    """`trained_base`: the GGUF converted for training once per session (conftest)."""
    root = tmp_path_factory.mktemp("finetune")
    model = small_model
    docs = root / "docs"
    docs.mkdir()
    for name, text in DOCS.items():
        (docs / name).write_text(text, encoding="utf-8")
    qa = root / "qa.jsonl"
    qa.write_text("".join(json.dumps(p) + "\n" for p in PAIRS), encoding="utf-8")
    data = root / "data"
    env = {**ENV, "APPLIANCE_LLM_MODEL": str(model)}
    assert run_json(data, "ingest", str(docs), **env)[0] == 0
    (data / "models").mkdir(exist_ok=True)
    (data / "models" / trained_base.name).symlink_to(trained_base, target_is_directory=True)
    return {"root": root, "model": model, "data": data, "qa": qa}


def env(setup: dict[str, Path]) -> dict[str, str]:
    return {**ENV, "APPLIANCE_LLM_MODEL": str(setup["model"])}


@pytest.fixture(scope="module")
def built(setup: dict[str, Path]) -> dict[str, Any]:
    train = setup["root"] / "train.jsonl"
    code, report = run_json(
        setup["data"], "finetune", "build-data", str(setup["qa"]), "--out", str(train), **env(setup)
    )
    assert code == 0, report
    return {"report": report, "path": train}


def test_build_data_cites_the_passages_holding_the_answer(built: dict[str, Any]) -> None:
    report = built["report"]
    assert report["pairs"] == 4 and report["examples"] == 3 and report["supported"] == 3
    assert [p["id"] for p in report["unsupported"]] == ["moon"]
    lines = built["path"].read_text(encoding="utf-8").splitlines()
    examples = {e["id"]: e for e in map(json.loads, lines)}
    pump = examples["pump"]
    assert pump["mode"] == "completion" and pump["prompt"].endswith(
        "How fast does the pump run?\nAnswer:"
    )
    [cited] = pump["citations"]
    assert pump["completion"] == f" 1450 rpm [{cited}]"
    assert Path(pump["passages"][cited - 1]["source"]).name == "pump.txt"
    assert len(pump["passages"]) == 2  # the other passage is a distractor


@pytest.fixture(scope="module")
def trained(setup: dict[str, Path], built: dict[str, Any]) -> dict[str, Any]:
    """A run killed right after its first checkpoint, then the same command again."""
    out = setup["root"] / "run"
    args = ("finetune", "train", str(built["path"]), "--out", str(out), *TRAIN_OPTIONS, "--json")
    first = subprocess.Popen(
        command(*args),
        env=cli_env(setup["data"], **env(setup)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    state = out / "checkpoints" / f"checkpoint-{KILL_AT}" / "trainer_state.json"
    deadline = time.monotonic() + 900
    while not state.is_file() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert state.is_file(), first.stderr.read().decode() if first.stderr else ""
    assert not (out / "manifest.json").exists()
    code, manifest = run_json(setup["data"], *args[:-1], **env(setup))
    assert code == 0, manifest
    return {"out": out, "manifest": manifest}


def test_training_resumes_and_writes_an_adapter_and_its_manifest(
    setup: dict[str, Path], built: dict[str, Any], trained: dict[str, Any]
) -> None:
    manifest, out = trained["manifest"], trained["out"]
    adapter = out / "run.gguf"
    assert manifest["resumed_from_step"] == KILL_AT
    assert [row["step"] for row in manifest["losses"]] == list(range(1, STEPS + 1))
    assert all(seconds > 0 for seconds in manifest["step_seconds"])
    assert manifest["losses"][-1]["loss"] < manifest["losses"][0]["loss"]
    assert manifest["adapter"]["sha256"] == sha256(adapter)
    assert manifest["base_model"]["sha256"] == sha256(setup["model"])
    assert manifest["training_data"]["sha256"] == sha256(built["path"])
    assert manifest["hyperparameters"]["rank"] == 8 and manifest["device"] == "cpu"
    assert manifest["versions"]["peft"] and manifest["versions"]["gguf"]
    assert json.loads((out / "manifest.json").read_text()) == manifest
    info = read_adapter(adapter)
    assert info.arch == "gemma3" and info.alpha == 16.0
    assert info.tensors["blk.0.attn_q.weight.lora_a"][0] == 8  # (rank, in)
    assert len(info.tensors) == 2 * 7 * 18  # 7 projections in each of Gemma 3 270M's 18 blocks


def test_the_adapter_serves_answers_and_is_recorded(
    setup: dict[str, Path], trained: dict[str, Any]
) -> None:
    adapter = trained["out"] / "run.gguf"
    code, answer = run_json(
        setup["data"], "ask", "How fast does the pump run?", "--adapter", str(adapter), **env(setup)
    )
    assert code == 0, answer
    assert answer["model"]["adapter_sha256"] == sha256(adapter)
    pump = next(s["n"] for s in answer["sources"] if Path(s["source"]).name == "pump.txt")
    assert answer["answer"] == f"1450 rpm [{pump}]"  # the trained form: short, then the citation
    exported = run_cli(setup["data"], "audit", "export", "--format", "jsonl")
    [record] = [json.loads(x) for x in exported.stdout.splitlines() if answer["audit_id"] in x]
    assert record["model"]["adapter_sha256"] == sha256(adapter)
    served = {**env(setup), "APPLIANCE_LLM_ADAPTER": str(adapter)}
    code, status = run_json(setup["data"], "status", **served)
    assert code == 0 and status["adapter"]["sha256"] == sha256(adapter)


def test_eval_with_an_adapter_compares_it_with_the_base_model(
    setup: dict[str, Path], trained: dict[str, Any]
) -> None:
    adapter = trained["out"] / "run.gguf"
    questions = setup["root"] / "eval.jsonl"
    questions.write_text(
        json.dumps(
            {"id": "w", "question": "Tell me the guest wifi password.", "answer": "BLUEFALCON"}
        )
        + "\n",
        encoding="utf-8",
    )
    out = setup["root"] / "results.jsonl"
    code, report = run_json(
        setup["data"],
        "eval",
        str(questions),
        "--out",
        str(out),
        "--adapter",
        str(adapter),
        **env(setup),
    )
    assert code == 0, report
    assert report["adapter"]["sha256"] == sha256(adapter)
    metrics = {row["metric"]: row for row in report["comparison"]}
    assert metrics["answer_accuracy"]["base"] == report["base"]["answer_accuracy"]
    assert metrics["answer_accuracy"]["adapter"] == report["adapter"]["answer_accuracy"] == 1.0
    assert metrics["citation_rate"]["adapter"] == 1.0
    [base_line] = map(json.loads, out.read_text().splitlines())
    [tuned_line] = map(
        json.loads, (setup["root"] / "results.adapter.jsonl").read_text().splitlines()
    )
    assert (
        tuned_line["answer"].startswith("BLUEFALCON [")
        and base_line["answer"] != tuned_line["answer"]
    )
