"""Concurrent API clients against a real `appliance serve`: every answer belongs to its own
question, nothing fails, and a full queue says "busy" (429) instead of failing."""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.integration.web_server import CODEWORD, WebServer, prepare

pytestmark = pytest.mark.integration

LOAD_S = 50


@dataclass(frozen=True)
class Case:
    user: str
    question: str
    document: str
    passage: str  # text of the passage that must rank first
    fact: str  # what the answer must say


CASES = [
    Case(
        "bob",
        "How many days of paid holiday does an employee get?",
        "employee-handbook.md",
        "28 days of paid holiday",
        "28",
    ),
    Case(
        "bob",
        "Before what time must I tell my manager that I am sick?",
        "employee-handbook.md",
        "before 09:30",
        "09:30",
    ),
    Case("bob", "How long must passwords be?", "it-security-policy.txt", "14 characters", "14"),
    Case(
        "bob", "When is the office open?", "office-guide.html", "open from 07:00 to 20:00", "07:00"
    ),
    Case(
        "bob",
        "How many parking spaces does the underground car park have?",
        "office-guide.html",
        "40 spaces",
        "40",
    ),
    Case("bob", "What is the hotel limit per night?", "travel-expenses.csv", "150 EUR", "150"),
    Case("bob", "What is the meal allowance per day?", "travel-expenses.csv", "45 EUR", "45"),
    Case(
        "dana",
        f"What is the budget of Project {CODEWORD}?",
        "board-minutes.txt",
        "41 million euros",
        "41 million",
    ),
]


@dataclass
class Outcome:
    case: Case
    statuses: list[int] = field(default_factory=list)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def name(source: dict[str, Any]) -> str:
    return str(source["source"]).rsplit("/", 1)[-1]


def api_questions(http: httpx.Client) -> float:
    """Answers counted for the API channel, all outcomes together."""
    text = http.get("/metrics").text
    counts = re.findall(r"^appliance_questions_total\{([^}]*)\} (\S+)$", text, re.MULTILINE)
    return sum(float(value) for labels, value in counts if 'channel="api"' in labels)


def gauge(http: httpx.Client, metric: str) -> float:
    found = re.search(rf"^{metric} (\S+)$", http.get("/metrics").text, re.MULTILINE)
    assert found, metric
    return float(found.group(1))


def keep_asking(server: WebServer, outcome: Outcome, deadline: float) -> None:
    case = outcome.case
    body = {"messages": [{"role": "user", "content": case.question}]}
    with server.client(server.keys[case.user]) as http:
        while time.monotonic() < deadline:
            try:
                response = http.post("/v1/chat/completions", json=body)
            except httpx.HTTPError as exc:
                outcome.errors.append(repr(exc))
                return
            outcome.statuses.append(response.status_code)
            if response.status_code == 200:
                outcome.bodies.append(response.json())


def check_own_answer(case: Case, body: dict[str, Any]) -> None:
    assert body["standalone_question"] == case.question
    assert body["outcome"] == "answered", body
    sources = body["sources"]
    assert name(sources[0]) == case.document, (case.question, sources[0])
    assert case.passage in sources[0]["text"], (case.question, sources[0]["text"])
    assert set(body["citations"]) <= {s["n"] for s in sources}
    assert case.fact in body["choices"][0]["message"]["content"], (case.question, body)
    if case.user != "dana":
        assert "board-minutes.txt" not in {name(s) for s in sources}
        assert "41 million" not in body["choices"][0]["message"]["content"]


def test_concurrent_clients_each_get_the_answer_to_their_own_question(
    web_server: WebServer,
) -> None:
    with web_server.client(web_server.keys["bob"]) as http:
        before = api_questions(http)
    outcomes = [Outcome(case) for case in CASES]
    deadline = time.monotonic() + LOAD_S
    threads = [
        threading.Thread(target=keep_asking, args=(web_server, o, deadline), name=f"client-{i}")
        for i, o in enumerate(outcomes)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(LOAD_S + 180)
    assert not any(thread.is_alive() for thread in threads)

    assert [o.errors for o in outcomes if o.errors] == []
    statuses = Counter(status for o in outcomes for status in o.statuses)
    # 8 clients, at most 1 generating and 7 waiting: the default queue of 8 never fills.
    assert set(statuses) == {200}, statuses
    assert all(len(o.bodies) >= 2 for o in outcomes), [len(o.bodies) for o in outcomes]
    for outcome in outcomes:
        for body in outcome.bodies:
            check_own_answer(outcome.case, body)
    audit_ids = [body["audit_id"] for o in outcomes for body in o.bodies]
    assert len(set(audit_ids)) == len(audit_ids)

    health = httpx.get(f"{web_server.url}/healthz", timeout=30)
    assert health.status_code == 200, health.text
    with web_server.client(web_server.keys["bob"]) as http:
        assert api_questions(http) - before == statuses[200]
        assert gauge(http, "appliance_queue_depth") == 0
        assert gauge(http, "appliance_model_busy") == 0


@pytest.fixture(scope="module")
def busy_server(
    tmp_path_factory: pytest.TempPathFactory, web_server: WebServer
) -> Iterator[WebServer]:
    """A second server whose model queue holds one waiting request."""
    server = prepare(
        tmp_path_factory.mktemp("busy"),
        with_secret=False,
        model=web_server.model,
        APPLIANCE_LLM_QUEUE_SIZE="1",
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def ask_together(server: WebServer, clients: int) -> list[httpx.Response | Exception]:
    """`clients` requests sent at the same moment, each on its own connection."""
    barrier = threading.Barrier(clients)
    results: list[httpx.Response | Exception] = [RuntimeError("no answer")] * clients

    def one(index: int) -> None:
        case = CASES[index % (len(CASES) - 1)]  # bob's questions only
        with server.client(server.keys["bob"]) as http:
            barrier.wait()
            try:
                results[index] = http.post(
                    "/v1/chat/completions",
                    json={"messages": [{"role": "user", "content": case.question}]},
                )
            except httpx.HTTPError as exc:
                results[index] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)
    return results


def test_a_full_queue_answers_busy_and_the_others_are_answered(busy_server: WebServer) -> None:
    responses: list[httpx.Response] = []
    for _ in range(5):  # a round where all arrive while one answer is generated
        round_ = ask_together(busy_server, 8)
        assert [r for r in round_ if isinstance(r, Exception)] == []
        responses += [r for r in round_ if isinstance(r, httpx.Response)]
        if any(r.status_code == 429 for r in responses):
            break
    statuses = Counter(r.status_code for r in responses)
    assert set(statuses) <= {200, 429}, statuses
    assert statuses[429] >= 1 and statuses[200] >= 2, statuses
    for response in responses:
        if response.status_code == 429:
            error = response.json()["error"]
            assert error["type"] == "rate_limit_error" and "busy" in error["message"]
        else:
            assert response.json()["outcome"] == "answered"

    # Two clients, one generating and one waiting, fit a queue of one: never busy.
    for _ in range(3):
        pair = ask_together(busy_server, 2)
        assert [r.status_code for r in pair if isinstance(r, httpx.Response)] == [200, 200]
    assert httpx.get(f"{busy_server.url}/healthz", timeout=30).status_code == 200
