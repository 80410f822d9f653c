"""What a training run was made from and how it went: `DIR/manifest.json` and `DIR/run.json`.

`run.json` is written when a run starts: the base model and data sha256 and the
hyper-parameters. A run started again on the same DIR resumes its checkpoints only when these
match; otherwise it stops and says so, instead of mixing two trainings in one adapter.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from appliance.finetune import FinetuneError

RUN_FILE = "run.json"
MANIFEST_FILE = "manifest.json"
LIBRARIES = ("torch", "transformers", "peft", "accelerate", "gguf", "llama_cpp_python", "appliance")


def library_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def run_identity(
    base_sha256: str, data_sha256: str, hyperparameters: dict[str, Any]
) -> dict[str, Any]:
    return {
        "base_model_sha256": base_sha256,
        "training_data_sha256": data_sha256,
        "hyperparameters": hyperparameters,
    }


def claim_run_dir(out_dir: Path, identity: dict[str, Any], checkpoints: Path) -> None:
    """Record this run in `out_dir`, refusing to resume checkpoints of a different run."""
    run_file = out_dir / RUN_FILE
    if checkpoints.is_dir() and any(checkpoints.iterdir()) and run_file.is_file():
        try:
            previous = json.loads(run_file.read_text(encoding="utf-8"))
        except ValueError:
            previous = None
        if previous != identity:
            changed = sorted(k for k in identity if (previous or {}).get(k) != identity[k])
            raise FinetuneError(
                f"{out_dir} holds checkpoints of another run (different {', '.join(changed)}): "
                "pass --restart to discard them, or choose another --out"
            )
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_file, identity)


def write_json(path: Path, data: dict[str, Any]) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def timings(history: list[dict[str, Any]], load_s: float, total_s: float) -> dict[str, Any]:
    seconds = [row["seconds"] for row in history if row.get("seconds") is not None]
    return {
        "load_seconds": round(load_s, 2),
        "total_seconds": round(total_s, 2),
        "seconds_per_step_mean": round(statistics.fmean(seconds), 3) if seconds else None,
        "seconds_per_step_median": round(statistics.median(seconds), 3) if seconds else None,
    }


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
