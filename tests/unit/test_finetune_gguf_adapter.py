"""The GGUF LoRA writer, read back with gguf.GGUFReader (llama.cpp's own reader of record)."""

from pathlib import Path

import gguf
import numpy as np
import pytest

from appliance.finetune import FinetuneError
from appliance.finetune.gguf_adapter import (
    LoraWeights,
    gguf_tensor_name,
    read_adapter,
    write_adapter,
)

RANK = 4
HIDDEN, HEADS_DIM, FFN = 16, 24, 32
SHAPES = {  # module -> (out, in), as in a Gemma 3 layer
    "self_attn.q_proj": (HEADS_DIM, HIDDEN),
    "self_attn.o_proj": (HIDDEN, HEADS_DIM),
    "mlp.down_proj": (HIDDEN, FFN),
}


def lora(module: str, out: int, inp: int, seed: int) -> LoraWeights:
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((RANK, inp)).astype(np.float32)
    b = rng.standard_normal((out, RANK)).astype(np.float32)
    return LoraWeights(module, a, b)


def weights() -> list[LoraWeights]:
    return [
        lora(f"model.layers.{block}.{name}", out, inp, seed=block * 10 + i)
        for block in range(2)
        for i, (name, (out, inp)) in enumerate(SHAPES.items())
    ]


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        ("model.layers.0.self_attn.q_proj", "blk.0.attn_q.weight"),
        ("model.layers.1.self_attn.k_proj", "blk.1.attn_k.weight"),
        ("model.layers.1.self_attn.o_proj", "blk.1.attn_output.weight"),
        ("model.layers.0.mlp.gate_proj", "blk.0.ffn_gate.weight"),
        ("model.layers.1.mlp.down_proj", "blk.1.ffn_down.weight"),
    ],
)
def test_transformers_names_map_to_the_base_gguf_tensor_names(module: str, expected: str) -> None:
    assert gguf_tensor_name("gemma3", 2, module) == expected


def test_names_without_a_gguf_tensor_and_unknown_architectures_are_refused() -> None:
    with pytest.raises(FinetuneError, match="no GGUF tensor name"):
        gguf_tensor_name("gemma3", 2, "model.layers.0.self_attn.rotary_emb")
    with pytest.raises(FinetuneError, match="does not know the architecture"):
        gguf_tensor_name("not-an-arch", 2, "model.layers.0.self_attn.q_proj")


def test_the_adapter_reads_back_as_llama_cpp_expects(tmp_path: Path) -> None:
    path = tmp_path / "faq.gguf"
    layers = weights()
    write_adapter(
        path,
        arch="gemma3",
        block_count=2,
        alpha=16.0,
        weights=layers,
        name="faq",
        metadata={"base_model.sha256": "ab" * 32},
    )
    info = read_adapter(path)
    assert info.arch == "gemma3" and info.alpha == 16.0
    assert info.metadata == {"base_model.sha256": "ab" * 32}
    assert len(info.tensors) == 2 * len(layers)
    # lora_a is (rank, in) and lora_b (out, rank) in numpy order: ggml ne [in, rank], [rank, out].
    assert info.tensors["blk.0.attn_q.weight.lora_a"] == (RANK, HIDDEN)
    assert info.tensors["blk.0.attn_q.weight.lora_b"] == (HEADS_DIM, RANK)
    assert info.tensors["blk.1.ffn_down.weight.lora_a"] == (RANK, FFN)
    assert info.tensors["blk.1.ffn_down.weight.lora_b"] == (HIDDEN, RANK)

    reader = gguf.GGUFReader(str(path))
    assert reader.fields["general.type"].contents() == "adapter"
    assert reader.fields["adapter.type"].contents() == "lora"
    assert reader.fields["general.architecture"].contents() == "gemma3"
    stored = {t.name: t for t in reader.tensors}
    down = stored["blk.1.ffn_down.weight.lora_b"]
    assert down.tensor_type == gguf.GGMLQuantizationType.F32
    assert list(down.shape) == [RANK, HIDDEN]  # ggml order
    np.testing.assert_array_equal(down.data, layers[-1].b)
    np.testing.assert_array_equal(stored["blk.0.attn_q.weight.lora_a"].data, layers[0].a)
    assert not (tmp_path / "faq.gguf.tmp").exists()


def test_mismatched_ranks_and_empty_adapters_are_refused(tmp_path: Path) -> None:
    bad = LoraWeights(
        "model.layers.0.self_attn.q_proj", np.zeros((4, 8), np.float32), np.zeros((8, 2))
    )
    options = {"arch": "gemma3", "block_count": 1, "alpha": 8.0, "name": "x"}
    with pytest.raises(FinetuneError, match="do not share a rank"):
        write_adapter(tmp_path / "a.gguf", weights=[bad], **options)  # type: ignore[arg-type]
    with pytest.raises(FinetuneError, match="no weights"):
        write_adapter(tmp_path / "a.gguf", weights=[], **options)  # type: ignore[arg-type]
    assert not (tmp_path / "a.gguf").exists()


def test_a_gguf_that_is_not_a_lora_adapter_is_named(tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    writer = gguf.GGUFWriter(str(path), "gemma3")
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_tensor("token_embd.weight", np.zeros((4, 4), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(FinetuneError, match="not a GGUF adapter"):
        read_adapter(path)
    (tmp_path / "junk.gguf").write_bytes(b"not gguf")
    with pytest.raises(FinetuneError, match="not a readable GGUF"):
        read_adapter(tmp_path / "junk.gguf")
