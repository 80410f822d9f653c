"""What every command shares: settings loading, error reporting, JSON output."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer

from appliance.errors import ApplianceError, ConfigError
from appliance.private_files import private_dir
from appliance.settings import Settings, load_settings

EXIT_FAILED_FILES = 1
EXIT_USER_ERROR = 2


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    for noisy in ("sentence_transformers", "httpx", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn our errors into a one-paragraph message and an exit code, never a traceback."""
    try:
        yield
    except ApplianceError as exc:
        kind = "configuration error" if isinstance(exc, ConfigError) else "error"
        typer.echo(f"{kind}: {exc}", err=True)
        raise typer.Exit(EXIT_USER_ERROR) from None
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        typer.echo(
            f"error: {exc.strerror or exc}{where}: check the path and its permissions "
            "(APPLIANCE_DATA_DIR, APPLIANCE_QDRANT_PATH)",
            err=True,
        )
        raise typer.Exit(EXIT_USER_ERROR) from None
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(130) from None


def settings_for_command(served_adapter: bool = False) -> Settings:
    """The settings; with `served_adapter` (commands that answer), the adapter promoted with
    `appliance adapters promote` as `llm_adapter` unless APPLIANCE_LLM_ADAPTER overrides it."""
    settings = load_settings()
    configure_logging(settings.log_level)
    private_dir(settings.data_dir)
    if not served_adapter:
        return settings
    from appliance.finetune.registry import with_served_adapter

    return with_served_adapter(settings)


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))
