"""`models prepare`: put the default models where the appliance loads them from."""

from __future__ import annotations

from typing import Annotated

import typer

from appliance.cli.common import print_json, settings_for_command, user_errors
from appliance.models import prepare_default_llm, resolve_embed_model

models_app = typer.Typer(help="Prepare and inspect the local models.", no_args_is_help=True)


@models_app.command("prepare")
def prepare(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Assemble the default GGUF model (checking its sha256) and locate the embedding model."""
    with user_errors():
        settings = settings_for_command()
        llm_path = prepare_default_llm(settings.models_dir)
        embed_path = resolve_embed_model(settings.embed_model)
    if as_json:
        print_json({"llm": str(llm_path), "embedding": str(embed_path)})
    else:
        typer.echo(f"llm:       {llm_path}")
        typer.echo(f"embedding: {embed_path}")
