"""Small real LoRA adapters (GGUF files) for the adapter registry and its commands."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from appliance.finetune.gguf_adapter import LoraWeights, write_adapter


def adapter(path: Path, seed: int, base_sha256: str = "b" * 64) -> Path:
    rng = np.random.default_rng(seed)
    weights = [
        LoraWeights(
            "model.layers.0.self_attn.q_proj",
            rng.standard_normal((4, 16)).astype(np.float32),
            rng.standard_normal((24, 4)).astype(np.float32),
        )
    ]
    write_adapter(
        path,
        arch="gemma3",
        block_count=1,
        alpha=8,
        weights=weights,
        name=path.stem,
        metadata={"base_model.sha256": base_sha256},
    )
    return path
