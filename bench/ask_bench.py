"""Answer benchmark: quality on the Python 3.11 dev set, and `ask` against raw llama-cpp-python.

One run, on an index of the Python 3.11 docs (built first when --data-dir holds none):
  1. `appliance eval` on the dev set, in-process: hit@5, MRR, answer accuracy, citation rate,
     citation precision and latency percentiles;
  2. for each of --speed-questions questions, the full `ask` path (embed, search, prompt,
     stream) and then raw `Llama.create_completion(stream=True)` on exactly the prompt `ask`
     built, on a second Llama instance with the same settings, in alternating order;
     time to first token and tokens/s of both, and the overhead of `ask` (target < 5 %).
     ask's first token is timed from the question (retrieval included), raw's from the call.

    .venv/bin/python -m bench.ask_bench [--data-dir DIR] [--questions FILE] [--json] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, cast

from bench.ingest_bench import DOCS_ROOT, corpus_paths

DEV_SET = Path(__file__).resolve().parents[2] / "shared/evals/python311/questions.jsonl"
TARGET_OVERHEAD = 0.05


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


def quality(services: Any, questions: list[Any], k: int) -> dict[str, Any]:
    from appliance.answers import Question
    from appliance.evaluation import Scoreboard

    board = Scoreboard(k=k, generated=True)
    for item in questions:
        request = Question(item.question, "bench", ("everyone",), k, channel="eval")
        board.add(item, services.assistant.ask(request))
    return board.summary()


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
    from appliance.retrieval import Retriever

    retrieved = Retriever(services.embedder, services.index.store).search(
        question, ("everyone",), k
    )
    relevant = [p for p in retrieved if p.score >= settings.score_threshold]
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


def speed(services: Any, settings: Any, questions: list[Any], k: int) -> dict[str, Any]:
    """ask and raw llama-cpp-python on the same prompts, alternating which goes first.

    Each of the two Llama instances sees each prompt once, so neither gains from llama.cpp's
    prompt cache more than the other.
    """
    from appliance.answers import Question, Token
    from appliance.services import build_generator

    generator = services.assistant.generator()
    if generator.mode != "completion":
        raise SystemExit("the speed comparison uses completion prompts: use a base model")
    raw = cast(Any, build_generator(settings))._llm  # a second, independent llama_cpp.Llama
    rows = []
    for number, item in enumerate(questions):
        prompt = prompt_for(services, settings, generator, item.question, k)
        if prompt is None:
            continue
        request = Question(item.question, "bench", ("everyone",), k, channel="eval")

        def run_ask(request: Any = request) -> tuple[float, float | None, int]:
            started = time.perf_counter()
            events = services.assistant.stream(request)
            return _time_stream((e for e in events if isinstance(e, Token)), started)

        def run_raw(prompt: Any = prompt) -> tuple[float, float | None, int]:
            started = time.perf_counter()
            stream = raw.create_completion(
                prompt.text,
                max_tokens=settings.llm_max_tokens,
                temperature=settings.llm_temperature,
                stop=list(prompt.stop),
                stream=True,
            )
            return _time_stream(stream, started)

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ask_bench", description=__doc__)
    parser.add_argument("--data-dir", type=Path, default=Path(".bench/data"))
    parser.add_argument("--docs-root", type=Path, default=DOCS_ROOT)
    parser.add_argument("--questions", type=Path, default=DEV_SET)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--speed-questions", type=int, default=10)
    parser.add_argument("--skip-quality", action="store_true")
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

    from appliance.evaluation import load_questions
    from appliance.offline import enforce_offline
    from appliance.services import build_answer_services
    from appliance.settings import load_settings

    enforce_offline()
    ensure_index(args.data_dir, args.docs_root)
    settings = load_settings(data_dir=args.data_dir)
    questions = load_questions(args.questions)
    services = build_answer_services(settings)
    load_average = round(os.getloadavg()[0], 2)
    try:
        result: dict[str, Any] = {"cpus": os.cpu_count(), "load_average_1min": load_average}
        if not args.skip_quality:
            result["quality"] = quality(services, questions, args.k)
        result["speed"] = speed(services, settings, questions[: args.speed_questions], args.k)
    finally:
        services.close()
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    if args.json:
        print(text)
    else:
        print_table(result)
    return 0


def print_table(result: dict[str, Any]) -> None:
    quality_result = result.get("quality")
    if quality_result:
        print("quality on the dev set")
        for key in (
            "questions",
            "hit@5",
            "mrr",
            "answer_accuracy",
            "citation_rate",
            "citation_precision",
        ):
            print(f"  {key:20} {quality_result.get(key)}")
        latency = quality_result["latency_ms"]
        print(f"  {'total ms':20} {latency['total']}")
        print(f"  {'first token ms':20} {latency['first_token']}")
    fast = result["speed"]
    print(f"ask against raw llama-cpp-python ({fast['questions']} prompts, medians)")
    print(
        f"  {'first token ms':20} ask {fast['first_token_ms']['ask']}  "
        f"raw {fast['first_token_ms']['raw']}  overhead {fast['overhead']['first_token']:+.1%}"
    )
    print(
        f"  {'tokens/s':20} ask {fast['tokens_per_s']['ask']}  "
        f"raw {fast['tokens_per_s']['raw']}  overhead {fast['overhead']['tokens_per_s']:+.1%}"
    )
    verdict = "meets" if fast["meets_target"] else "MISSES"
    print(
        f"  {verdict} the target: overhead < {fast['target']:.0%} "
        f"(load {result['load_average_1min']})"
    )


if __name__ == "__main__":
    sys.exit(main())
