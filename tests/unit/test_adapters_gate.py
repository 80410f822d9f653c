"""The promotion gate on recorded `appliance eval` summaries (the shape Scoreboard writes)."""

from __future__ import annotations

from typing import Any

from appliance.finetune.gate import judge


def summary(accuracy: float | None, precision: float | None, **other: Any) -> dict[str, Any]:
    return {
        "questions": 4,
        "failures": 0,
        "k": 5,
        "hit@5": 1.0,
        "mrr": 0.875,
        "answer_accuracy": accuracy,
        "citation_rate": 1.0 if precision is not None else 0.0,
        "citation_precision": precision,
        "latency_ms": {"total": {"p50": 900.0}},
        **other,
    }


def test_a_drop_in_answer_accuracy_beyond_the_margin_is_refused_with_both_numbers() -> None:
    verdict = judge(summary(0.75, 1.0), summary(0.5, 1.0), margin=0.02)
    assert not verdict.passed and verdict.regressions == ["answer_accuracy"]
    assert verdict.reason() == "answer_accuracy 0.5 against 0.75 (allowed drop 0.02)"


def test_a_drop_in_citation_precision_is_refused() -> None:
    verdict = judge(summary(0.75, 1.0), summary(1.0, 0.6667), margin=0.02)
    assert not verdict.passed and verdict.regressions == ["citation_precision"]


def test_a_drop_within_the_margin_and_a_gain_pass() -> None:
    assert judge(summary(0.5, 0.9), summary(0.48, 0.9), margin=0.02).passed
    assert judge(summary(0.5, 0.9), summary(0.75, 0.95), margin=0.0).passed
    assert not judge(summary(0.5, 0.9), summary(0.4999, 0.9), margin=0.0).passed


def test_a_candidate_that_stops_citing_has_regressed_but_two_that_never_cite_compare_equal() -> (
    None
):
    verdict = judge(summary(0.5, 1.0), summary(0.5, None), margin=0.02)
    assert verdict.regressions == ["citation_precision"]
    assert "citation_precision none against 1" in verdict.reason()
    assert judge(summary(0.5, None), summary(0.5, None), margin=0.02).passed
    assert judge(summary(0.5, None), summary(0.5, 0.4), margin=0.02).passed


def test_the_verdict_shows_every_metric_current_against_candidate() -> None:
    verdict = judge(summary(0.75, 1.0), summary(0.5, 1.0, failures=1), margin=0.1).to_json()
    rows = {row["metric"]: row for row in verdict["comparison"]}
    assert rows["answer_accuracy"] == {
        "metric": "answer_accuracy",
        "current": 0.75,
        "candidate": 0.5,
        "delta": -0.25,
    }
    assert rows["failures"]["candidate"] == 1.0 and rows["hit@k"]["delta"] == 0.0
    assert verdict["passed"] is False and verdict["margin"] == 0.1
    [accuracy, precision] = verdict["checks"]
    assert accuracy["regressed"] is True and precision["regressed"] is False
