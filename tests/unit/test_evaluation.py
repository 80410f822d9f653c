from pathlib import Path

import pytest

from appliance.answers import Answer, Source, Timings
from appliance.domain import RetrievedPassage
from appliance.evaluation import (
    EvalQuestion,
    EvalSetError,
    Scoreboard,
    load_questions,
    percentiles,
    source_matches,
)

QUESTION = EvalQuestion(
    id="q1",
    question="Which exception?",
    answer="JSONDecodeError",
    alternatives=("json.JSONDecodeError",),
    sources=("library/json.html",),
)


def source(n: int, path: str, text: str) -> Source:
    return Source(n, RetrievedPassage(f"c{n}", "d", path, 0, text, 0.5))


def answer(text: str | None, sources: list[Source], citations: tuple[int, ...]) -> Answer:
    return Answer(
        "answered",
        text,
        None,
        citations,
        tuple(sources),
        None,
        "id",
        Timings(5.0, 10.0, 20.0, 30.0),
        retrieved=tuple(s.passage for s in sources),
    )


def test_stored_absolute_paths_match_corpus_relative_sources() -> None:
    assert source_matches("/usr/share/doc/python3.11/html/library/json.html", "library/json.html")
    assert not source_matches("/x/library/simplejson.html", "library/json.html")


def test_hit_rank_mrr_accuracy_citations() -> None:
    board = Scoreboard(k=5, generated=True)
    result = answer(
        "It raises a  JSONDecodeError [2].",
        [
            source(1, "/h/library/pickle.html", "JSONDecodeError is mentioned elsewhere"),
            source(2, "/h/library/json.html", "a JSONDecodeError will be raised"),
            source(3, "/h/library/json.html", "unrelated"),
        ],
        (2, 3),
    )
    assert board.add(QUESTION, result) == {"hit_rank": 2, "correct": True}
    board.add(QUESTION, answer("No idea.", [], ()))
    summary = board.summary()
    assert summary["hit@5"] == 0.5 and summary["mrr"] == 0.25
    assert summary["answer_accuracy"] == 0.5
    assert summary["citation_rate"] == 0.5
    assert summary["citation_precision"] == 0.5  # [2] supports the answer, [3] does not


def test_percentiles_use_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentiles(values) == {"p50": 50.0, "p90": 90.0, "p95": 95.0, "max": 100.0}
    assert percentiles([]) is None


def test_bad_question_files_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text('{"id": "a", "question": "ok?"}\n{"id": "b"}\n', encoding="utf-8")
    with pytest.raises(EvalSetError, match=r"q\.jsonl:2: field 'question'"):
        load_questions(path)
    path.write_text("not json\n", encoding="utf-8")
    with pytest.raises(EvalSetError, match=r"q\.jsonl:1: not valid JSON"):
        load_questions(path)
