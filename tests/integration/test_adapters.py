"""Adapters as versions, end to end with the small Gemma: two adapters trained and registered
(one on the right answers, one on deliberately wrong ones), the eval gate promoting the first
and refusing the second, a forced promotion, a rollback; `ask --json` reports the served
adapter after each change, and the audit trail holds every step.

Kept short: the GGUF is converted for training once per session (`trained_base`); each
adapter trains for 3 steps, the wrong one at a learning rate (1e-2) high enough that it
surely answers worse than the served one (measured: no answer right, its loss rising);
answers are capped at 24 tokens; `finetune train` runs as a child process, as a user runs
it, the other commands in this process (their child process is not the subject)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from tests.integration.cli import invoke, invoke_json, run_cli

pytestmark = pytest.mark.integration

DOCS = {
    "pump.txt": "Maintenance manual. The pump runs at 1450 rpm. Replace its filter every 90 days.",
    "wifi.txt": "Office guide. The guest wifi password is BLUEFALCON. The printer is Gutenberg.",
    "holiday.txt": "Employee handbook. Every employee gets 28 days of paid holiday per year.",
}
QUESTIONS = {
    "pump": ("How fast does the pump run?", "1450 rpm", "pump.txt"),
    "wifi": ("What is the guest wifi password?", "BLUEFALCON", "wifi.txt"),
    "holiday": ("How many days of paid holiday are there?", "28 days", "holiday.txt"),
}
WRONG = {"pump": "900 rpm", "wifi": "REDEAGLE", "holiday": "12 days"}
STEPS = 3
TRAIN = {
    "right": ("--steps", str(STEPS), "--save-every", str(STEPS), "--lr", "3e-3"),
    "wrong": ("--steps", str(STEPS), "--save-every", str(STEPS), "--lr", "1e-2"),
}
ENV = {
    "APPLIANCE_TOP_K": "2",
    "APPLIANCE_SCORE_THRESHOLD": "0",
    "APPLIANCE_LLM_MAX_TOKENS": "24",  # "1450 rpm [1]." is 8; a longer answer is not needed
}


def jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def setup(
    tmp_path_factory: pytest.TempPathFactory, small_model: Path, trained_base: Path
) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("adapters")
    docs = root / "docs"
    docs.mkdir()
    for name, text in DOCS.items():
        (docs / name).write_text(text, encoding="utf-8")
    env = {**ENV, "APPLIANCE_LLM_MODEL": str(small_model)}
    data = root / "data"
    assert invoke_json(data, "ingest", str(docs), **env)[0] == 0
    (data / "models").mkdir(exist_ok=True)
    (data / "models" / trained_base.name).symlink_to(trained_base, target_is_directory=True)
    questions = jsonl(
        root / "questions.jsonl",
        [
            {"id": key, "question": q, "answer": a, "sources": [source]}
            for key, (q, a, source) in QUESTIONS.items()
        ],
    )
    return {"root": root, "data": data, "env": env, "questions": questions}


def train(setup: dict[str, Any], name: str, answers: dict[str, str]) -> dict[str, Any]:
    root, data, env = setup["root"], setup["data"], setup["env"]
    pairs = [{"id": k, "question": q, "answer": answers[k]} for k, (q, _, _) in QUESTIONS.items()]
    examples = root / f"{name}.jsonl"
    code, report = invoke_json(
        data,
        "finetune",
        "build-data",
        str(jsonl(root / f"{name}-pairs.jsonl", pairs)),
        "--out",
        str(examples),
        "--keep-unsupported",
        **env,
    )
    assert code == 0 and report["examples"] == 3, report
    result = run_cli(
        data,
        "finetune",
        "train",
        str(examples),
        "--out",
        str(root / name),
        *TRAIN[name],
        "--json",
        **env,
    )
    assert result.returncode == 0, result.stderr
    manifest: dict[str, Any] = json.loads(result.stdout)
    assert manifest["registered"] == name
    return manifest


@pytest.fixture(scope="module")
def adapters(setup: dict[str, Any]) -> dict[str, str]:
    """The sha256 of each registered adapter, by name."""
    right = {k: answer for k, (_, answer, _) in QUESTIONS.items()}
    return {
        name: train(setup, name, answers)["adapter"]["sha256"]
        for name, answers in (("right", right), ("wrong", WRONG))
    }


def served_sha256(setup: dict[str, Any]) -> str | None:
    code, answer = invoke_json(setup["data"], "ask", "How fast does the pump run?", **setup["env"])
    assert code == 0, answer
    return answer["model"]["adapter_sha256"]  # type: ignore[no-any-return]


def adapters_cli(setup: dict[str, Any], *args: str) -> tuple[int, dict[str, Any]]:
    return invoke_json(setup["data"], "adapters", *args, "--user", "ops", **setup["env"])


def test_trained_adapters_are_registered_and_none_is_served_until_promoted(
    setup: dict[str, Any], adapters: dict[str, str]
) -> None:
    code, listed = invoke_json(setup["data"], "adapters", "list", **setup["env"])
    assert code == 0
    assert {a["name"]: a["sha256"] for a in listed["adapters"]} == adapters
    assert listed["promoted"] is None
    stored = setup["data"] / "adapters" / "right.gguf"
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == adapters["right"]
    assert served_sha256(setup) is None


def test_the_gate_accepts_an_adapter_that_answers_better_and_it_is_served(
    setup: dict[str, Any], adapters: dict[str, str]
) -> None:
    code, outcome = adapters_cli(setup, "promote", "right", "--questions", str(setup["questions"]))
    assert code == 0, outcome
    gate = {c["metric"]: c for c in outcome["gate"]["checks"]}
    assert outcome["promoted"] is True and outcome["forced"] is False
    assert gate["answer_accuracy"]["candidate"] >= gate["answer_accuracy"]["current"]
    assert served_sha256(setup) == adapters["right"]
    code, status = invoke_json(setup["data"], "status", **setup["env"])
    assert status["adapter"]["source"] == "registry" and status["adapter"]["name"] == "right"


def test_the_gate_refuses_an_adapter_that_regresses_unless_forced(
    setup: dict[str, Any], adapters: dict[str, str]
) -> None:
    code, outcome = adapters_cli(setup, "promote", "wrong", "--questions", str(setup["questions"]))
    assert code == 1 and outcome["promoted"] is False
    accuracy = outcome["gate"]["checks"][0]
    assert accuracy["metric"] == "answer_accuracy" and accuracy["regressed"] is True
    assert accuracy["candidate"] < accuracy["current"] - 0.02
    assert "answer_accuracy" in outcome["reason"]
    for role in ("current", "candidate"):  # both evaluations ran, one answer per question
        assert len(Path(outcome["results"][role]).read_text().splitlines()) == len(QUESTIONS)
    assert served_sha256(setup) == adapters["right"]

    code, outcome = adapters_cli(setup, "promote", "wrong", "--force")
    assert code == 0 and outcome["promoted"] is True and outcome["forced"] is True
    assert served_sha256(setup) == adapters["wrong"]


def test_rollback_serves_the_previous_adapter_then_the_base_model(
    setup: dict[str, Any], adapters: dict[str, str]
) -> None:
    code, outcome = adapters_cli(setup, "rollback")
    assert code == 0 and outcome == {**outcome, "rolled_back": "wrong", "served": "right"}
    assert served_sha256(setup) == adapters["right"]
    code, outcome = adapters_cli(setup, "rollback")
    assert code == 0 and outcome["served"] is None
    assert served_sha256(setup) is None


def test_every_step_is_in_the_verified_audit_trail(
    setup: dict[str, Any], adapters: dict[str, str]
) -> None:
    exported = invoke(setup["data"], "audit", "export", "--format", "jsonl", **setup["env"])
    records = [json.loads(line) for line in exported.stdout.splitlines()]
    steps = [
        (r["retrieval"]["action"], r["retrieval"]["adapter"], r["retrieval"].get("forced"))
        for r in records
        if r["outcome"] == "adapter"
    ]
    assert steps == [
        ("register", "right", None),
        ("register", "wrong", None),
        ("promote", "right", False),
        ("promote-refused", "wrong", None),
        ("promote", "wrong", True),
        ("rollback", "wrong", None),
        ("rollback", "right", None),
    ]
    adapter_records = [r for r in records if r["outcome"] == "adapter"]
    assert {r["user"] for r in adapter_records[2:]} == {"ops"}
    registered = adapter_records[0]["retrieval"]
    assert registered["sha256"] == adapters["right"] and registered["steps"] == STEPS
    # The gate's evaluations are in the trail too: 4 runs of 3 questions, as user `eval`.
    assert sum(1 for r in records if r["user"] == "eval") == 4 * len(QUESTIONS)
    verified = invoke(setup["data"], "audit", "verify", **setup["env"])
    assert verified.exit_code == 0, verified.output
