from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.web_server import WebServer, prepare


@pytest.fixture(scope="session")
def web_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    """One real `appliance serve` for all web tests: its start (~50 s) is paid once."""
    server = prepare(tmp_path_factory.mktemp("web"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
