"""The base GGUF as a transformers model to train: dequantized once, then cached on disk.

transformers reads a GGUF (tensors dequantized to float32 by the `gguf` package; needs
accelerate), but parsing the metadata of a model with a large vocabulary is slow in Python
(about a minute for Gemma 3's 262k tokens on 2 cores, and transformers reads the file three
times). The converted model and tokenizer are therefore saved once, keyed by the GGUF's
sha256, under `<data_dir>/models/hf-<sha256 prefix>/` (about 4 bytes per parameter); later
trainings and resumed runs load them in seconds.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.finetune import FinetuneError

log = logging.getLogger(__name__)

DONE_FILE = "appliance-source.json"


@dataclass(frozen=True)
class BaseModel:
    gguf_path: Path
    sha256: str
    arch: str  # general.architecture as llama.cpp reads it: the adapter must declare the same
    folder: Path  # the transformers copy
    block_count: int


def gguf_architecture(path: Path) -> str:
    """The GGUF's `general.architecture`, read by llama.cpp (vocabulary only: fast)."""
    from llama_cpp import Llama

    from appliance.generation import silence_llama_cpp

    silence_llama_cpp()
    try:
        llm = Llama(model_path=str(path), vocab_only=True, verbose=False)
    except (ValueError, RuntimeError, OSError) as exc:
        raise FinetuneError(f"cannot read the base model {path}: {exc}") from None
    try:
        return str(llm.metadata["general.architecture"])
    finally:
        llm.close()


def prepare_base(
    gguf_path: Path, sha256: str, cache_root: Path, status: Callable[[str], None]
) -> BaseModel:
    """The base model's transformers copy, converted now if the cache does not hold it."""
    folder = cache_root / f"hf-{sha256[:16]}"
    if not (folder / DONE_FILE).is_file():
        status(f"converting {gguf_path.name} for training, once (cached in {folder})")
        _convert(gguf_path, sha256, folder)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    layers = config.get("num_hidden_layers") or config.get("text_config", {}).get(
        "num_hidden_layers"
    )
    if not isinstance(layers, int):
        raise FinetuneError(f"{folder}/config.json names no num_hidden_layers: delete the folder")
    return BaseModel(gguf_path, sha256, gguf_architecture(gguf_path), folder, layers)


def _convert(gguf_path: Path, sha256: str, folder: Path) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    temporary = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir(parents=True)
    # Tokenizer and weights each parse the whole GGUF: the tokenizer in a second process,
    # on a second core, while this one converts the weights.
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
        tokenizer_done = pool.submit(_save_tokenizer, gguf_path, temporary)
        _save_weights(gguf_path, temporary)
        try:
            tokenizer_done.result()
        except (ValueError, OSError, KeyError, NotImplementedError) as exc:
            raise _unsupported(gguf_path, exc) from None
    source = {"gguf": str(gguf_path.resolve()), "sha256": sha256}
    (temporary / DONE_FILE).write_text(json.dumps(source, indent=2), encoding="utf-8")
    shutil.rmtree(folder, ignore_errors=True)
    temporary.rename(folder)
    log.info("event=base_converted gguf=%s folder=%s", gguf_path, folder)


def _unsupported(gguf_path: Path, exc: Exception) -> FinetuneError:
    return FinetuneError(
        f"transformers cannot load {gguf_path} for training: {exc}. Fine-tuning needs a GGUF "
        "whose architecture transformers reads (Gemma, Llama, Mistral, Qwen, ...)"
    )


def _save_tokenizer(gguf_path: Path, folder: Path) -> None:
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name).save_pretrained(
        folder
    )


def _save_weights(gguf_path: Path, folder: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        loaded = AutoModelForCausalLM.from_pretrained(
            gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32
        )
    except (ValueError, OSError, KeyError, NotImplementedError) as exc:
        raise _unsupported(gguf_path, exc) from None
    # transformers marks a model read from a GGUF as quantized and refuses to save it, though
    # its weights are plain float tensors: they move to a model built from the same config.
    settings = loaded.config.to_dict()
    settings.pop("quantization_config", None)
    config = type(loaded.config).from_dict(settings)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(loaded.state_dict(), assign=True)
    model.tie_weights()
    model.save_pretrained(folder)


def load_for_training(base: BaseModel) -> tuple[Any, Any]:
    """(model in float32 on the CPU, tokenizer); the trainer moves the model to its device."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(base.folder)
        # Eager attention: what transformers recommends for training Gemma 3.
        model = AutoModelForCausalLM.from_pretrained(
            base.folder, dtype=torch.float32, attn_implementation="eager"
        )
    except (ValueError, OSError) as exc:
        raise FinetuneError(
            f"cannot load the converted base model in {base.folder}: {exc}. Delete that folder "
            "to convert the GGUF again"
        ) from None
    return model, tokenizer
