"""The `appliance` command."""

from __future__ import annotations

import typer

from appliance.cli.adapter_commands import adapters_app
from appliance.cli.ask_commands import ask, eval_set
from appliance.cli.audit_commands import audit_app
from appliance.cli.finetune_commands import finetune_app
from appliance.cli.index_commands import forget, ingest, status
from appliance.cli.model_commands import models_app
from appliance.cli.repair_commands import repair
from appliance.cli.serve_commands import serve
from appliance.cli.user_commands import keys_app, users_app
from appliance.offline import enforce_offline
from appliance.private_files import private_umask

app = typer.Typer(
    name="appliance",
    help="Private RAG appliance: ingest documents, and answer from them with a local model.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("ingest")(ingest)
app.command("forget")(forget)
app.command("status")(status)
app.command("repair")(repair)
app.command("ask")(ask)
app.command("eval")(eval_set)
app.command("serve")(serve)
app.add_typer(models_app, name="models")
app.add_typer(audit_app, name="audit")
app.add_typer(users_app, name="users")
app.add_typer(keys_app, name="keys")
app.add_typer(finetune_app, name="finetune")
app.add_typer(adapters_app, name="adapters")


def main() -> None:
    private_umask()  # data files 0600, folders 0700, whatever the caller's umask
    enforce_offline()
    app()
