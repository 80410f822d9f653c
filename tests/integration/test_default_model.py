"""The default model end to end: Qwen2.5-Coder-1.5B joined from its packages, the samples
ingested with the real MiniLM and Qdrant Edge, answers checked sentence by sentence."""

import json
from pathlib import Path

import pytest

from appliance.models import DEFAULT_LLM, KNOWN_MODELS
from tests.integration.cli import run_cli, run_json

pytestmark = pytest.mark.integration

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder whose models are prepared as `make run` does: by name, not by path."""
    data = tmp_path_factory.mktemp("default") / "data"
    code, prepared = run_json(data, "models", "prepare")
    assert code == 0, prepared
    assert Path(prepared["llm"]).name == KNOWN_MODELS[DEFAULT_LLM].file_name
    assert run_json(data, "ingest", str(SAMPLES))[0] == 0
    return data


def ask(data: Path, question: str) -> dict:  # type: ignore[type-arg]
    code, answer = run_json(data, "ask", question)
    assert code == 0, answer
    return answer


def test_the_default_model_answers_right_and_every_shown_sentence_is_verified(
    data: Path,
) -> None:
    answer = ask(data, "How many days of paid holiday does an employee get per year?")
    assert answer["outcome"] == "answered", answer
    assert "28" in answer["answer"]
    assert answer["model"]["sha256"] == KNOWN_MODELS[DEFAULT_LLM].sha256
    by_number = {source["n"]: source for source in answer["sources"]}
    assert answer["citations"] and set(answer["citations"]) <= set(by_number)
    supported = [s for s in answer["sentences"] if s["supported"]]
    assert supported, answer["sentences"]
    for sentence in supported:
        quote = sentence["quote"]
        source = by_number[quote["n"]]
        assert quote["n"] in sentence["citations"]
        assert source["text"][quote["start"] : quote["end"]] == quote["text"]
    cited = {Path(by_number[n]["source"]).name for n in answer["citations"]}
    assert cited == {"employee-handbook.md"}
    assert " ".join(s["text"] for s in answer["sentences"]) == answer["answer"]


def test_the_record_holds_the_sentence_checks_the_user_was_shown(data: Path) -> None:
    answer = ask(data, "Which network must company laptops use?")
    assert answer["outcome"] == "answered" and "ACME-Corp" in answer["answer"]
    exported = run_cli(data, "audit", "export", "--format", "jsonl")
    record = next(
        r for r in map(json.loads, exported.stdout.splitlines()) if r["id"] == answer["audit_id"]
    )
    assert record["answer"] == answer["answer"]
    assert record["sentences"] == answer["sentences"]


def test_a_question_about_something_the_documents_never_mention_gets_no_answer(
    data: Path,
) -> None:
    answer = ask(data, "How many days of paid holiday do employees of the Munich office get?")
    assert answer["sources"], "the holiday passages are found, but none mentions Munich"
    assert answer["outcome"] == "no-answer" and answer["answer"] is None
    assert "'Munich'" in answer["message"]
    assert answer["model"]["sha256"] is None  # the model was not asked


def test_status_names_the_model_that_answers(data: Path) -> None:
    code, status = run_json(data, "status")
    assert code == 0
    assert status["llm"]["model"] == DEFAULT_LLM and status["llm"]["present"] is True
    assert status["llm"]["expected_sha256"] == KNOWN_MODELS[DEFAULT_LLM].sha256
