"""The adapter registry: versions copied in, a stack of promotions, the served adapter, and
an audit record written before each change (no record, no change)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appliance.audit import AuditLog
from appliance.audit.adapters import record_adapter_action
from appliance.errors import AuditError
from appliance.finetune import FinetuneError
from appliance.finetune.registry import (
    AdapterRegistry,
    AdapterVersion,
    Promotion,
    adapters_dir,
    with_served_adapter,
)
from appliance.settings import Settings
from tests.support.adapters import adapter


def nothing(*_: object) -> None:
    return None


@pytest.fixture
def registry(tmp_path: Path) -> AdapterRegistry:
    return AdapterRegistry(tmp_path / "data" / "adapters")


def test_an_added_adapter_is_copied_in_and_described(
    tmp_path: Path, registry: AdapterRegistry
) -> None:
    source = adapter(tmp_path / "run" / "first.gguf", seed=1)
    version = registry.add(source, "first", nothing)
    source.unlink()  # the run folder may go: the registry holds its own copy
    assert version.file == registry.folder / "first.gguf" and version.file.is_file()
    assert version.arch == "gemma3" and version.base_sha256 == "b" * 64
    assert version.source == str(source.resolve())
    assert registry.versions() == [version]
    assert registry.promoted() is None


def test_the_same_file_again_changes_nothing_but_another_file_under_the_name_is_refused(
    tmp_path: Path, registry: AdapterRegistry
) -> None:
    first = adapter(tmp_path / "first.gguf", seed=1)
    calls: list[AdapterVersion] = []
    registry.add(first, "first", calls.append)
    registry.add(first, "first", calls.append)
    assert len(calls) == 1  # one registration, one audit record
    with pytest.raises(FinetuneError, match="registered already"):
        registry.add(adapter(tmp_path / "other.gguf", seed=2), "first", calls.append)


def test_a_file_that_is_not_a_lora_adapter_or_a_bad_name_is_refused(
    tmp_path: Path, registry: AdapterRegistry
) -> None:
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf")
    with pytest.raises(FinetuneError, match="not a readable GGUF"):
        registry.add(junk, "junk", nothing)
    with pytest.raises(FinetuneError, match="adapter name"):
        registry.add(adapter(tmp_path / "a.gguf", seed=1), "../escape", nothing)
    assert registry.versions() == []


def test_promotions_stack_and_rollback_serves_the_one_before_then_the_base_model(
    tmp_path: Path, registry: AdapterRegistry
) -> None:
    for name, seed in (("first", 1), ("second", 2)):
        registry.add(adapter(tmp_path / f"{name}.gguf", seed), name, nothing)
    registry.promote("first", user="ops", forced=False, expected=None, record=nothing)
    registry.promote("second", user="ops", forced=True, expected="first", record=nothing)
    promoted = registry.promoted()
    assert promoted is not None and promoted.name == "second"
    assert [(p.name, p.forced, p.user) for p in registry.history()] == [
        ("first", False, "ops"),
        ("second", True, "ops"),
    ]
    seen: list[tuple[str, str | None]] = []

    def record(undone: Promotion, served: AdapterVersion | None) -> None:
        seen.append((undone.name, served.name if served else None))

    undone, served = registry.rollback(record)
    assert undone.name == "second" and served is not None and served.name == "first"
    undone, served = registry.rollback(record)
    assert undone.name == "first" and served is None
    assert seen == [("second", "first"), ("first", None)]
    with pytest.raises(FinetuneError, match="base model alone is served already"):
        registry.rollback(record)


def test_a_promotion_decided_against_a_stale_current_adapter_is_refused(
    tmp_path: Path, registry: AdapterRegistry
) -> None:
    for name, seed in (("first", 1), ("second", 2)):
        registry.add(adapter(tmp_path / f"{name}.gguf", seed), name, nothing)
    registry.promote("first", user="ops", forced=False, expected=None, record=nothing)
    with pytest.raises(FinetuneError, match="changed to first while"):
        registry.promote("second", user="ops", forced=False, expected=None, record=nothing)
    with pytest.raises(FinetuneError, match="no adapter named 'third'"):
        registry.promote("third", user="ops", forced=False, expected="first", record=nothing)


def test_no_audit_record_means_no_change(tmp_path: Path, registry: AdapterRegistry) -> None:
    registry.add(adapter(tmp_path / "first.gguf", seed=1), "first", nothing)

    def failing(*_: object) -> None:
        raise AuditError("the audit log cannot be written")

    with pytest.raises(AuditError):
        registry.promote("first", user="ops", forced=False, expected=None, record=failing)
    assert registry.promoted() is None
    registry.promote("first", user="ops", forced=False, expected=None, record=nothing)
    with pytest.raises(AuditError):
        registry.rollback(failing)
    promoted = registry.promoted()
    assert promoted is not None and promoted.name == "first"


def test_a_damaged_registry_file_is_named(registry: AdapterRegistry) -> None:
    registry.folder.mkdir(parents=True)
    registry.path.write_text("{not json", encoding="utf-8")
    with pytest.raises(FinetuneError, match=r"registry.json is damaged"):
        registry.promoted()


def test_the_promoted_adapter_is_served_unless_the_setting_overrides_it(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    assert with_served_adapter(settings).llm_adapter is None
    registry = AdapterRegistry(adapters_dir(settings))
    registry.add(adapter(tmp_path / "first.gguf", seed=1), "first", nothing)
    registry.promote("first", user="ops", forced=False, expected=None, record=nothing)
    assert with_served_adapter(settings).llm_adapter == registry.folder / "first.gguf"
    override = tmp_path / "hand-picked.gguf"
    assert (
        with_served_adapter(settings.model_copy(update={"llm_adapter": override})).llm_adapter
        == override
    )
    (registry.folder / "first.gguf").unlink()
    with pytest.raises(FinetuneError, match="missing its file"):
        with_served_adapter(settings)


def test_adapter_actions_are_chained_audit_records(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "data" / "audit.sqlite3", key_file=tmp_path / "audit.key") as audit:
        record_id = record_adapter_action(
            audit,
            user="ops",
            action="promote-refused",
            name="second",
            details={"sha256": "c" * 64, "gate": {"passed": False}},
            reason="regression: answer_accuracy 0.3333 against 1",
        )
        record = audit.get(record_id)
        assert audit.verify().ok
    assert record is not None
    data = record.to_json()
    assert data["outcome"] == "adapter" and data["question"] == "promote-refused: second"
    assert data["retrieval"]["action"] == "promote-refused"
    assert data["retrieval"]["sha256"] == "c" * 64
    assert data["error"].startswith("regression")
    assert json.loads(json.dumps(data)) == data
