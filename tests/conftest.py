from __future__ import annotations

from pathlib import Path

import pytest

from appliance.models import default_embed_model_path
from appliance.offline import enforce_offline

enforce_offline()


@pytest.fixture(scope="session")
def embed_model_dir() -> Path:
    return default_embed_model_path()


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's settings: no APPLIANCE_* variables, no .env file."""
    import os

    for name in list(os.environ):
        if name.startswith("APPLIANCE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))  # the audit key's default
    monkeypatch.chdir(tmp_path)
