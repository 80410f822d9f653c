"""`appliance ask` and `eval` end to end: real MiniLM, Qdrant Edge, Gemma GGUF through llama.cpp."""

import hashlib
import json
from pathlib import Path

import pytest

from appliance.models import GEMMA_3_270M, prepare_llm
from tests.integration.cli import run_cli, run_json

pytestmark = pytest.mark.integration

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
SECRET = "The merger with Northwind closes in May; its codename is PELICAN."


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepare_llm(GEMMA_3_270M, tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory, model: Path) -> Path:
    root = tmp_path_factory.mktemp("ask")
    data = root / "data"
    secret = root / "board" / "merger.txt"
    secret.parent.mkdir()
    secret.write_text(SECRET, encoding="utf-8")
    assert run_json(data, "ingest", str(SAMPLES))[0] == 0
    assert run_json(data, "ingest", str(secret.parent), "--acl", "board")[0] == 0
    return data


def ask(data: Path, model: Path, *args: str, **env: str) -> dict:  # type: ignore[type-arg]
    code, answer = run_json(data, "ask", *args, APPLIANCE_LLM_MODEL=str(model), **env)
    assert code == 0, answer
    return answer


def test_ask_answers_from_the_right_document_and_cites_it(data: Path, model: Path) -> None:
    answer = ask(data, model, "How many days of paid holiday does an employee get per year?")
    assert answer["outcome"] == "answered" and answer["answer"]
    assert Path(answer["sources"][0]["source"]).name == "employee-handbook.md"
    assert "28" in answer["answer"]
    assert set(answer["citations"]) <= {s["n"] for s in answer["sources"]}
    assert answer["model"]["sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
    assert answer["model"]["adapter_sha256"] is None
    assert answer["timings"]["first_token_ms"] > answer["timings"]["retrieve_ms"] > 0
    exported = run_cli(data, "audit", "export", "--format", "jsonl")
    records = [json.loads(line) for line in exported.stdout.splitlines()]
    mine = [r for r in records if r["id"] == answer["audit_id"]]
    assert mine and mine[0]["answer"] == answer["answer"]


def test_a_user_outside_the_group_never_sees_its_passages(data: Path, model: Path) -> None:
    question = "What is the codename of the Northwind merger?"
    outsider = ask(data, model, question, "--groups", "everyone")
    assert all("merger.txt" not in s["source"] for s in outsider["sources"])
    assert "PELICAN" not in (outsider["answer"] or "")
    insider = ask(data, model, question, "--groups", "board", "--retrieve-only")
    assert insider["outcome"] == "retrieved" and insider["answer"] is None
    assert Path(insider["sources"][0]["source"]).name == "merger.txt"


def test_passages_are_fitted_to_a_small_context_without_a_llama_error(
    data: Path, model: Path
) -> None:
    answer = ask(
        data,
        model,
        "What are the rules for travel, expenses, holidays, passwords and the office?",
        "--k",
        "20",
        APPLIANCE_LLM_CONTEXT_SIZE="512",
        APPLIANCE_LLM_MAX_TOKENS="128",
        APPLIANCE_SCORE_THRESHOLD="0",
    )
    # The model ran on what fitted (whether its answer is supported is not the subject here).
    assert answer["outcome"] in ("answered", "no-answer", "unsupported")
    assert answer["model"]["sha256"] and answer["timings"]["first_token_ms"]
    everything = ask(
        data,
        model,
        "What are the rules for travel, expenses, holidays, passwords and the office?",
        "--k",
        "20",
        "--retrieve-only",
        APPLIANCE_SCORE_THRESHOLD="0",
    )
    assert 1 <= len(answer["sources"]) < len(everything["sources"])  # the rest did not fit


def test_a_question_about_nothing_indexed_says_so(data: Path, model: Path) -> None:
    answer = ask(data, model, "Which telescope photographed the Crab nebula in 1998?")
    assert answer["outcome"] == "nothing-found" and answer["answer"] is None
    assert answer["message"] and answer["sources"] == []


def test_bad_options_are_clear_errors(data: Path, model: Path) -> None:
    result = run_cli(data, "ask", "anything", "--groups", " , ", APPLIANCE_LLM_MODEL=str(model))
    assert result.returncode == 2 and "--groups" in result.stderr
    result = run_cli(data, "ask", "anything?", APPLIANCE_LLM_MODEL=str(data / "missing.gguf"))
    assert result.returncode == 2 and "APPLIANCE_LLM_MODEL" in result.stderr
    assert "Traceback" not in result.stderr


def test_eval_scores_a_question_set_and_writes_one_result_per_question(
    data: Path, model: Path, tmp_path: Path
) -> None:
    questions = tmp_path / "questions.jsonl"
    rows = [
        {
            "id": "h1",
            "question": "How many days of paid holiday per year?",
            "answer": "28 days",
            "alternatives": ["28"],
            "sources": ["employee-handbook.md"],
        },
        {
            "id": "h2",
            "question": "Before what time must I tell my manager I am sick?",
            "answer": "09:30",
            "sources": ["employee-handbook.md"],
        },
    ]
    questions.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    out = tmp_path / "results.jsonl"
    code, summary = run_json(
        data, "eval", str(questions), "--out", str(out), APPLIANCE_LLM_MODEL=str(model)
    )
    assert code == 0
    assert summary["questions"] == 2 and summary[f"hit@{summary['k']}"] == 1.0
    assert 0 <= summary["answer_accuracy"] <= 1 and summary["latency_ms"]["total"]["p50"] > 0
    results = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in results] == ["h1", "h2"]
    assert all(r["sources"] for r in results)
    # An answer is shown exactly when one of its sentences is supported.
    assert all((r["answer"] is not None) == (r["outcome"] == "answered") for r in results)
    verify = run_cli(data, "audit", "verify")
    assert verify.returncode == 0 and "records verified" in verify.stdout
