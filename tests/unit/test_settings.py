from pathlib import Path

import pytest

from appliance.errors import ConfigError
from appliance.settings import load_settings


def test_defaults_place_everything_under_the_data_dir() -> None:
    settings = load_settings()
    assert settings.data_dir == Path("data")
    assert settings.resolved_qdrant_path == Path("data/qdrant")
    assert settings.collection == "documents"


def test_environment_overrides_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPLIANCE_CHUNK_SIZE", "120")
    monkeypatch.setenv("APPLIANCE_QDRANT_PATH", "/srv/index")
    settings = load_settings()
    assert settings.chunk_size == 120
    assert settings.resolved_qdrant_path == Path("/srv/index")


def test_yaml_file_is_read_and_environment_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "appliance.yaml"
    config.write_text("collection: handbook\nchunk_size: 150\n", encoding="utf-8")
    monkeypatch.setenv("APPLIANCE_CONFIG", str(config))
    monkeypatch.setenv("APPLIANCE_CHUNK_SIZE", "100")
    settings = load_settings()
    assert settings.collection == "handbook"
    assert settings.chunk_size == 100


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("APPLIANCE_COLLECTION=from-dotenv\n", encoding="utf-8")
    assert load_settings().collection == "from-dotenv"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("APPLIANCE_CHUNK_SIZE", "5"),
        ("APPLIANCE_CHUNK_SIZE", "lots"),
        ("APPLIANCE_COLLECTION", "../escape"),
        ("APPLIANCE_MAX_FILE_SIZE_MB", "-1"),
    ],
)
def test_bad_value_names_the_setting(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert name in str(error.value)
    assert repr(value) in str(error.value)


def test_overlap_must_be_smaller_than_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPLIANCE_CHUNK_SIZE", "64")
    monkeypatch.setenv("APPLIANCE_CHUNK_OVERLAP", "64")
    with pytest.raises(ConfigError, match="chunk_overlap"):
        load_settings()


def test_missing_config_file_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPLIANCE_CONFIG", "/nowhere/appliance.yaml")
    with pytest.raises(ConfigError, match="APPLIANCE_CONFIG"):
        load_settings()


def test_a_bad_url_is_named_without_echoing_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPLIANCE_LLM_URL", "ftp://admin:hunter2@llm.internal/v1")
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert "APPLIANCE_LLM_URL" in str(error.value)
    assert "hunter2" not in str(error.value)
