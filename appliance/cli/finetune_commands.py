"""`finetune build-data` and `finetune train`: adapt the local model to the organisation's data."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from appliance.cli.ask_commands import GroupsOption, JsonOption, KOption, parse_groups
from appliance.cli.common import print_json, settings_for_command, user_errors
from appliance.cli.pairs_commands import pairs_app, record_build
from appliance.errors import ConfigError
from appliance.settings import Settings

if TYPE_CHECKING:
    from appliance.finetune.run import TrainRequest
    from appliance.finetune.train import Hyperparameters
    from appliance.generation import Generator

finetune_app = typer.Typer(
    help="Fine-tune the local model on question/answer pairs: build data, train a LoRA adapter.",
    no_args_is_help=True,
)

finetune_app.add_typer(pairs_app, name="pairs")

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def _local_model(settings: Settings) -> Path:
    from appliance.services import resolve_llm_model

    if getattr(settings, "llm_url", None):
        raise ConfigError(
            "fine-tuning adapts the local GGUF model, but APPLIANCE_LLM_URL points at an LLM "
            "server: unset it (and set APPLIANCE_LLM_MODEL if the model is not the default)"
        )
    return resolve_llm_model(settings)


@finetune_app.command("build-data")
def build_data(
    pairs: Annotated[Path, typer.Argument(help='JSONL: {"question", "answer", "sources"?}.')],
    out: Annotated[Path, typer.Option("--out", help="Where to write the training examples.")],
    k: KOption = None,
    groups: GroupsOption = "everyone",
    keep_unsupported: Annotated[
        bool,
        typer.Option(
            "--keep-unsupported",
            help="Also keep pairs whose answer no retrieved passage contains (no citation).",
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Turn question/answer pairs into training examples built from the index.

    Each question is searched as `ask` would (same k, groups and score threshold) and its
    prompt built exactly as at question time; the target answer cites the passages that
    contain the answer, the other passages stay as distractors. Pairs whose answer no
    passage contains are listed and left out unless --keep-unsupported.

    --groups is the adapter's audience: only what they may read is searched, and an exported
    pair from a document none of them may read (when approved, or in the index now), or whose
    answer was written by a user holding other groups, is left out. Serve the adapter only to
    users holding every one of these groups. The build is recorded in the audit trail.
    """
    from appliance.audit.pairs import current_groups
    from appliance.finetune.data import build_examples, load_pairs, write_examples
    from appliance.retrieval import Retriever
    from appliance.services import build_embedder, open_index

    with user_errors():
        settings = settings_for_command()
        items = load_pairs(pairs)
        readers = parse_groups(groups)
        top_k = k or settings.top_k
        generator = _tokenizer_model(settings)
        embedder = build_embedder(settings)
        index = open_index(settings, embedder)
        try:
            retriever = Retriever(embedder, index.store, settings.retrieval)
            report = build_examples(
                items,
                lambda question: retriever.search(question, readers, top_k),
                generator,
                score_threshold=settings.score_threshold,
                max_tokens=settings.llm_max_tokens,
                keep_unsupported=keep_unsupported,
                audience=readers,
                current=current_groups(index.manifest),
            )
        finally:
            index.close()
        write_examples(report.examples, out)
        record_build(settings, pairs, out, readers, report)
    summary: dict[str, Any] = {**report.to_json(), "out": str(out), "k": top_k}
    if as_json:
        print_json(summary)
        return
    _print_build_report(summary)


def _tokenizer_model(settings: Settings) -> Generator:
    from appliance.services.answers import build_local_model

    return build_local_model(settings, _local_model(settings))


def _print_build_report(summary: dict[str, Any]) -> None:
    typer.echo(
        f"{summary['examples']} examples written to {summary['out']} from {summary['pairs']} "
        f"pairs ({summary['supported']} with cited passages, "
        f"{summary['distractors_per_example']} distractors per example)"
    )
    for label, key in (
        ("unsupported (no retrieved passage contains the answer)", "unsupported"),
        ("nothing found (no passage above the score threshold)", "nothing_found"),
        ("refused", "refused"),
        ("left out for the adapter's audience (--groups)", "restricted"),
    ):
        if summary[key]:
            typer.echo(f"{len(summary[key])} {label}:", err=True)
            for pair in summary[key]:
                typer.echo(f"  {pair['id']}: {pair.get('reason', pair['question'])}", err=True)


