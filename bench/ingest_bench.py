"""Ingest benchmark: `appliance ingest` end to end against raw `SentenceTransformer.encode`.

One run, on the Python 3.11 docs corpus (shared/evals/python311/README.md):
  1. runs the real CLI, `appliance ingest PATHS --json`, into a fresh temporary data dir,
     recording wall time, the report's own "seconds", and peak memory of the process tree;
  2. reads the chunk texts back from the store it built, ordered by (source, position), and
     times `model.encode` on exactly those texts with the same model, batch size and device;
  3. parses and splits the same files again in this process, timing each stage alone;
  4. prints chunks/s of the ingest over chunks/s of raw encoding (target >= 0.90, i.e. under
     10 % overhead; reported, not asserted) and the stage split: parse and split (measured
     alone; in the CLI they run in the parser process, overlapped with encoding), encode and
     write (from the report's "stages"), and the wait for the parser that was not overlapped.

    .venv/bin/python -m bench.ingest_bench [--subset faq] [--json] [--out FILE]

Exit status: 0 when it ran, 1 when the ingest itself failed, 2 when the corpus is missing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.output import emit

DOCS_ROOT = Path("/usr/share/doc/python3.11/html")
FOLDERS = ("library", "tutorial", "howto", "faq", "reference")
FILES = ("glossary.html",)
TARGET_OVERHEAD = 0.10
TARGET_RATIO = 0.90
SCROLL_PAGE = 1000
SAMPLE_S = 0.2
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def corpus_paths(root: Path, subset: str | None) -> list[Path]:
    if subset is not None:
        return [root / subset]
    return [root / name for name in FOLDERS] + [root / name for name in FILES]


def _tree_rss_bytes(root_pid: int) -> int:
    """Resident memory of root_pid and all its descendants now, from /proc."""
    parents: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])
    tree, frontier = {root_pid}, [root_pid]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in tree]
        tree.update(children)
        frontier.extend(children)
    total = 0
    for pid in tree:
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_BYTES
        except (OSError, IndexError, ValueError):
            continue
    return total


def run_ingest(paths: list[Path], env: dict[str, str]) -> dict[str, Any]:
    """Run `appliance ingest --json` as a child process; measure time and memory around it."""
    cli = Path(sys.executable).with_name("appliance")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak = [0]
    started = time.perf_counter()
    child = subprocess.Popen(
        [str(cli), "ingest", *map(str, paths), "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def sample() -> None:
        while child.poll() is None:
            peak[0] = max(peak[0], _tree_rss_bytes(child.pid))
            time.sleep(SAMPLE_S)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = child.communicate()
    wall = time.perf_counter() - started
    sampler.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    if child.returncode not in (0, 1):  # 1: some files failed, the report is still printed
        raise RuntimeError(f"appliance ingest exited {child.returncode}:\n{stderr.strip()}")
    report: dict[str, Any] = json.loads(stdout)
    return {
        "files": report["files"]["new"],
        "failed_files": len(report["files"]["failed"]),
        "chunks": report["chunks"]["total"],
        "wall_seconds": round(wall, 3),
        "report_seconds": report["seconds"],
        # ru_maxrss of children is the largest single process (CLI or parser), not their sum.
        "cpu_seconds": round(cpu, 2),  # CLI and parser process, user + system
        "max_process_rss_mib": (
            round(after.ru_maxrss / 1024, 1) if after.ru_maxrss > before.ru_maxrss else None
        ),
        "tree_rss_peak_mib": round(peak[0] / 2**20, 1),
        "stages": report.get("stages", {}),
        "exit_code": child.returncode,
    }


def read_chunk_texts(settings: Any) -> list[str]:
    """All chunk texts of the index, ordered by (source, position)."""
    from appliance.services import open_index

    index = open_index(settings)
    try:
        rows = sorted(
            (str(p["source"]), int(p["position"]), str(p["text"]))
            for _, p in index.store.iter_payloads(SCROLL_PAGE)
        )
    finally:
        index.close()
    return [text for _, _, text in rows]


def time_raw_encode(texts: list[str], batch_size: int, device: str) -> dict[str, Any]:
    from sentence_transformers import SentenceTransformer

    from appliance.models import resolve_embed_model

    started = time.perf_counter()
    model = SentenceTransformer(
        str(resolve_embed_model(None)), device=device, local_files_only=True
    )
    loaded, cpu_started = time.perf_counter(), time.process_time()
    model.encode(
        texts,
        batch_size=batch_size,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=False,
    )
    done, cpu_done = time.perf_counter(), time.process_time()
    return {
        "model_load_seconds": round(loaded - started, 3),
        "encode_seconds": round(done - loaded, 3),
        "encode_cpu_seconds": round(cpu_done - cpu_started, 2),
    }


def time_parse_split(paths: list[Path], settings: Any) -> dict[str, Any]:
    """Parse and split every file alone, in this process: the seconds of each stage."""
    from appliance.models import resolve_embed_model
    from ingest.chunking import ChunkConfig, Chunker
    from ingest.discovery import discover
    from ingest.loaders import load_sections

    config = ChunkConfig(
        resolve_embed_model(settings.embed_model), settings.chunk_size, settings.chunk_overlap
    )
    chunker = Chunker(config)
    files = discover(paths).files
    chunker.split(load_sections(files[0]))  # imports and first calls are not a stage
    parse_s = split_s = 0.0
    chunks = 0
    for path in files:
        started = time.perf_counter()
        try:
            sections = load_sections(path)
        except Exception:  # the ingest reports these files; they have no chunks
            continue
        parsed = time.perf_counter()
        chunks += len(chunker.split(sections))
        parse_s += parsed - started
        split_s += time.perf_counter() - parsed
    return {
        "parse_seconds": round(parse_s, 3),
        "split_seconds": round(split_s, 3),
        "chunks": chunks,
    }


def summarize(ingest: dict[str, Any], raw: dict[str, Any]) -> dict[str, Any]:
    encode_s = raw["encode_seconds"]
    chunks = ingest["chunks"]

    def overhead(seconds: float) -> float:
        return round((seconds - encode_s) / encode_s, 4)

    headline = overhead(ingest["report_seconds"])
    rate_raw = chunks / encode_s
    ratio = round(chunks / ingest["report_seconds"] / rate_raw, 3)
    return {
        "chunks_per_s_ratio": ratio,
        "target_ratio": TARGET_RATIO,
        "verdict_ratio": "PASS" if ratio >= TARGET_RATIO else "FAIL",
        "ratio_report_over_raw": round(ingest["report_seconds"] / encode_s, 3),
        "ratio_wall_over_raw": round(ingest["wall_seconds"] / encode_s, 3),
        "overhead_report": headline,
        "overhead_wall": overhead(ingest["wall_seconds"]),
        "target_overhead": TARGET_OVERHEAD,
        "verdict": "PASS" if headline < TARGET_OVERHEAD else "FAIL",
        "chunks_per_s_ingest_report": round(chunks / ingest["report_seconds"], 2),
        "chunks_per_s_ingest_wall": round(chunks / ingest["wall_seconds"], 2),
        "chunks_per_s_raw_encode": round(rate_raw, 2),
    }


def print_table(result: dict[str, Any]) -> None:
    ing, raw, s = result["ingest"], result["raw_encode"], result["summary"]
    print(
        f"corpus: {result['corpus']} ({ing['files']} files, {ing['failed_files']} failed, "
        f"{ing['chunks']} chunks); device {result['device']}, "
        f"batch size {result['batch_size']}, {result['cpus']} CPUs, "
        f"load average at start {result['load_average_1min']}"
    )
    print(f"{'measure':<44}{'seconds':>10}{'chunks/s':>11}{'CPU s':>9}")
    rows = [
        (
            "appliance ingest, report 'seconds' [headline]",
            ing["report_seconds"],
            s["chunks_per_s_ingest_report"],
            None,
        ),
        (
            "appliance ingest, wall clock (+start, load)",
            ing["wall_seconds"],
            s["chunks_per_s_ingest_wall"],
            ing["cpu_seconds"],
        ),
        (
            "raw SentenceTransformer.encode",
            raw["encode_seconds"],
            s["chunks_per_s_raw_encode"],
            raw["encode_cpu_seconds"],
        ),
        ("  (raw model load, not counted)", raw["model_load_seconds"], None, None),
    ]
    for name, seconds, rate, cpu in rows:
        print(
            f"{name:<44}{seconds:>10.2f}{'' if rate is None else f'{rate:>11.2f}'}"
            f"{'' if cpu is None else f'{cpu:>9.1f}'}"
        )
    rss = ing["max_process_rss_mib"]
    print(
        f"peak RSS: largest single process {'n/a' if rss is None else f'{rss} MiB'} "
        f"(ru_maxrss of children); whole tree {ing['tree_rss_peak_mib']} MiB "
        f"(sampled every {SAMPLE_S} s)"
    )
    print(
        f"ingest / raw encode: {s['ratio_report_over_raw']:.3f} (report seconds), "
        f"{s['ratio_wall_over_raw']:.3f} (wall clock)"
    )
    print_stages(result)
    print(
        f"chunks/s of appliance ingest / chunks/s of raw encode: {s['chunks_per_s_ratio']:.3f} "
        f"(target >= {TARGET_RATIO:.2f}): {s['verdict_ratio']}"
    )
    print(
        f"pipeline overhead over raw encoding: {s['overhead_report']:.1%} "
        f"(target < {TARGET_OVERHEAD:.0%}): {s['verdict']}  "
        f"[wall clock: {s['overhead_wall']:.1%}]"
    )


def print_stages(result: dict[str, Any]) -> None:
    stages, alone = result["ingest"]["stages"], result["parse_split_alone"]
    print("stage split (seconds):")
    rows = [
        ("parse (alone, this process; lxml)", alone["parse_seconds"]),
        ("split (alone, this process)", alone["split_seconds"]),
        ("encode (ingest; incl. the model's load)", stages.get("encode")),
        ("write (ingest: store, manifest)", stages.get("write")),
        ("wait for the parser (ingest: not overlapped)", stages.get("parse_wait")),
    ]
    for name, seconds in rows:
        print(f"  {name:<46}{'n/a' if seconds is None else f'{seconds:>8.2f}'}")


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ingest_bench",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument("--subset", choices=FOLDERS, help="only this folder (faq: a quick check)")
    parser.add_argument("--docs-root", type=Path, default=DOCS_ROOT, help="the docs' HTML root")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object")
    parser.add_argument("--out", type=Path, help="also write the JSON results to this file")
    parser.add_argument(
        "--keep-data",
        type=Path,
        help="build the index in this folder (emptied first) and keep it, e.g. for ask_bench",
    )
    return parser.parse_args(argv)


def _scratch(keep: Path | None) -> Any:
    """The data folder: `keep` (emptied first) or a temporary one."""
    if keep is None:
        return tempfile.TemporaryDirectory(prefix="ingest-bench-")
    shutil.rmtree(keep, ignore_errors=True)
    keep.mkdir(parents=True)
    return contextlib.nullcontext(str(keep.resolve()))


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    paths = corpus_paths(args.docs_root, args.subset)
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        print(
            f"the Python 3.11 docs are missing ({', '.join(missing)}): "
            "run `apt-get install python3.11-doc`",
            file=sys.stderr,
        )
        return 2

    from appliance.offline import enforce_offline
    from appliance.settings import load_settings

    enforce_offline()  # as the CLI does: same environment for both sides
    load_average = round(os.getloadavg()[0], 2)  # other work on the machine skews timings
    with _scratch(args.keep_data) as data_dir:
        base = load_settings()
        device = base.embed_device or "cpu"
        overrides = {
            "data_dir": Path(data_dir),
            "qdrant_path": Path(data_dir) / "qdrant",
            "embed_device": device,
        }
        env = {**os.environ, **{f"APPLIANCE_{k.upper()}": str(v) for k, v in overrides.items()}}
        try:
            ingest = run_ingest(paths, env)
        except RuntimeError as exc:
            print(f"the ingest failed: {exc}", file=sys.stderr)
            return 1
        settings = load_settings(**overrides)
        texts = read_chunk_texts(settings)
        alone = time_parse_split(paths, settings)
    if len(texts) != ingest["chunks"]:
        print(
            f"warning: the store holds {len(texts)} chunks, the report says {ingest['chunks']}",
            file=sys.stderr,
        )
    raw = time_raw_encode(texts, settings.embed_batch_size, device)
    result = {
        "corpus": args.subset or "python311",
        "device": device,
        "batch_size": settings.embed_batch_size,
        "cpus": os.cpu_count(),
        "load_average_1min": load_average,
        "ingest": ingest,
        "raw_encode": {"chunks": len(texts), **raw},
        "parse_split_alone": alone,
        "summary": summarize(ingest, raw),
    }
    emit(result, as_json=args.json, out=args.out, print_table=print_table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
