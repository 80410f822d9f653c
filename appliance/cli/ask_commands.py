"""`ask` and `eval`: questions answered from the index, one at a time or as a scored set."""

from __future__ import annotations

import getpass
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from appliance.answers import Answer, Question
from appliance.cli.common import print_json, settings_for_command, user_errors
from appliance.errors import BusyError, ConfigError, ModelError, QuestionError
from appliance.evaluation import (
    EvalQuestion,
    Scoreboard,
    compare,
    comparison_table,
    load_questions,
)
from appliance.filehash import sha256_of_file
from appliance.services import build_answer_services
from appliance.settings import Settings

GroupsOption = Annotated[
    str, typer.Option("--groups", help="Comma-separated groups whose documents may be used.")
]
KOption = Annotated[
    int | None, typer.Option("--k", min=1, max=50, help="Passages to retrieve (APPLIANCE_TOP_K).")
]
RetrieveOnlyOption = Annotated[
    bool, typer.Option("--retrieve-only", help="Return the passages without generating.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]
AdapterOption = Annotated[
    Path | None,
    typer.Option(
        "--adapter", help="GGUF LoRA adapter loaded with the model (APPLIANCE_LLM_ADAPTER)."
    ),
]


def with_adapter(settings: Settings, adapter: Path | None) -> Settings:
    """The settings with --adapter in place of APPLIANCE_LLM_ADAPTER, when given."""
    return settings if adapter is None else settings.model_copy(update={"llm_adapter": adapter})


def parse_groups(value: str) -> tuple[str, ...]:
    groups = tuple(dict.fromkeys(g.strip() for g in value.split(",") if g.strip()))
    if not groups:
        raise ConfigError("--groups needs at least one group name, e.g. --groups everyone")
    return groups


def _default_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "cli"


def ask(
    question: Annotated[str, typer.Argument(help="The question, in quotes.")],
    user: Annotated[
        str | None, typer.Option("--user", help="Who asks (audit log). Default: login name.")
    ] = None,
    groups: GroupsOption = "everyone",
    k: KOption = None,
    retrieve_only: RetrieveOnlyOption = False,
    adapter: AdapterOption = None,
    as_json: JsonOption = False,
) -> None:
    """Answer QUESTION from the indexed documents with the local model, citing the passages.

    Only documents readable by --groups are searched. Each sentence of the answer is checked
    against the passage it cites; an answer with no supported sentence is not printed, and
    neither is one when no readable passage is relevant: the appliance says so instead. The
    answer is printed once its audit record is written.
    """
    with user_errors():
        settings = with_adapter(settings_for_command(served_adapter=True), adapter)
        request = Question(
            text=question,
            user=user or _default_user(),
            groups=parse_groups(groups),
            k=k or settings.top_k,
            retrieve_only=retrieve_only,
        )
        services = build_answer_services(settings)
        try:
            answer = services.assistant.ask(request)
        finally:
            services.close()
    if as_json:
        print_json(answer.to_json())
    else:
        _print_answer(answer)


UNSUPPORTED_MARK = "(not supported by the passage it cites)"


def shown_answer(answer: Answer) -> str:
    """The answer's sentences, each unsupported one followed by a mark."""
    if not answer.sentences:
        return answer.answer or "(the model gave an empty answer)"
    return " ".join(
        f"{s.text} {UNSUPPORTED_MARK}" if s.supported is False else s.text for s in answer.sentences
    )


def _print_answer(answer: Answer) -> None:
    if answer.answer is not None:
        typer.echo(shown_answer(answer))
    elif answer.message:
        typer.echo(answer.message)
    if answer.sources:
        typer.echo("\nSources:")
    for source in answer.sources:
        p = source.passage
        where = ", ".join(
            ([f"page {p.page}"] if p.page else []) + ([f"section {p.section}"] if p.section else [])
        )
        mark = "*" if source.n in answer.citations else " "
        suffix = f" ({where})" if where else ""
        typer.echo(f"{mark}[{source.n}] {p.source}{suffix}  score {p.score:.3f}")
    typer.echo(f"\naudit id {answer.audit_id}", err=True)


def eval_set(
    questions: Annotated[Path, typer.Argument(help="JSONL file: id, question, answer, ...")],
    out: Annotated[Path, typer.Option("--out", help="Where to write one result per line.")],
    k: KOption = None,
    retrieve_only: RetrieveOnlyOption = False,
    groups: GroupsOption = "everyone",
    adapter: AdapterOption = None,
    as_json: JsonOption = False,
) -> None:
    """Answer every question of a set and print hit@k, MRR, accuracy, citations and latency.

    The model is loaded once; each question is audited as user `eval`. Metric definitions are
    those of the evals README (normalised text contains the answer or an alternative).

    With --adapter the set is answered twice, by the base model alone and with the adapter,
    and base and adapter are shown side by side (JSON: "base", "adapter", "comparison"). The
    adapter run's results go next to --out, with ".adapter" before the suffix.
    """
    with user_errors():
        settings = settings_for_command(served_adapter=True)
        items = load_questions(questions)
        top_k = k or settings.top_k
        if adapter is None:
            summary = run_eval(settings, items, out, top_k, retrieve_only, groups)
        elif retrieve_only:
            raise ConfigError("--adapter compares answers: it cannot go with --retrieve-only")
        else:
            summary = _compare_eval(settings, adapter, items, out, top_k, groups)
    if as_json:
        print_json(summary)
    elif adapter is None:
        _print_summary(summary)
    else:
        _print_comparison(summary)


def adapter_results_path(out: Path) -> Path:
    return out.with_name(f"{out.stem}.adapter{out.suffix}")


def _compare_eval(
    settings: Settings,
    adapter: Path,
    items: list[EvalQuestion],
    out: Path,
    k: int,
    groups: str,
) -> dict[str, Any]:
    if not adapter.is_file():
        raise ConfigError(f"--adapter {adapter} is not a file: point it at a GGUF LoRA adapter")
    # The base model alone, whatever APPLIANCE_LLM_ADAPTER says.
    bare = settings.model_copy(update={"llm_adapter": None})
    base = run_eval(bare, items, out, k, False, groups)
    tuned = run_eval(
        with_adapter(settings, adapter), items, adapter_results_path(out), k, False, groups
    )
    return {
        "base": base,
        "adapter": {**tuned, "path": str(adapter.resolve()), "sha256": sha256_of_file(adapter)},
        "comparison": compare(base, tuned),
    }


def _print_comparison(summary: dict[str, Any]) -> None:
    adapter = summary["adapter"]
    typer.echo(f"adapter {adapter['path']} (sha256 {adapter['sha256'][:12]})")
    typer.echo(f"{summary['base']['questions']} questions, k={summary['base']['k']}\n")
    typer.echo(comparison_table(summary["comparison"]))
    typer.echo(f"\nresults: {summary['base']['results']} and {adapter['results']}")


def run_eval(
    settings: Settings,
    items: list[EvalQuestion],
    out: Path,
    k: int,
    retrieve_only: bool,
    groups: str,
) -> dict[str, Any]:
    board = Scoreboard(k=k, generated=not retrieve_only)
    services = build_answer_services(settings)
    show = sys.stderr.isatty()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w", encoding="utf-8") as results:
            for number, item in enumerate(items, start=1):
                request = Question(
                    text=item.question,
                    user="eval",
                    groups=parse_groups(groups),
                    k=k,
                    retrieve_only=retrieve_only,
                    channel="eval",
                )
                try:
                    answer = services.assistant.ask(request)
                except (QuestionError, BusyError, ModelError) as exc:  # recorded; go on
                    board.add_failure(item)
                    line: dict[str, Any] = {"id": item.id, "answer": None, "error": str(exc)}
                else:
                    line = _result_line(item, answer, board.add(item, answer))
                results.write(json.dumps(line, ensure_ascii=False) + "\n")
                results.flush()
                if show:
                    typer.echo(f"\r{number}/{len(items)} questions", nl=False, err=True)
    finally:
        services.close()
    if show:
        typer.echo("", err=True)
    return {**board.summary(), "results": str(out)}


def _result_line(item: EvalQuestion, answer: Answer, scores: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": item.id,
        "answer": answer.answer,
        "citations": list(answer.citations),
        "sources": [s.to_json() for s in answer.sources],
        "outcome": answer.outcome,
        "audit_id": answer.audit_id,
        "timings": answer.timings.to_json(),
        **scores,
    }


def _print_summary(summary: dict[str, object]) -> None:
    for key, value in summary.items():
        if isinstance(value, dict):
            value = "  ".join(f"{k}={v}" for k, v in value.items())
        typer.echo(f"{key:20} {value}")