AlphaOption = Annotated[
    int, typer.Option("--alpha", min=1, help="LoRA alpha: the update is scaled by alpha/rank.")
]
MaxLengthOption = Annotated[
    int, typer.Option("--max-length", min=16, help="Longer examples are skipped (tokens).")
]
SaveEveryOption = Annotated[
    int, typer.Option("--save-every", min=1, help="Checkpoint every N steps.")
]
AdapterNameOption = Annotated[
    str | None, typer.Option("--name", help="Adapter file name. Default: the --out folder's.")
]
RestartOption = Annotated[
    bool, typer.Option("--restart", help="Discard the checkpoints in --out and start over.")
]
RegisterOption = Annotated[
    bool,
    typer.Option(
        "--register/--no-register",
        help="Add the adapter to the registry (`appliance adapters`) under its name.",
    ),
]


@finetune_app.command("train")
def train_command(
    data: Annotated[Path, typer.Argument(help="Training examples from `build-data`.")],
    out: Annotated[Path, typer.Option("--out", help="Run folder: adapter, manifest, checkpoints.")],
    steps: Annotated[int, typer.Option("--steps", min=1, help="Optimizer steps.")] = 200,
    rank: Annotated[int, typer.Option("--rank", min=1, max=256, help="LoRA rank.")] = 8,
    alpha: AlphaOption = 16,
    lr: Annotated[float, typer.Option("--lr", min=0.0, help="Learning rate.")] = 2e-4,
    dropout: Annotated[float, typer.Option("--dropout", min=0.0, max=0.9)] = 0.05,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Examples/step.")] = 1,
    max_length: MaxLengthOption = 2048,
    save_every: SaveEveryOption = 50,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "auto",
    name: AdapterNameOption = None,
    restart: RestartOption = False,
    register: RegisterOption = True,
    as_json: JsonOption = False,
) -> None:
    """Train a LoRA adapter of the local model on the examples; write DIR/<name>.gguf.

    The base GGUF (APPLIANCE_LLM_MODEL, or the default model) is dequantized into transformers
    once and cached in <data_dir>/models. The loss is on the answer tokens only. Checkpoints go
    to DIR/checkpoints; the same command again resumes from the latest. DIR/manifest.json
    records the base model and data sha256, hyper-parameters, losses and timings. The adapter
    is registered under its name (unless --no-register): serve it with `appliance adapters
    promote NAME`, or try it with `ask --adapter DIR/<name>.gguf`.
    """
    from appliance.finetune.run import run_training
    from appliance.finetune.train import Hyperparameters

    hyperparameters = Hyperparameters(
        steps=steps,
        rank=rank,
        alpha=alpha,
        learning_rate=lr,
        dropout=dropout,
        batch_size=batch_size,
        max_length=max_length,
        save_every=save_every,
        seed=seed,
    )
    with user_errors():
        settings = settings_for_command()
        request = _train_request(
            settings, data, out, name, device, hyperparameters, restart=restart, register=register
        )
        manifest = run_training(request, _progress(quiet=as_json), _status(quiet=as_json))
        if register:
            manifest = _register(settings, out, manifest)
    if as_json:
        print_json(manifest)
        return
    _print_train_report(manifest, out)


