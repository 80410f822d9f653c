"""`adapters list | add | promote | rollback`: fine-tuned adapters as versions, one served.

The served adapter is the promoted one (APPLIANCE_LLM_ADAPTER, when set, overrides it).
`promote` answers a question set with the candidate and with the served adapter and refuses
a regression unless forced; every change is an audit record. A running `serve` loads the
model, and so the adapter, once: restart it to serve a newly promoted or rolled-back adapter
(it also holds the index that the gate's evaluation opens: stop it before `promote`).
"""

from __future__ import annotations

import getpass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from appliance.audit.adapters import AdapterAction, record_adapter_action
from appliance.cli.ask_commands import GroupsOption, JsonOption, KOption, run_eval
from appliance.cli.common import EXIT_FAILED_FILES, print_json, settings_for_command, user_errors
from appliance.errors import ConfigError
from appliance.finetune import FinetuneError
from appliance.finetune.gate import GateVerdict, judge
from appliance.finetune.registry import (
    AdapterRegistry,
    AdapterVersion,
    Promotion,
    adapters_dir,
)
from appliance.services import open_audit_log
from appliance.settings import Settings

adapters_app = typer.Typer(
    help="Fine-tuned adapters as versions: list, add, promote (gated by an eval), roll back.",
    no_args_is_help=True,
)
RESTART = "restart `appliance serve` (or the container) to serve it"

UserOption = Annotated[
    str | None, typer.Option("--user", help="Who acts (audit log). Default: login name.")
]


def operator(user: str | None) -> str:
    if user:
        return user
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "cli"


def _registry(settings: Settings) -> AdapterRegistry:
    return AdapterRegistry(adapters_dir(settings))


def _record(
    settings: Settings,
    user: str,
    action: AdapterAction,
    name: str,
    details: dict[str, Any],
    reason: str | None = None,
) -> str:
    with open_audit_log(settings) as audit:
        return record_adapter_action(
            audit, user=user, action=action, name=name, details=details, reason=reason
        )


def register_adapter(
    settings: Settings, path: Path, name: str, user: str, details: dict[str, Any] | None = None
) -> AdapterVersion:
    """Add PATH to the registry as NAME, with its audit record (none when already there);
    `details` (how it was trained) go into the record."""

    def record(version: AdapterVersion) -> None:
        facts = {"sha256": version.sha256, "source": version.source, **(details or {})}
        _record(settings, user, "register", name, facts)

    return _registry(settings).add(path, name, record)


@adapters_app.command("list")
def list_adapters(as_json: JsonOption = False) -> None:
    """List the registered adapters, the promoted one, and what is served now."""
    with user_errors():
        settings = settings_for_command()
        registry = _registry(settings)
        versions = registry.versions()
        history = registry.history()
    promoted = history[-1].name if history else None
    override = str(settings.llm_adapter) if settings.llm_adapter is not None else None
    data = {
        "adapters": [{**v.to_json(), "promoted": v.name == promoted} for v in versions],
        "promoted": promoted,
        "promotions": [p.to_json() for p in history],
        "override": override,
    }
    if as_json:
        print_json(data)
        return
    for version in versions:
        mark = "*" if version.name == promoted else " "
        typer.echo(f"{mark} {version.name:24} {version.sha256[:12]}  {version.added_at}")
    if not versions:
        typer.echo("no adapters registered: `appliance finetune train` or `adapters add`")
    typer.echo(f"promoted: {promoted or 'none (the base model alone)'}")
    if override:
        typer.echo(f"served:   {override} (APPLIANCE_LLM_ADAPTER overrides the promoted one)")


@adapters_app.command("add")
def add_adapter(
    path: Annotated[Path, typer.Argument(help="A GGUF LoRA adapter (from `finetune train`).")],
    name: Annotated[str, typer.Option("--name", help="Its name in the registry.")],
    user: UserOption = None,
    as_json: JsonOption = False,
) -> None:
    """Copy a GGUF LoRA adapter into <data_dir>/adapters under NAME (not served yet)."""
    with user_errors():
        settings = settings_for_command()
        if not path.is_file():
            raise ConfigError(f"{path} is not a file: point at a GGUF LoRA adapter")
        version = register_adapter(settings, path, name, operator(user))
    if as_json:
        print_json(version.to_json())
    else:
        typer.echo(
            f"registered {version.name} (sha256 {version.sha256[:12]}): promote it with "
            f"`appliance adapters promote {version.name}`"
        )


