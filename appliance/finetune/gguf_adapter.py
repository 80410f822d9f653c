"""A LoRA as a GGUF adapter that llama.cpp loads with `lora_path`, written with `gguf`.

Conventions of llama.cpp's convert_lora_to_gguf.py: `general.type=adapter`,
`adapter.type=lora`, `adapter.lora.alpha` (llama.cpp scales by alpha / rank, as peft does),
`general.architecture` equal to the base model's, and per adapted weight two tensors named
after the base GGUF's own tensor: `blk.N.attn_q.weight.lora_a` with peft's lora_A as is
(numpy shape (rank, in); ggml ne [in, rank]) and `.lora_b` with lora_B as is ((out, rank)).
The projection matrices adapted here are stored plainly in the base GGUF (no permutation
or offset, unlike Gemma's norms), so no conversion of A or B is needed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from appliance.finetune import FinetuneError

ADAPTER_KIND = "lora"
METADATA_PREFIX = "appliance."


@dataclass(frozen=True)
class LoraWeights:
    """The LoRA of one linear layer, named as in the transformers model."""

    module: str  # e.g. model.layers.0.self_attn.q_proj
    a: np.ndarray  # (rank, in_features): peft's lora_A.weight
    b: np.ndarray  # (out_features, rank): peft's lora_B.weight


def gguf_tensor_name(arch: str, block_count: int, module: str) -> str:
    """`model.layers.3.mlp.down_proj` -> `blk.3.ffn_down.weight` for the arch's tensor map."""
    import gguf

    try:
        model_arch = next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == arch)
    except StopIteration:
        raise FinetuneError(f"the gguf package does not know the architecture {arch!r}") from None
    name = gguf.get_tensor_name_map(model_arch, block_count).get_name(module)
    if name is None:
        raise FinetuneError(
            f"{module} has no GGUF tensor name for architecture {arch}: adapt only the "
            "attention and MLP projections"
        )
    return f"{name}.weight"


def write_adapter(
    path: Path,
    *,
    arch: str,
    block_count: int,
    alpha: float,
    weights: Sequence[LoraWeights],
    name: str,
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Write the adapter atomically (a temporary file renamed into place)."""
    import gguf

    if not weights:
        raise FinetuneError("the LoRA has no weights to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    writer = gguf.GGUFWriter(str(temporary), arch)
    try:
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, ADAPTER_KIND)
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(alpha))
        writer.add_name(name)
        for key, value in (metadata or {}).items():
            writer.add_string(METADATA_PREFIX + key, value)
        for layer in weights:
            _check_shapes(layer)
            tensor = gguf_tensor_name(arch, block_count, layer.module)
            writer.add_tensor(f"{tensor}.lora_a", np.ascontiguousarray(layer.a, np.float32))
            writer.add_tensor(f"{tensor}.lora_b", np.ascontiguousarray(layer.b, np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    os.replace(temporary, path)


def _check_shapes(layer: LoraWeights) -> None:
    if layer.a.ndim != 2 or layer.b.ndim != 2 or layer.a.shape[0] != layer.b.shape[1]:
        raise FinetuneError(
            f"{layer.module}: lora_a {layer.a.shape} and lora_b {layer.b.shape} do not share a rank"
        )


@dataclass(frozen=True)
class AdapterInfo:
    arch: str
    alpha: float
    tensors: dict[str, tuple[int, ...]]  # name -> numpy shape
    metadata: dict[str, str]


def read_adapter(path: Path) -> AdapterInfo:
    """What a GGUF adapter declares; a file that is not a LoRA adapter is an error."""
    import gguf

    try:
        reader = gguf.GGUFReader(str(path))
    except (OSError, ValueError) as exc:
        raise FinetuneError(f"{path} is not a readable GGUF file: {exc}") from None
    fields = {name: _value(field) for name, field in reader.fields.items()}
    if fields.get(gguf.Keys.General.TYPE) != "adapter":
        raise FinetuneError(f"{path} is not a GGUF adapter (general.type is not 'adapter')")
    if fields.get(gguf.Keys.Adapter.TYPE) != ADAPTER_KIND:
        raise FinetuneError(f"{path} is not a LoRA adapter (adapter.type is not 'lora')")
    return AdapterInfo(
        arch=str(fields.get(gguf.Keys.General.ARCHITECTURE)),
        alpha=float(fields.get(gguf.Keys.Adapter.LORA_ALPHA, 0.0)),  # type: ignore[arg-type]
        tensors={t.name: tuple(int(d) for d in t.data.shape) for t in reader.tensors},
        metadata={
            k.removeprefix(METADATA_PREFIX): str(v)
            for k, v in fields.items()
            if k.startswith(METADATA_PREFIX)
        },
    )


def _value(field: object) -> object:
    contents = getattr(field, "contents", None)
    return contents() if callable(contents) else None