def _train_request(
    settings: Settings,
    data: Path,
    out: Path,
    name: str | None,
    device: str,
    hyperparameters: Hyperparameters,
    *,
    restart: bool,
    register: bool,
) -> TrainRequest:
    """The run `train` asks for, once --name and --device are checked (and, to register the
    adapter, its name is free)."""
    from appliance.finetune import run

    adapter_name = name or out.resolve().name
    if not NAME.match(adapter_name):
        raise ConfigError(
            f"--name {adapter_name!r}: use letters, digits, '.', '-' and '_' (or pass --name)"
        )
    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"--device {device!r}: use auto, cpu or cuda")
    if register:
        _check_name_free(settings, adapter_name)
    return run.TrainRequest(
        data=data,
        out_dir=out,
        name=adapter_name,
        base_gguf=_local_model(settings),
        models_dir=settings.models_dir,
        hyperparameters=hyperparameters,
        device=device,  # type: ignore[arg-type]
        restart=restart,
    )


def _print_train_report(manifest: dict[str, Any], out: Path) -> None:
    timings = manifest["timings"]
    losses = manifest["losses"]
    typer.echo(f"adapter:  {manifest['adapter']['path']}")
    typer.echo(f"sha256:   {manifest['adapter']['sha256']}")
    typer.echo(f"manifest: {out / 'manifest.json'}")
    if losses:
        typer.echo(f"loss:     {losses[0]['loss']} at step 1, {losses[-1]['loss']} at the end")
    typer.echo(f"s/step:   {timings['seconds_per_step_mean']} on {manifest['device']}")
    if manifest.get("registered"):
        typer.echo(
            f"registered as {manifest['registered']}: serve it with `appliance adapters promote`"
        )


def _check_name_free(settings: Settings, name: str) -> None:
    """Before training, not after: the adapter's name must not be registered already."""
    from appliance.finetune.registry import AdapterRegistry, adapters_dir

    registry = AdapterRegistry(adapters_dir(settings))
    known = {version.name: version for version in registry.versions()}.get(name)
    if known is not None:
        raise ConfigError(
            f"an adapter named {name!r} is registered already (from {known.source}): pass "
            "another --name, or --no-register"
        )


def _register(settings: Settings, out: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Register the adapter; the manifest, with the registered name, written again."""
    from appliance.cli.adapter_commands import operator, register_adapter
    from appliance.finetune.manifest import MANIFEST_FILE, write_json

    adapter = manifest["adapter"]
    training = {
        "base_model_sha256": manifest["base_model"]["sha256"],
        "training_data_sha256": manifest["training_data"]["sha256"],
        "steps": manifest["hyperparameters"]["steps"],
        "manifest": str(out / MANIFEST_FILE),
    }
    path, name = Path(adapter["path"]), adapter["name"]
    registered = register_adapter(settings, path, name, operator(None), training).name
    manifest = {**manifest, "registered": registered}
    write_json(out / MANIFEST_FILE, manifest)
    return manifest


def _status(quiet: bool) -> Any:
    def say(message: str) -> None:
        if not quiet:
            typer.echo(message, err=True)

    return say


def _progress(quiet: bool) -> Any:
    from appliance.cli.train_progress import LineTrainProgress, TrainProgressBar

    if not quiet and sys.stderr.isatty():
        return TrainProgressBar()
    return LineTrainProgress(quiet=quiet)


def adapter_status(settings: Settings) -> dict[str, str | None] | None:
    """The served adapter, its sha256 and where it is chosen, for `status`: `registry` (the
    promoted one, named) or `APPLIANCE_LLM_ADAPTER` (an override, naming any promoted one)."""
    from appliance.filehash import cached_sha256, hash_cache_path
    from appliance.finetune.registry import AdapterRegistry, adapters_dir
    from appliance.services import check_llm_files

    if settings.llm_adapter is None:
        return None
    check_llm_files(settings)
    path = settings.llm_adapter
    sha256 = cached_sha256(path, hash_cache_path(settings.models_dir))
    promoted = AdapterRegistry(adapters_dir(settings)).promoted()
    chosen = promoted is not None and promoted.file == path
    return {
        "path": str(path.resolve()),
        "sha256": sha256,
        "source": "registry" if chosen else "APPLIANCE_LLM_ADAPTER",
        "name": promoted.name if chosen and promoted else None,
        "promoted": promoted.name if promoted else None,
    }
