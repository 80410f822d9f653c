"""The composition root builds every part of a process or none: a part that fails closes
those opened before it, and `close()` releases them all (the index can be opened again)."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from appliance.services import open_index
from appliance.services.ingest import build_ingest_services
from appliance.services.web import build_web_services
from appliance.settings import load_settings


def test_settings_give_the_file_size_limit_in_bytes(tmp_path: Path) -> None:
    assert load_settings(data_dir=tmp_path, max_file_size_mb=2.5).max_file_size_bytes == 2_500_000


def test_an_ingestion_run_built_from_the_settings_ingests_then_releases_the_index(
    tmp_path: Path,
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "wifi.txt").write_text("The guest wifi password is BLUEFALCON.\n", encoding="utf-8")
    (docs / "big.txt").write_text("x" * 2_000, encoding="utf-8")
    settings = load_settings(data_dir=tmp_path / "data", max_file_size_mb=0.001)
    with build_ingest_services(settings) as ingest:
        assert multiprocessing.active_children()  # the parser process, started early
        report = ingest.pipeline.run([docs], ["everyone"])
    assert report.new == 1 and report.chunks_total >= 1
    assert [Path(f.path).name for f in report.failed] == ["big.txt"]  # over 1,000 bytes
    assert not multiprocessing.active_children()  # the parser process was stopped
    index = open_index(settings)  # the store's lock was released
    try:
        assert [entry.source for entry in index.manifest.entries()] == [str(docs / "wifi.txt")]
    finally:
        index.close()
    with build_ingest_services(settings, rebuild=True) as repair:  # as `appliance repair`
        assert repair.index.store.count() == 0  # the collection starts empty
        assert len(list(repair.index.manifest.entries())) == 1  # the record of what to redo


def test_a_server_part_that_fails_closes_the_parts_opened_before_it(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path)
    settings.users_path.mkdir(parents=True)  # the user store cannot open a folder
    with pytest.raises(Exception):  # noqa: B017 - whatever the user store raises
        build_web_services(settings)
    index = open_index(settings)  # the store and manifest opened before it were closed
    index.close()
