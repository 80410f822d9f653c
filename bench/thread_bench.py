"""Thread plan benchmark: an answer's tokens/s alone, and while a folder is being ingested.

In one process, as the web server runs them: the local model (llama.cpp) and an IndexService
ingesting a folder of the Python 3.11 docs into a fresh temporary index. Each answer is the
same prompt, `--tokens` tokens at temperature 0, timed from its first token (generation) and
from the request (with reading the prompt). Measured, in this order:
  1. alone (after a warm-up answer);
  2. during ingestion, with the thread plan (appliance/threads.py: the default);
  3. during ingestion, without it (each answer takes the cores idle at its start; the
     embedder keeps every core): the behaviour before the plan;
  4. alone again (the machine's other load drifts: "alone" is the median of 1 and 4).
Target: generation tokens/s during ingestion >= 0.5 of alone (reported, not asserted).

    .venv/bin/python -m bench.thread_bench [--folder library] [--answers 2] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.ingest_bench import DOCS_ROOT
from bench.output import emit

TARGET_RATIO = 0.5
PROMPT = (
    "Explain, in about two hundred words and in plain English, how a Python program reads a "
    "text file line by line, what an encoding is, why one should open files with a `with` "
    "statement, and what happens when the file does not exist. End with a short example."
)
# Ingestion must be embedding, not starting up, when an answer begins.
START_TIMEOUT_S = 600


def answer(generator: Any, tokens: int) -> dict[str, float]:
    from appliance.generation import Prompt

    started = time.perf_counter()
    first = None
    pieces = 0
    for _ in generator.stream(Prompt("chat", PROMPT), tokens):
        pieces += 1  # llama-cpp-python streams one token per piece
        if first is None:
            first = time.perf_counter()
    done = time.perf_counter()
    assert first is not None, "the model produced no text"
    return {
        "tokens": pieces,
        "generation_tokens_per_s": round((pieces - 1) / max(done - first, 1e-9), 2),
        "answer_tokens_per_s": round(pieces / (done - started), 2),
        "first_token_s": round(first - started, 2),
    }


def summary(runs: list[dict[str, float]]) -> dict[str, Any]:
    return {
        "runs": runs,
        "generation_tokens_per_s": statistics.median(r["generation_tokens_per_s"] for r in runs),
        "answer_tokens_per_s": statistics.median(r["answer_tokens_per_s"] for r in runs),
    }


class Ingestion:
    """An IndexService ingesting `folder` in a thread, into its own temporary index."""

    def __init__(self, settings: Any, folder: Path, plan: Any) -> None:
        from appliance.services import build_embedder, open_index
        from ingest.chunking import ChunkConfig
        from ingest.service import IndexService

        self._scratch = tempfile.TemporaryDirectory(prefix="thread-bench-")
        data = Path(self._scratch.name)
        settings = settings.model_copy(update={"data_dir": data, "qdrant_path": data / "qdrant"})
        embedder = build_embedder(settings)
        self._index = open_index(settings, embedder)
        self.service = IndexService(
            self._index.store,
            embedder,
            self._index.manifest,
            ChunkConfig(self._index.embed_model_dir, settings.chunk_size, settings.chunk_overlap),
            settings.parse_timeout_s,
            settings.max_file_size_bytes,
            chunk_headers=settings.chunk_headers,
            thread_plan=plan,
        )
        self.chunks = 0
        self._thread = threading.Thread(
            target=self._run, args=(folder,), name="bench-ingest", daemon=True
        )

    def _run(self, folder: Path) -> None:
        from ingest.service import IngestCancelled

        def progress(job: Any) -> None:
            self.chunks = job.chunks_done

        with contextlib.suppress(IngestCancelled):  # stopped once the answers are done
            self.service.ingest([folder], ["everyone"], "bench", progress)

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while self.chunks == 0 and time.monotonic() < deadline and self._thread.is_alive():
            time.sleep(0.5)
        if self.chunks == 0:
            raise SystemExit("the ingestion embedded nothing: is the folder empty?")

    def stop(self) -> int:
        chunks = self.chunks
        self.service.close()
        self._thread.join()
        self._index.close()
        self._scratch.cleanup()
        return chunks


def during_ingestion(
    generator: Any, settings: Any, folder: Path, plan: Any, answers: int, tokens: int
) -> dict[str, Any]:
    ingestion = Ingestion(settings, folder, plan)
    ingestion.start()
    before, started = ingestion.chunks, time.perf_counter()
    try:
        runs = [answer(generator, tokens) for _ in range(answers)]
        alive = ingestion.service.current is not None
    finally:
        embedded = ingestion.chunks - before
        seconds = time.perf_counter() - started
        ingestion.stop()
    if not alive:
        print("warning: the ingestion ended before the answers did", file=sys.stderr)
    return {
        **summary(runs),
        "chunks_embedded_meanwhile": embedded,
        "ingest_chunks_per_s_meanwhile": round(embedded / seconds, 2),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    from appliance.generation import LlamaCppGenerator
    from appliance.offline import enforce_offline
    from appliance.services import build_thread_plan, resolve_llm_model
    from appliance.settings import load_settings
    from appliance.threads import usable_cores

    enforce_offline()
    settings = load_settings()
    plan = build_thread_plan(settings)
    generator = LlamaCppGenerator(
        resolve_llm_model(settings), context_size=2048, plan=plan, prompt_mode="auto"
    )
    folder = args.docs_root / args.folder
    answer(generator, 8)  # warm-up: load, first prompt
    # Answers alone before and after: the machine's other load drifts over the run.
    alone_runs = [answer(generator, args.tokens) for _ in range(args.answers)]
    planned = during_ingestion(generator, settings, folder, plan, args.answers, args.tokens)
    generator._plan = None  # the behaviour before the plan: idle cores only, no pacing
    unplanned = during_ingestion(generator, settings, folder, None, args.answers, args.tokens)
    generator._plan = plan
    alone_runs += [answer(generator, args.tokens) for _ in range(args.answers)]
    alone = summary(alone_runs)
    base = alone["generation_tokens_per_s"]
    return {
        "cores": usable_cores(),
        "ingest_threads_while_answering": plan.ingest_threads,
        "tokens": args.tokens,
        "alone": alone,
        "during_ingestion_with_plan": planned,
        "during_ingestion_without_plan": unplanned,
        "ratio_with_plan": round(planned["generation_tokens_per_s"] / base, 3),
        "ratio_without_plan": round(unplanned["generation_tokens_per_s"] / base, 3),
        "target_ratio": TARGET_RATIO,
    }


def print_table(result: dict[str, Any]) -> None:
    print(
        f"{result['cores']} cores; ingestion keeps {result['ingest_threads_while_answering']} "
        f"embedding threads while an answer streams; answers of {result['tokens']} tokens"
    )
    print(f"{'measure':<40}{'gen tok/s':>10}{'answer tok/s':>14}{'ingest chunks/s':>17}")
    for label, key in (
        ("answer alone", "alone"),
        ("during ingestion, thread plan", "during_ingestion_with_plan"),
        ("during ingestion, no plan (before)", "during_ingestion_without_plan"),
    ):
        row = result[key]
        rate = row.get("ingest_chunks_per_s_meanwhile")
        print(
            f"{label:<40}{row['generation_tokens_per_s']:>10.2f}{row['answer_tokens_per_s']:>14.2f}"
            f"{'' if rate is None else f'{rate:>17.2f}'}"
        )
    ratio = result["ratio_with_plan"]
    verdict = "PASS" if ratio >= TARGET_RATIO else "FAIL"
    print(
        f"generation tokens/s during ingestion / alone: {ratio:.3f} with the plan "
        f"(target >= {TARGET_RATIO}): {verdict}; {result['ratio_without_plan']:.3f} without"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.thread_bench",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument("--docs-root", type=Path, default=DOCS_ROOT, help="the docs' HTML root")
    parser.add_argument("--folder", default="library", help="the folder ingested meanwhile")
    parser.add_argument("--answers", type=int, default=2, help="answers per measure")
    parser.add_argument("--tokens", type=int, default=128, help="tokens per answer")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object")
    parser.add_argument("--out", type=Path, help="also write the JSON results to this file")
    args = parser.parse_args(argv)
    if not (args.docs_root / args.folder).is_dir():
        print("the Python 3.11 docs are missing: run `apt-get install python3.11-doc`")
        return 2
    emit(run(args), as_json=args.json, out=args.out, print_table=print_table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