@adapters_app.command("promote")
def promote(
    name: Annotated[str, typer.Argument(help="The registered adapter to serve.")],
    questions: Annotated[
        Path | None,
        typer.Option("--questions", help="Question set (APPLIANCE_EVAL_QUESTIONS)."),
    ] = None,
    margin: Annotated[
        float | None,
        typer.Option("--margin", min=0.0, max=1.0, help="Allowed drop (APPLIANCE_PROMOTE_MARGIN)."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Promote despite a regression (recorded as forced).")
    ] = False,
    k: KOption = None,
    groups: GroupsOption = "everyone",
    user: UserOption = None,
    as_json: JsonOption = False,
) -> None:
    """Serve NAME from now on, if it does not answer the question set worse than the served one.

    The set (APPLIANCE_EVAL_QUESTIONS or --questions) is answered as by `appliance eval`, once
    with the promoted adapter (the base model alone if none) and once with NAME. A drop in
    answer accuracy or citation precision larger than the margin (APPLIANCE_PROMOTE_MARGIN,
    default 0.02) refuses the promotion (exit 1) unless --force. Promotions and refusals are
    audit records. The evaluation opens the index, as `appliance eval` does: stop a running
    `appliance serve` first, and start it again to serve the new adapter.
    """
    with user_errors():
        settings = settings_for_command()
        registry = _registry(settings)
        candidate = registry.get(name)
        current = registry.promoted()
        if current is not None and current.name == name:
            raise FinetuneError(f"{name} is the promoted adapter already")
        question_file = questions or settings.eval_questions
        if question_file is None and not force:
            raise ConfigError(
                "no question set to evaluate the candidate on: set APPLIANCE_EVAL_QUESTIONS "
                "(or pass --questions), or --force to promote without one (recorded as forced)"
            )
        details: dict[str, Any] = {
            "sha256": candidate.sha256,
            "previous": current.name if current else None,
            "previous_sha256": current.sha256 if current else None,
            "base_model_sha256": _check_base(settings, candidate),
        }
        verdict = None
        if question_file is not None:
            chosen = settings.promote_margin if margin is None else margin
            verdict, evals = _evaluate(
                settings, question_file, current, candidate, k, groups, chosen
            )
            details.update(evals, gate=verdict.to_json())
        outcome = _decide(
            settings, registry, candidate, current, verdict, force, operator(user), details
        )
    _show_promotion(outcome, verdict, as_json)
    if not outcome["promoted"]:
        raise typer.Exit(EXIT_FAILED_FILES)


def _check_base(settings: Settings, candidate: AdapterVersion) -> str:
    """The served base model's sha256; an adapter trained on another base is refused."""
    from appliance.filehash import cached_sha256, hash_cache_path
    from appliance.services import resolve_llm_model

    if settings.llm_url:
        raise ConfigError(
            "APPLIANCE_LLM_URL sends questions to an LLM server, which loads its own adapters: "
            "promote adapters of the local model (unset APPLIANCE_LLM_URL)"
        )
    base = resolve_llm_model(settings)
    sha256 = cached_sha256(base, hash_cache_path(settings.models_dir))
    if candidate.base_sha256 and candidate.base_sha256 != sha256:
        raise FinetuneError(
            f"adapter {candidate.name} was trained on the base model with sha256 "
            f"{candidate.base_sha256[:12]}, but {base} (sha256 {sha256[:12]}) answers: set "
            "APPLIANCE_LLM_MODEL to the model it was trained on, or train it again"
        )
    return sha256


def _evaluate(
    settings: Settings,
    question_file: Path,
    current: AdapterVersion | None,
    candidate: AdapterVersion,
    k: int | None,
    groups: str,
    margin: float,
) -> tuple[GateVerdict, dict[str, Any]]:
    from appliance.evaluation import load_questions
    from appliance.filehash import sha256_of_file

    items = load_questions(question_file)
    top_k = k or settings.top_k
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = adapters_dir(settings) / "evals" / f"{stamp}-{candidate.name}"
    summaries = {}
    for role, version in (("current", current), ("candidate", candidate)):
        served = settings.model_copy(update={"llm_adapter": version.file if version else None})
        results = out.with_name(f"{out.name}.{role}.jsonl")
        summaries[role] = run_eval(served, items, results, top_k, False, groups)
    evals = {
        "questions": str(question_file.resolve()),
        "questions_sha256": sha256_of_file(question_file),
        "results": {role: summary["results"] for role, summary in summaries.items()},
    }
    return judge(summaries["current"], summaries["candidate"], margin), evals


def _decide(
    settings: Settings,
    registry: AdapterRegistry,
    candidate: AdapterVersion,
    current: AdapterVersion | None,
    verdict: GateVerdict | None,
    force: bool,
    user: str,
    details: dict[str, Any],
) -> dict[str, Any]:
    """Promote, or record the refusal: the outcome shown to the operator."""
    if verdict is not None and not verdict.passed and not force:
        reason = f"regression: {verdict.reason()}"
        audit_id = _record(settings, user, "promote-refused", candidate.name, details, reason)
        return {
            "promoted": False,
            "adapter": candidate.name,
            "reason": reason,
            "audit_id": audit_id,
            **details,
        }
    forced = force and (verdict is None or not verdict.passed)
    audit_ids: list[str] = []

    def record(promotion: Promotion) -> None:
        details["forced"] = promotion.forced
        audit_ids.append(_record(settings, user, "promote", candidate.name, details))

    registry.promote(
        candidate.name,
        user=user,
        forced=forced,
        expected=current.name if current else None,
        record=record,
    )
    override = str(settings.llm_adapter) if settings.llm_adapter is not None else None
    return {
        "promoted": True,
        "adapter": candidate.name,
        "forced": forced,
        "audit_id": audit_ids[0],
        "override": override,
        **details,
    }


def _show_promotion(outcome: dict[str, Any], verdict: GateVerdict | None, as_json: bool) -> None:
    if as_json:
        print_json(outcome)
        return
    if verdict is not None:
        typer.echo(_gate_table(verdict))
    name = outcome["adapter"]
    if not outcome["promoted"]:
        typer.echo(
            f"refused: {name} is not promoted, {outcome['reason']}; --force promotes "
            "it anyway (recorded as forced)",
            err=True,
        )
        return
    forced = " (forced)" if outcome["forced"] else ""
    typer.echo(f"promoted {name}{forced}: {RESTART}; audit id {outcome['audit_id']}")
    if outcome["override"]:
        typer.echo(
            f"note: APPLIANCE_LLM_ADAPTER={outcome['override']} is served instead until "
            "it is unset",
            err=True,
        )


def _gate_table(verdict: GateVerdict) -> str:
    def shown(value: float | None, signed: bool = False) -> str:
        if value is None:
            return "-"
        return f"{value:+.4g}" if signed else f"{value:.4g}"

    lines = [f"{'metric':20} {'current':>10} {'candidate':>10} {'delta':>10}"]
    for row in verdict.comparison:
        lines.append(
            f"{row['metric']:20} {shown(row['current']):>10} {shown(row['candidate']):>10} "
            f"{shown(row['delta'], signed=True):>10}"
        )
    return "\n".join(lines)


@adapters_app.command("rollback")
def rollback(user: UserOption = None, as_json: JsonOption = False) -> None:
    """Undo the last promotion: the one before it (or the base model alone) is served again.

    Recorded in the audit log. Restart `appliance serve` to serve it.
    """
    with user_errors():
        settings = settings_for_command()
        who = operator(user)
        audit_ids: list[str] = []

        def record(undone: Promotion, served: AdapterVersion | None) -> None:
            details = {
                "sha256": undone.sha256,
                "served_now": served.name if served else None,
                "served_now_sha256": served.sha256 if served else None,
            }
            audit_ids.append(_record(settings, who, "rollback", undone.name, details))

        undone, served = _registry(settings).rollback(record)
    data = {
        "rolled_back": undone.name,
        "served": served.name if served else None,
        "audit_id": audit_ids[0],
    }
    if as_json:
        print_json(data)
        return
    now_served = served.name if served else "the base model alone"
    typer.echo(f"rolled back {undone.name}; promoted now: {now_served}; {RESTART}")
