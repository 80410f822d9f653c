"""Feedback to training data on a real `appliance serve` (Gemma 270M, Qdrant Edge, MiniLM):
users rate their own answers (and only theirs), an auditor reviews them in the Audit page and
over the API, the approved pairs are exported and built into training data by the real CLI,
the board-only pair never reaches data built for everyone, and every step is in the chain;
a document re-ingested for hr only then keeps the pair behind it out of that data too.
(Training on build-data's output is tests/integration/test_finetune.py's and
test_adapters.py's subject: a train here would add minutes and assert nothing new.)"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance.audit import AuditLog
from tests.integration.cli import invoke, invoke_json, run_cli, run_json
from tests.integration.web_server import CODEWORD, WebServer, gradio_call, prepare

pytestmark = pytest.mark.integration

HOLIDAY = "How many days of paid holiday does an employee get?"
SECRET = f"What is the budget of Project {CODEWORD}?"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, small_model: Path) -> Iterator[WebServer]:
    started = prepare(tmp_path_factory.mktemp("feedback"), model=small_model)
    started.start()
    try:
        yield started
    finally:
        started.stop()


def ask(server: WebServer, who: str, question: str) -> str:
    response = server.ask(server.keys[who], question)
    assert response.status_code == 200, response.text
    return str(response.json()["audit_id"])


def rate(server: WebServer, who: str, body: dict[str, Any]) -> Any:
    with server.client(server.keys[who]) as http:
        return http.post("/v1/feedback", json=body)


def audit_records(server: WebServer) -> list[Any]:
    key = Path(server.env["APPLIANCE_AUDIT_KEY_FILE"])
    with AuditLog(server.data_dir / "audit.sqlite3", read_only=True, key_file=key) as log:
        assert log.verify().ok
        return log.query()


def test_feedback_review_export_and_build_for_an_audience(server: WebServer) -> None:
    bob_answer = ask(server, "bob", HOLIDAY)
    dana_answer = ask(server, "dana", SECRET)  # from the board-only minutes

    stolen = rate(server, "bob", {"audit_id": dana_answer, "rating": "up"})
    assert stolen.status_code == 404, stolen.text
    assert CODEWORD not in stolen.text
    bob_rated = rate(
        server,
        "bob",
        {"audit_id": bob_answer, "rating": "down", "correction": "28 days of paid holiday"},
    )
    assert bob_rated.status_code == 201, bob_rated.text
    dana_rated = rate(
        server,
        "dana",
        {"audit_id": dana_answer, "rating": "down", "correction": "41 million euros"},
    )
    assert dana_rated.status_code == 201, dana_rated.text

    with server.as_user("bob") as bob:  # the review queue is the auditors'
        kind, message = gradio_call(bob, "review_queue", [])
        assert kind == "error" and "not available to your role" in str(message)
    with server.as_user("carol") as carol:
        kind, queue = gradio_call(carol, "review_queue", [])
        assert kind == "complete", queue
        rows = queue[0]["data"]
        assert {row[0] for row in rows} == {bob_rated.json()["id"], dana_rated.json()["id"]}
        kind, done = gradio_call(carol, "approve_feedback", [bob_rated.json()["id"], "", "", ""])
        assert kind == "complete" and "approved" in done[0], done
        approved = carol.post(f"/v1/feedback/{dana_rated.json()['id']}/approve", json={})
        assert approved.status_code == 200 and approved.json()["status"] == "approved"
        kind, shown = gradio_call(carol, "show", [bob_answer])
        assert kind == "complete"
        assert "Feedback and review" in shown[0] and "rated down" in shown[0]
        assert "review: approved" in shown[0]
    server.stop()  # build-data opens the index, which the server holds

    root = server.root
    everything, public, train = root / "all.jsonl", root / "public.jsonl", root / "train.jsonl"
    code, exported = run_json(server.data_dir, "finetune", "pairs", "export", str(everything))
    assert code == 0 and exported["pairs"] == 2, exported
    pairs = {p["audit_id"]: p for p in map(json.loads, everything.read_text().splitlines())}
    assert pairs[dana_answer]["answer"] == "41 million euros"
    board = [
        d for d in pairs[dana_answer]["documents"] if d["source"].endswith("board-minutes.txt")
    ]
    assert board and board[0]["acl"] == ["board"]

    code, narrowed = run_json(
        server.data_dir, "finetune", "pairs", "export", str(public), "--groups", "everyone"
    )
    assert code == 0 and narrowed["ids"] == [bob_answer], narrowed
    assert "board-minutes.txt, readable only by board" in narrowed["left_out"][0]["reason"]

    model = {"APPLIANCE_LLM_MODEL": str(server.model)}
    built = run_cli(
        server.data_dir, "finetune", "build-data", str(everything), "--out", str(train), **model
    )
    assert built.returncode == 0, built.stderr
    assert (
        f"pair {dana_answer} left out" in built.stderr and "readable only by board" in built.stderr
    )
    examples = [json.loads(line) for line in train.read_text().splitlines()]
    assert [e["id"] for e in examples] == [bob_answer]
    assert "41 million" not in train.read_text() and CODEWORD not in train.read_text()

    records = audit_records(server)
    steps = [(r.entry.user, r.entry.outcome) for r in records]
    assert ("bob", "denied") in steps and ("carol", "review") in steps
    assert steps.count(("carol", "review")) == 2
    assert {u for u, o in steps if o == "feedback"} == {"bob", "dana"}
    data = [r.entry.retrieval for r in records if r.entry.outcome == "training-data"]
    assert [d["action"] for d in data] == ["export pairs", "export pairs", "build training data"]
    assert data[2]["examples"] == [bob_answer] and data[2]["audience"] == ["everyone"]
    assert data[2]["sha256"] == hashlib.sha256(train.read_bytes()).hexdigest()  # names its data
    verified = run_cli(server.data_dir, "audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr

    # Re-ingested for hr only, a document keeps its doc_id: build-data reads its groups from
    # the index now, so bob's pair (approved when everyone could read it) no longer passes.
    narrowed = pairs[bob_answer]["documents"][0]["source"]
    assert invoke_json(server.data_dir, "ingest", narrowed, "--acl", "hr")[0] == 0
    rebuilt = invoke(
        server.data_dir, "finetune", "build-data", str(everything), "--out", str(train), **model
    )
    assert rebuilt.exit_code == 0, rebuilt.output
    assert (
        f"pair {bob_answer} left out: its answer came from {narrowed}, readable only by hr now"
        in (rebuilt.stderr)
    )
    assert train.read_text() == ""
