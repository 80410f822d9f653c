"""Answer benchmark: quality, answer time and threads on the Python 3.11 docs, per model.

One run, on an index of the Python 3.11 docs (built first when --data-dir holds none):
  1. quality, for each of --models (default: the default and the small model): the dev set
     plus the unanswerable set (bench/evals/python311-unanswerable.jsonl), answered in-process
     as `appliance eval` does: hit@k, MRR, answer accuracy, citation rate and precision,
     supported sentences, declines of both kinds, answer time p50/p95 (the machine should be
     otherwise idle), against the targets of the answers issue;
  2. threads under load (first model): --load-questions questions answered while another
     process keeps one core busy, once with threads chosen per answer (the default) and once
     with one thread per core; answer time p50 of each and their ratio;
  3. `ask` against raw llama-cpp-python on exactly the prompts `ask` built (first model),
     alternating which goes first: time to first token and tokens/s, and the overhead of
     `ask` (target < 5 %).

    .venv/bin/python -m bench.ask_bench [--data-dir DIR] [--models NAME,...] [--json] [--out F]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from bench.ingest_bench import DOCS_ROOT, corpus_paths

DEV_SET = Path(__file__).resolve().parents[2] / "shared/evals/python311/questions.jsonl"
UNANSWERABLE = Path(__file__).resolve().parent / "evals/python311-unanswerable.jsonl"
TARGET_OVERHEAD = 0.05
# The answers issue: dev set, default model, 2 idle cores.
TARGETS = {
    "answer_accuracy": 0.60,
    "citation_rate": 0.95,
    "citation_precision": 0.80,
    "unanswerable_declined": 0.80,
}
TARGET_P50_MS = 12_000


def ensure_index(data_dir: Path, docs_root: Path) -> None:
    if (data_dir / "qdrant").is_dir():
        return
    print(f"building the index in {data_dir} (the whole corpus: long)", file=sys.stderr)
    cli = Path(sys.executable).with_name("appliance")
    env = {**os.environ, "APPLIANCE_DATA_DIR": str(data_dir)}
    paths = [str(p) for p in corpus_paths(docs_root, None)]
    done = subprocess.run([str(cli), "ingest", *paths, "--json"], env=env, check=False)
    if done.returncode not in (0, 1):
        raise SystemExit(f"the ingest failed (exit {done.returncode})")


def request(item: Any, k: int) -> Any:
    from appliance.answers import Question

    return Question(item.question, "bench", ("everyone",), k, channel="eval")


def quality(services: Any, questions: list[Any], k: int) -> dict[str, Any]:
    from appliance.evaluation import Scoreboard

    board = Scoreboard(k=k, generated=True)
    for item in questions:
        board.add(item, services.assistant.ask(request(item, k)))
    summary = board.summary()
    declined = summary["declined"]
    unanswerable = declined["unanswerable_questions"]
    summary["unanswerable_declined"] = (
        round(declined["unanswerable"] / unanswerable, 4) if unanswerable else None
    )
    return summary


@contextmanager
def one_core_busy() -> Iterator[None]:
    """Another program keeping one core busy, as ingestion does."""
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(1)
        yield
    finally:
        burner.kill()
        burner.wait()


def answer_ms(services: Any, questions: list[Any], k: int) -> list[float]:
    return [services.assistant.ask(request(item, k)).timings.total_ms for item in questions]


def under_load(settings: Any, questions: list[Any], k: int) -> dict[str, Any]:
    """Answer time with one core busy: threads per answer against one thread per core."""
    from appliance.generation import usable_cores
    from appliance.services import build_answer_services

    result: dict[str, Any] = {"questions": len(questions), "cores": usable_cores()}
    for label, threads in (("adaptive", None), ("fixed", usable_cores())):
        services = build_answer_services(settings.model_copy(update={"llm_threads": threads}))
        try:
            services.assistant.ask(request(questions[0], k))  # load and warm up
            with one_core_busy():
                times = answer_ms(services, questions, k)
        finally:
            services.close()
        result[f"{label}_p50_ms"] = round(statistics.median(times), 1)
    result["fixed_over_adaptive"] = round(result["fixed_p50_ms"] / result["adaptive_p50_ms"], 3)
    return result


def _time_stream(pieces: Any, started: float) -> tuple[float, float | None, int]:
    first: float | None = None
    last = started
    count = 0
    for _ in pieces:
        last = time.perf_counter()
        first = first if first is not None else last
        count += 1
    assert first is not None, "the model produced no token"
    rate = (count - 1) / (last - first) if count > 1 and last > first else None
    return (first - started) * 1000, rate, count


def prompt_for(services: Any, settings: Any, generator: Any, question: str, k: int) -> Any:
    """The prompt `ask` builds for this question, made with the same functions, or None."""
    from appliance.prompting import build_prompt
    from appliance.retrieval import Retriever, is_relevant

    retrieved = Retriever(services.embedder, services.index.store, settings.retrieval).search(
        question, ("everyone",), k
    )
    relevant = [p for p in retrieved if is_relevant(p, settings.score_threshold)]
    if not relevant:
        return None
    return build_prompt(
        question,
        relevant,
        mode=generator.mode,
        count_tokens=generator.count_tokens,
        context_size=generator.context_size,
        max_tokens=settings.llm_max_tokens,
        sanitize=generator.sanitize,
    ).prompt


def raw_pieces(raw: Any, prompt: Any, settings: Any) -> Iterator[Any]:
    """llama-cpp-python alone on the prompt: completion text, or the chat turns."""
    options = {
        "max_tokens": settings.llm_max_tokens,
        "temperature": settings.llm_temperature,
        "stop": list(prompt.stop),
        "stream": True,
    }
    if prompt.mode == "chat":
        for chunk in raw.create_chat_completion(messages=prompt.messages(), **options):
            if chunk["choices"][0]["delta"].get("content"):
                yield chunk
    else:
        yield from raw.create_completion(prompt.text, **options)


def speed(settings: Any, questions: list[Any], k: int) -> dict[str, Any]:
    """ask and raw llama-cpp-python on the same prompts, alternating which goes first.

    Both use one thread per core (ask would otherwise pick its threads per answer). Each of
    the two Llama instances sees each prompt once, so neither gains from llama.cpp's prompt
    cache more than the other.
    """
    from appliance.generation import usable_cores
    from appliance.services import build_answer_services

    settings = settings.model_copy(update={"llm_threads": usable_cores()})
    services = build_answer_services(settings)
    try:
        return _compare(services, settings, questions, k)
    finally:
        services.close()


def _compare(services: Any, settings: Any, questions: list[Any], k: int) -> dict[str, Any]:
    from appliance.answers import Token
    from appliance.services import build_generator

    generator = services.model.load()
    raw = cast(Any, build_generator(settings))._llm  # a second, independent llama_cpp.Llama
    rows = []
    for number, item in enumerate(questions):
        prompt = prompt_for(services, settings, generator, item.question, k)
        if prompt is None:
            continue

        def run_ask(item: Any = item) -> tuple[float, float | None, int]:
            started = time.perf_counter()
            events = services.assistant.stream(request(item, k))
            return _time_stream((e for e in events if isinstance(e, Token)), started)

        def run_raw(prompt: Any = prompt) -> tuple[float, float | None, int]:
            started = time.perf_counter()
            return _time_stream(raw_pieces(raw, prompt, settings), started)

        if number % 2 == 0:
            ask_result, raw_result = run_ask(), run_raw()
        else:
            raw_result, ask_result = run_raw(), run_ask()
        rows.append({"id": item.id, "ask": ask_result, "raw": raw_result})
    return _speed_summary(rows)


def _speed_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def median(side: str, index: int) -> float:
        values = [row[side][index] for row in rows if row[side][index] is not None]
        return statistics.median(values)

    ask_ttft, raw_ttft = median("ask", 0), median("raw", 0)
    ask_rate, raw_rate = median("ask", 1), median("raw", 1)
    ttft_overhead = ask_ttft / raw_ttft - 1
    rate_overhead = raw_rate / ask_rate - 1
    return {
        "questions": len(rows),
        "first_token_ms": {"ask": round(ask_ttft, 1), "raw": round(raw_ttft, 1)},
        "tokens_per_s": {"ask": round(ask_rate, 1), "raw": round(raw_rate, 1)},
        "overhead": {
            "first_token": round(ttft_overhead, 4),
            "tokens_per_s": round(rate_overhead, 4),
        },
        "target": TARGET_OVERHEAD,
        "meets_target": ttft_overhead < TARGET_OVERHEAD and rate_overhead < TARGET_OVERHEAD,
    }


def model_settings(base: Any, name: str) -> Any:
    return base.model_copy(update={"llm_model": name})


def run(args: argparse.Namespace) -> dict[str, Any]:
    from appliance.evaluation import load_questions
    from appliance.services import build_answer_services
    from appliance.settings import load_settings

    base = load_settings(data_dir=args.data_dir)
    questions = load_questions(args.questions) + load_questions(args.unanswerable)
    answerable = [q for q in questions if q.answerable]
    result: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "quality": {},
    }
    for name in args.models:
        services = build_answer_services(model_settings(base, name))
        try:
            result["quality"][name] = quality(services, questions, args.k)
        finally:
            services.close()
    if args.speed_questions:
        picked = answerable[: args.speed_questions]
        result["speed"] = speed(model_settings(base, args.models[0]), picked, args.k)
    if args.load_questions:
        picked = answerable[: args.load_questions]
        result["under_load"] = under_load(model_settings(base, args.models[0]), picked, args.k)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ask_bench", description=__doc__)
    parser.add_argument("--data-dir", type=Path, default=Path(".bench/data"))
    parser.add_argument("--docs-root", type=Path, default=DOCS_ROOT)
    parser.add_argument("--questions", type=Path, default=DEV_SET)
    parser.add_argument("--unanswerable", type=Path, default=UNANSWERABLE)
    parser.add_argument("--models", type=lambda v: v.split(","), default=None)
    parser.add_argument("--k", type=int, default=None, help="default: APPLIANCE_TOP_K")
    parser.add_argument("--speed-questions", type=int, default=8)
    parser.add_argument("--load-questions", type=int, default=6)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if not args.questions.is_file() or not args.docs_root.is_dir():
        print(
            f"need the dev set ({args.questions}) and the Python 3.11 docs ({args.docs_root}): "
            "run `apt-get install python3.11-doc`",
            file=sys.stderr,
        )
        return 2

    from appliance.models import DEFAULT_LLM, SMALL_LLM
    from appliance.offline import enforce_offline
    from appliance.settings import Settings

    enforce_offline()
    args.models = args.models or [DEFAULT_LLM, SMALL_LLM]
    args.k = args.k or Settings.model_fields["top_k"].default
    ensure_index(args.data_dir, args.docs_root)
    result = run(args)
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    if args.json:
        print(text)
    else:
        print_table(result)
    return 0


ROWS = (
    "hit@{k}",
    "mrr",
    "answer_accuracy",
    "citation_rate",
    "citation_precision",
    "supported_sentences",
    "unanswerable_declined",
)


def print_table(result: dict[str, Any]) -> None:
    models = list(result["quality"])
    print(f"quality on the dev set + unanswerable set (load {result['load_average_1min']})")
    print(f"  {'':24}" + "".join(f"{name:>22}" for name in models) + "      target")
    k = next(iter(result["quality"].values()))["k"]
    for row in ROWS:
        key = row.format(k=k)
        values = "".join(f"{_shown(result['quality'][m].get(key)):>22}" for m in models)
        goal = TARGETS.get(key)
        print(f"  {key:24}{values}" + (f"      >= {goal}" if goal else ""))
    for row in ("answerable", "answerable_with_answer_in_passages"):
        values = "".join(f"{result['quality'][m]['declined'][row]:>22}" for m in models)
        print(f"  {'declined ' + row[:15]:24}{values}")
    for percentile in ("p50", "p95"):
        values = "".join(
            f"{_shown(result['quality'][m]['latency_ms']['total'][percentile]):>22}" for m in models
        )
        limit = f"      <= {TARGET_P50_MS}" if percentile == "p50" else ""
        print(f"  {'answer ms ' + percentile:24}{values}{limit}")
    load = result.get("under_load")
    if load:
        print(
            f"one core busy ({load['questions']} answers, {load['cores']} cores): p50 "
            f"{load['adaptive_p50_ms']} ms with threads per answer, {load['fixed_p50_ms']} ms "
            f"with one per core: {load['fixed_over_adaptive']}x"
        )
    fast = result.get("speed")
    if fast:
        print(f"ask against raw llama-cpp-python ({fast['questions']} prompts, medians)")
        print(
            f"  {'first token ms':20} ask {fast['first_token_ms']['ask']}  raw "
            f"{fast['first_token_ms']['raw']}  overhead {fast['overhead']['first_token']:+.1%}"
        )
        print(
            f"  {'tokens/s':20} ask {fast['tokens_per_s']['ask']}  raw "
            f"{fast['tokens_per_s']['raw']}  overhead {fast['overhead']['tokens_per_s']:+.1%}"
        )
        verdict = "meets" if fast["meets_target"] else "MISSES"
        print(f"  {verdict} the target: overhead < {fast['target']:.0%}")


def _shown(value: Any) -> str:
    return "-" if value is None else str(value)


if __name__ == "__main__":
    sys.exit(main())
