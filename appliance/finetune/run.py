"""One `finetune train`: examples in; `DIR/<name>.gguf` and `DIR/manifest.json` out.

The adapter is loaded by llama.cpp on top of the base GGUF before the run is declared done,
so a run never ends with an adapter that serving would refuse.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.errors import ModelError
from appliance.filehash import cached_sha256, hash_cache_path, sha256_of_file
from appliance.finetune import FinetuneError
from appliance.finetune.base_model import BaseModel, prepare_base
from appliance.finetune.data import load_examples
from appliance.finetune.gguf_adapter import write_adapter
from appliance.finetune.manifest import (
    MANIFEST_FILE,
    claim_run_dir,
    library_versions,
    now,
    run_identity,
    timings,
    write_json,
)
from appliance.finetune.train import Device, Hyperparameters, Progress, TrainOutcome, train

CHECKPOINTS = "checkpoints"


@dataclass(frozen=True)
class TrainRequest:
    data: Path
    out_dir: Path
    name: str
    base_gguf: Path
    models_dir: Path  # holds the converted base model and the sha256 cache
    hyperparameters: Hyperparameters
    device: Device = "auto"
    restart: bool = False


def run_training(
    request: TrainRequest, progress: Progress, status: Callable[[str], None]
) -> dict[str, Any]:
    started = time.perf_counter()
    hp = request.hyperparameters
    examples = load_examples(request.data)
    data_sha256 = sha256_of_file(request.data)
    hash_cache = hash_cache_path(request.models_dir)
    base_sha256 = cached_sha256(request.base_gguf, hash_cache)
    checkpoints = request.out_dir / CHECKPOINTS
    if request.restart:
        shutil.rmtree(checkpoints, ignore_errors=True)
    identity = run_identity(base_sha256, data_sha256, hp.to_json())
    claim_run_dir(request.out_dir, identity, checkpoints)
    base = prepare_base(request.base_gguf, base_sha256, request.models_dir, status)
    prepared = time.perf_counter()
    status(f"training on {len(examples)} examples")
    outcome = train(examples, base, checkpoints, hp, request.device, progress)
    adapter = _write_adapter(request, base, outcome, base_sha256, data_sha256)
    status("checking that llama.cpp loads the adapter")
    adapter_sha256 = _check_loads(request.base_gguf, adapter, hash_cache)
    manifest = {
        "created_at": now(),
        "adapter": {
            "path": str(adapter.resolve()),
            "sha256": adapter_sha256,
            "name": request.name,
            "tensors": 2 * len(outcome.weights),
        },
        "base_model": {
            "path": str(request.base_gguf.resolve()),
            "sha256": base_sha256,
            "architecture": base.arch,
        },
        "training_data": {
            "path": str(request.data.resolve()),
            "sha256": data_sha256,
            "examples": len(examples),
            "used": outcome.examples_used,
            "too_long": outcome.examples_too_long,
        },
        "hyperparameters": hp.to_json(),
        "device": outcome.device,
        "dtype": outcome.dtype,
        "resumed_from_step": outcome.resumed_from_step,
        "losses": [{"step": r["step"], "loss": r["loss"]} for r in outcome.history],
        "step_seconds": [r["seconds"] for r in outcome.history],
        "timings": timings(outcome.history, prepared - started, time.perf_counter() - started),
        "versions": library_versions(),
    }
    write_json(request.out_dir / MANIFEST_FILE, manifest)
    return manifest


def _write_adapter(
    request: TrainRequest,
    base: BaseModel,
    outcome: TrainOutcome,
    base_sha256: str,
    data_sha256: str,
) -> Path:
    """DIR/<name>.gguf: the trained LoRA weights, naming the base model and data they came from."""
    adapter = request.out_dir / f"{request.name}.gguf"
    write_adapter(
        adapter,
        arch=base.arch,
        block_count=base.block_count,
        alpha=request.hyperparameters.alpha,
        weights=outcome.weights,
        name=request.name,
        metadata={
            "base_model.sha256": base_sha256,
            "training_data.sha256": data_sha256,
            "steps": str(request.hyperparameters.steps),
        },
    )
    return adapter


def _check_loads(base: Path, adapter: Path, hash_cache: Path) -> str:
    from appliance.generation import LlamaCppGenerator

    try:
        generator = LlamaCppGenerator(
            base, adapter_path=adapter, context_size=512, threads=1, hash_cache=hash_cache
        )
    except ModelError as exc:
        raise FinetuneError(f"llama.cpp refused the adapter it was given: {exc}") from None
    return generator.identity.adapter_sha256 or sha256_of_file(adapter)
