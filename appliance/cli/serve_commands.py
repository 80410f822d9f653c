"""`serve`: the web app, the OpenAI-compatible API, health and metrics, in one process."""

from __future__ import annotations

import os
import signal
from types import FrameType
from typing import Annotated

import typer

from appliance.cli.common import settings_for_command, user_errors


def _stop_on_terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to listen on. Default: APPLIANCE_HOST.")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port to listen on. Default: APPLIANCE_PORT (7860).")
    ] = None,
) -> None:
    """Serve the chat UI, the documents and audit pages and the /v1 API until Ctrl+C.

    The same process answers questions and ingests: uploads from the documents page, and
    APPLIANCE_DOCS_DIR, which is watched so added, changed and removed files show within
    seconds. Create a first user with `appliance users add`.
    """
    with user_errors():
        # `docker stop` and systemd send SIGTERM: stop as on Ctrl+C, closing the store and the
        # audit log (uvicorn re-raises the signal once it has stopped serving).
        signal.signal(signal.SIGTERM, _stop_on_terminate)
        settings = settings_for_command(served_adapter=True)
        # Gradio keeps uploads and the files it serves here, with the appliance's other state;
        # it reads this when imported.
        os.environ.setdefault(
            "GRADIO_TEMP_DIR", str(settings.data_dir.resolve() / "tmp" / "gradio")
        )
        from appliance.web.server import run_server

        run_server(settings, host or settings.host, port or settings.port)
