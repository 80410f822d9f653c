"""`finetune pairs`: headless review and export over a real keyed audit log and manifest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from appliance.audit import AuditLog
from appliance.audit.feedback import Feedback
from appliance.cli import app
from appliance.domain import DocumentEntry
from appliance.manifest import Manifest
from appliance.settings import load_settings
from tests.support.feedback import ANN, HUGO, PAY, WIFI, answer


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return result.exit_code, result.output


@pytest.fixture
def ids(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("APPLIANCE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("APPLIANCE_AUDIT_KEY_FILE", str(tmp_path / "key" / "audit.key"))
    settings = load_settings()
    manifest = Manifest(settings.manifest_path)
    for doc_id, source, acl in (WIFI, PAY):
        manifest.put(DocumentEntry(source, doc_id, 10, 1, acl, "2026-11-23T00:00:00Z"))
    manifest.close()
    with AuditLog(settings.audit_path, key_file=settings.resolved_audit_key_file) as audit:
        wifi = answer(audit, ANN, "Wifi password?", "It is BLUEFALCON [1].", WIFI)
        pay = answer(audit, HUGO, "Pay band?", "Band 7 [1].", PAY)
        feedback = Feedback(audit)
        return {
            "wifi": wifi,
            "pay": pay,
            "ann": feedback.rate(ANN, wifi, "up").id,
            "hugo": feedback.rate(HUGO, pay, "down", "Band 9").id,
        }


def test_review_and_export_from_the_command_line(ids: dict[str, str], tmp_path: Path) -> None:
    code, output = run("finetune", "pairs", "list", "--json")
    assert code == 0, output
    assert {item["id"] for item in json.loads(output)} == {ids["ann"], ids["hugo"]}

    code, output = run("finetune", "pairs", "approve", ids["ann"], "--reviewer", "ann")
    assert code == 2 and "your own feedback" in output
    code, output = run("finetune", "pairs", "list", "--status", "done")
    assert code == 2 and "--status 'done'" in output

    code, output = run("finetune", "pairs", "approve", ids["ann"], "--reviewer", "carol")
    assert code == 0 and "approved by carol" in output, output
    code, output = run(
        "finetune", "pairs", "approve", ids["hugo"], "--answer", "Band 9.", "--reviewer", "carol"
    )
    assert code == 0, output

    out = tmp_path / "pairs.jsonl"
    code, output = run("finetune", "pairs", "export", str(out), "--groups", "everyone")
    assert code == 0 and "1 approved pairs written" in output, output
    assert "/docs/hr/pay.txt, readable only by hr" in output
    [line] = out.read_text(encoding="utf-8").splitlines()
    assert json.loads(line)["audit_id"] == ids["wifi"]

    code, output = run(
        "finetune", "pairs", "reject", ids["hugo"], "--note", "no", "--reviewer", "dave"
    )
    assert code == 0 and "rejected by dave" in output
    code, output = run("finetune", "pairs", "export", str(out), "--json")
    assert code == 0 and json.loads(output)["ids"] == [ids["wifi"]]

    code, output = run("audit", "verify", "--json")
    assert code == 0 and json.loads(output)["ok"] is True, output
