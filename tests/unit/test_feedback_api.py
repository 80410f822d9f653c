"""`/v1/feedback` behind the real guard and user store, over answers the assistant really
recorded (scripted model): own answers only, auditors review, every step in the chain."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.feedback_api import Api


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    opened = Api(tmp_path)
    yield opened
    opened.close()


def test_rate_only_your_own_answer_then_an_auditor_approves_it(api: Api) -> None:
    ann = api.ask("ann", "what is the guest wifi password?")
    hugo = api.ask("hugo", "what are the salary bands for engineers?")

    stolen = api.post("ann", "/v1/feedback", {"audit_id": hugo, "rating": "down"})
    assert stolen.status_code == 404, stolen.text
    assert stolen.json()["error"]["type"] == "not_found_error"
    bad = api.post("ann", "/v1/feedback", {"audit_id": ann, "rating": "meh"})
    assert bad.status_code == 400 and "rating" in bad.json()["error"]["message"]

    rated = api.post("ann", "/v1/feedback", {"audit_id": ann, "rating": "up"})
    assert rated.status_code == 201, rated.text
    feedback_id = rated.json()["id"]
    assert rated.json()["status"] == "open" and rated.json()["audit_id"] == ann
    hr = api.post(
        "hugo", "/v1/feedback", {"audit_id": hugo, "rating": "down", "correction": "Band 9"}
    )
    assert hr.status_code == 201

    mine = api.get("ann", "/v1/feedback").json()["data"]
    assert [item["id"] for item in mine] == [feedback_id]  # a user sees only their own
    everyone = api.get("carol", "/v1/feedback?status=open").json()["data"]
    assert {item["user"] for item in everyone} == {"ann", "hugo"}

    forbidden = api.post("ann", f"/v1/feedback/{feedback_id}/approve", {})
    assert forbidden.status_code == 403
    approved = api.post("carol", f"/v1/feedback/{feedback_id}/approve", {"note": "right"})
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "approved" and approved.json()["reviewer"] == "carol"
    rejected = api.post("carol", f"/v1/feedback/{hr.json()['id']}/reject", {})
    assert rejected.json()["status"] == "rejected"
    missing = api.post("carol", "/v1/feedback/nope/approve", {})
    assert missing.status_code == 404

    [pair] = api.feedback.pairs()
    assert pair.id == ann and pair.answer == "The password is BLUEFALCON."
    assert {d.source: d.acl for d in pair.documents}["/docs/wifi.txt"] == ("everyone",)

    audit = api.harness.audit
    records = audit.query()
    kinds = [(r.entry.user, r.entry.outcome) for r in records if r.entry.outcome != "answered"]
    assert ("ann", "denied") in kinds  # her try on hugo's answer
    assert kinds.count(("carol", "review")) == 2 and ("ann", "feedback") in kinds
    denial = next(r for r in records if r.entry.outcome == "denied")
    assert hugo in denial.entry.question
    assert audit.verify().ok
