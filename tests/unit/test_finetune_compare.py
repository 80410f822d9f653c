"""Base vs adapter: the comparison report of `eval --adapter`."""

from appliance.answers import Answer, Source, Timings
from appliance.domain import RetrievedPassage
from appliance.evaluation import EvalQuestion, Scoreboard, compare, comparison_table

QUESTION = EvalQuestion("q1", "Which exception?", "JSONDecodeError", (), ("library/json.html",))
GOOD = RetrievedPassage("c1", "d", "/h/library/json.html", 0, "a JSONDecodeError is raised", 0.8)
OTHER = RetrievedPassage("c2", "d", "/h/library/pickle.html", 0, "pickle errors", 0.5)


def answered(text: str, citations: tuple[int, ...], total_ms: float) -> Answer:
    sources = (Source(1, GOOD), Source(2, OTHER))
    timings = Timings(5.0, 10.0, total_ms, 20.0)
    return Answer("answered", text, None, citations, sources, None, "id", timings, (GOOD, OTHER))


def summary(*answers: Answer) -> dict:  # type: ignore[type-arg]
    board = Scoreboard(k=5, generated=True)
    for answer in answers:
        board.add(QUESTION, answer)
    return board.summary()


def test_the_comparison_shows_each_metric_for_base_and_adapter_and_the_change() -> None:
    base = summary(
        answered("It raises ValueError.", (), 900.0), answered("No idea [2].", (2,), 1100.0)
    )
    tuned = summary(
        answered("A JSONDecodeError [1].", (1,), 500.0),
        answered("JSONDecodeError [1][2].", (1, 2), 700.0),
    )
    rows = {row["metric"]: row for row in compare(base, tuned)}
    assert rows["answer_accuracy"] == {
        "metric": "answer_accuracy",
        "base": 0.0,
        "adapter": 1.0,
        "delta": 1.0,
    }
    assert rows["citation_rate"]["base"] == 0.5 and rows["citation_rate"]["adapter"] == 1.0
    assert rows["citation_precision"]["base"] == 0.0
    assert rows["citation_precision"]["adapter"] == round(2 / 3, 4)
    assert rows["hit@k"]["base"] == rows["hit@k"]["adapter"] == 1.0
    assert rows["hit@k"]["delta"] == 0.0
    assert rows["latency_ms_p50"]["base"] == 900.0 and rows["latency_ms_p50"]["delta"] == -400.0
    assert list(rows)[:3] == ["answer_accuracy", "citation_rate", "citation_precision"]


def test_a_metric_without_a_value_shows_as_a_dash() -> None:
    base = summary(answered("It raises ValueError.", (), 900.0))  # nothing cited: no precision
    tuned = summary(answered("JSONDecodeError [1].", (1,), 800.0))
    table = comparison_table(compare(base, tuned))
    lines = table.splitlines()
    assert lines[0].split() == ["metric", "base", "adapter", "delta"]
    precision = next(line for line in lines if line.startswith("citation_precision"))
    assert precision.split() == ["citation_precision", "-", "1", "-"]
    accuracy = next(line for line in lines if line.startswith("answer_accuracy"))
    assert accuracy.split() == ["answer_accuracy", "0", "1", "+1"]
