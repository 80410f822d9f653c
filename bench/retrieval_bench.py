"""Retrieval benchmark: dense, BM25 and hybrid on the Python 3.11 docs, and latency at 100k.

One run:
  1. quality, for each index given (--data-dir, and --plain-data-dir for an index built with
     APPLIANCE_CHUNK_HEADERS=false; each is built first when missing): hit@1, hit@5, MRR of
     the dev set and of the identifier set in each mode (dense, sparse, hybrid, and the
     fused RRF order as an experiment), top 10 searched as a user of the `everyone` group;
     a hit is a passage of the question's source holding its answer (the README's
     definition);
  2. filtered search latency on a synthetic Qdrant Edge collection of --synthetic-chunks
     chunks (random unit vectors, BM25 vectors of generated text, 10 groups): p50/p95 per
     query for dense and hybrid, each filtered to one group (the target: under 50 ms).

    .venv/bin/python -m bench.retrieval_bench [--data-dir DIR] [--plain-data-dir DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from appliance.store import RetrievalMode, prefetch_depth
from bench.ingest_bench import DOCS_ROOT, corpus_paths

DEV_SET = Path(__file__).resolve().parents[2] / "shared/evals/python311/questions.jsonl"
# Questions naming an exact token (an environment variable, a constant, an option): the kind
# dense retrieval misses (bench/evals/python311-identifiers.jsonl).
IDENTIFIER_SET = Path(__file__).resolve().parent / "evals/python311-identifiers.jsonl"
MODES: tuple[RetrievalMode, ...] = ("dense", "sparse", "hybrid")
SEARCHED = 10
TARGET_MS = 50.0


def ensure_index(data_dir: Path, docs_root: Path, headers: bool) -> None:
    if (data_dir / "qdrant").is_dir():
        return
    print(f"building the index in {data_dir} (the whole corpus: long)", file=sys.stderr)
    cli = Path(sys.executable).with_name("appliance")
    env = {
        **os.environ,
        "APPLIANCE_DATA_DIR": str(data_dir),
        "APPLIANCE_CHUNK_HEADERS": "true" if headers else "false",
    }
    paths = [str(p) for p in corpus_paths(docs_root, None)]
    done = subprocess.run([str(cli), "ingest", *paths, "--json"], env=env, check=False)
    if done.returncode not in (0, 1):
        raise SystemExit(f"the ingest failed (exit {done.returncode})")


def quality(
    data_dir: Path,
    questions: list[Any],
    embedder: Any = None,
    modes: tuple[RetrievalMode, ...] = MODES,
) -> dict[str, dict[str, float]]:
    """hit@1, hit@5 and MRR per mode; `embedder` embeds the questions (default: the
    configured one; bench.embedder_bench passes another backend of the same model)."""
    from appliance.evaluation import normalize, source_matches
    from appliance.retrieval import Retriever
    from appliance.services import build_embedder, open_index
    from appliance.settings import load_settings

    settings = load_settings(data_dir=data_dir)
    experiments = embedder is None
    embedder = embedder if embedder is not None else build_embedder(settings)
    index = open_index(settings, embedder)
    try:
        searches: dict[str, Any] = {}
        for mode in modes:
            retriever = Retriever(embedder, index.store, mode)
            searches[mode] = lambda q, r=retriever: r.search(q, ("everyone",), SEARCHED)
        if experiments and hasattr(index.store, "shard"):  # Qdrant Edge: MMR on the same points
            for variant in ("dense+mmr", "hybrid+mmr"):
                searches[variant] = lambda q, v=variant: mmr_search(index.store, embedder, q, v)
        if experiments:  # the fused RRF order itself, before the closest-first selection
            searches["rrf order"] = lambda q: fused_order(index.store, embedder, q)
        results: dict[str, dict[str, float]] = {}
        for name, search in searches.items():
            ranks: list[int | None] = []
            for item in questions:
                passages = search(item.question)
                rank = next(
                    (
                        n
                        for n, p in enumerate(passages, start=1)
                        if any(source_matches(p.source, s) for s in item.sources)
                        and any(t in normalize(p.text) for t in item.targets)
                    ),
                    None,
                )
                ranks.append(rank)
            results[name] = {
                "hit@1": sum(1 for r in ranks if r == 1) / len(ranks),
                "hit@5": sum(1 for r in ranks if r is not None and r <= 5) / len(ranks),
                "mrr": sum(1 / r for r in ranks if r is not None) / len(ranks),
            }
        return results
    finally:
        index.close()


def fused_order(store: Any, embedder: Any, question: str) -> list[Any]:
    """The hybrid query's own RRF order (hybrid mode returns the closest in meaning, plus
    what names a missing keyword: see appliance.retrieval)."""
    from appliance.keywords import KeywordEncoder

    vector = embedder.embed([question])[0]
    sparse = KeywordEncoder().query(question)
    return list(store.search(vector, ("everyone",), SEARCHED, sparse=sparse, mode="hybrid"))


def mmr_search(store: Any, embedder: Any, question: str, variant: str) -> list[Any]:
    """Maximal marginal relevance over the dense (or fused hybrid) candidates: an experiment,
    not a product mode (the note of the hybrid issue says whether it helped)."""
    import qdrant_edge as qe

    from appliance.keywords import SPARSE_VECTOR, KeywordEncoder
    from appliance.store import scored_passage
    from appliance.store.edge import _sparse

    vector = list(embedder.embed([question])[0])
    readable = qe.Filter(must=[qe.FieldCondition(key="acl", match=qe.MatchAny(["everyone"]))])
    mmr: Any = qe.Mmr(vector, 0.7, 40)
    prefetches = None
    if variant == "hybrid+mmr":
        bm25 = qe.Query.Nearest(_sparse(KeywordEncoder().query(question)), using=SPARSE_VECTOR)
        fused: Any = qe.Fusion.Rrf(k=60)
        prefetches = [
            qe.Prefetch(
                limit=40,
                query=fused,
                prefetches=[
                    qe.Prefetch(limit=40, query=qe.Query.Nearest(vector), filter=readable),
                    qe.Prefetch(limit=40, query=bm25, filter=readable),
                ],
            )
        ]
    request = qe.QueryRequest(
        limit=SEARCHED, query=mmr, prefetches=prefetches, filter=readable, with_payload=True
    )
    return [scored_passage(point) for point in store.shard.query(request)]


def _words(rng: random.Random, vocabulary: list[str], count: int) -> str:
    # Zipf-like: a few words are everywhere, most are rare, as in documentation.
    return " ".join(vocabulary[min(int(rng.paretovariate(1.1)) - 1, 4999)] for _ in range(count))


def latency(chunks: int, queries: int, seed: int = 7) -> dict[str, Any]:
    from appliance.domain import IndexedChunk
    from appliance.keywords import KeywordEncoder
    from appliance.store.edge import EdgeStore

    rng = random.Random(seed)
    dimension = 384
    vocabulary = [f"w{n}" + "".join(rng.choice("abcdefgh") for _ in range(4)) for n in range(5000)]
    encoder = KeywordEncoder()
    with tempfile.TemporaryDirectory() as root:
        store = EdgeStore.open(Path(root), "synthetic", dimension, "random")
        try:
            started = time.perf_counter()
            batch = 2000
            for first in range(0, chunks, batch):
                size = min(batch, chunks - first)
                texts = [_words(rng, vocabulary, 120) for _ in range(size)]
                items = [
                    IndexedChunk(
                        f"{first + n:064x}",
                        f"/docs/file{(first + n) // 20}.txt",
                        (first + n) % 20,
                        text,
                        (f"g{(first + n) % 10}", "everyone" if n % 3 == 0 else "staff"),
                        "2026-12-01T00:00:00Z",
                    )
                    for n, text in enumerate(texts)
                ]
                vectors = [_unit(rng, dimension) for _ in range(size)]
                store.upsert(items, vectors, [encoder.document(t) for t in texts])
            store.flush()
            built_s = time.perf_counter() - started
            timings: dict[str, list[float]] = {"dense": [], "hybrid": []}
            for _ in range(queries):
                vector = _unit(rng, dimension)
                sparse = encoder.query(_words(rng, vocabulary, 6))
                groups = (f"g{rng.randrange(10)}",)
                for mode in ("dense", "hybrid"):
                    begun = time.perf_counter()
                    if mode == "dense":
                        store.search(vector, groups, 7)
                    else:  # as appliance.retrieval asks: every candidate of both branches
                        depth = prefetch_depth(7)
                        store.search(
                            vector, groups, 2 * depth, sparse=sparse, mode="hybrid", depth=depth
                        )
                    timings[mode].append((time.perf_counter() - begun) * 1000)
        finally:
            store.close()
    summary = {mode: _percentiles(values) for mode, values in timings.items()}
    return {"chunks": chunks, "queries": queries, "build_s": round(built_s, 1), **summary}


def _percentiles(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(statistics.median(values), 2),
        "p95_ms": round(sorted(values)[int(0.95 * (len(values) - 1))], 2),
    }


def _unit(rng: random.Random, dimension: int) -> list[float]:
    values = [rng.gauss(0.0, 1.0) for _ in range(dimension)]
    norm = sum(v * v for v in values) ** 0.5
    return [v / norm for v in values]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.retrieval_bench")
    parser.add_argument("--data-dir", type=Path, default=Path(".bench/data-hybrid"))
    parser.add_argument("--plain-data-dir", type=Path, default=None)
    parser.add_argument("--docs-root", type=Path, default=DOCS_ROOT)
    parser.add_argument("--questions", type=Path, nargs="+", default=[DEV_SET, IDENTIFIER_SET])
    parser.add_argument("--synthetic-chunks", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from appliance.evaluation import load_questions

    result: dict[str, Any] = {}
    if not args.skip_quality:
        indexes = {"headers": (args.data_dir, True)}
        if args.plain_data_dir is not None:
            indexes["no headers"] = (args.plain_data_dir, False)
        result["quality"] = {}
        for path in args.questions:
            questions = [q for q in load_questions(path) if q.answerable]
            for name, (data_dir, headers) in indexes.items():
                ensure_index(data_dir, args.docs_root, headers)
                key = f"{path.stem}, index with {name}"
                result["quality"][key] = quality(data_dir, questions)
    if args.synthetic_chunks:
        result["latency"] = latency(args.synthetic_chunks, args.queries)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)
    return 0


def print_table(result: dict[str, Any]) -> None:
    for name, modes in result.get("quality", {}).items():
        print(f"\nretrieval quality: {name} (top {SEARCHED} searched)")
        print(f"{'mode':<11} {'hit@1':>6} {'hit@5':>6} {'MRR':>6}")
        for mode, row in modes.items():
            print(f"{mode:<11} {row['hit@1']:>6.3f} {row['hit@5']:>6.3f} {row['mrr']:>6.3f}")
        if "dense" in modes and "hybrid" in modes:
            gain = modes["hybrid"]["hit@5"] - modes["dense"]["hit@5"]
            print(f"hybrid hit@5 - dense hit@5 = {gain:+.3f} (target >= +0.05)")
    if "latency" in result:
        lat = result["latency"]
        print(
            f"\nfiltered search at {lat['chunks']:,} synthetic chunks "
            f"({lat['queries']} queries, one group of 10; built in {lat['build_s']} s)"
        )
        for mode in ("dense", "hybrid"):
            row = lat[mode]
            flag = "ok" if row["p50_ms"] < TARGET_MS else "over"
            print(f"{mode:<8} p50 {row['p50_ms']:>7.2f} ms  p95 {row['p95_ms']:>7.2f} ms  {flag}")


if __name__ == "__main__":
    sys.exit(main())
