"""Around the trainer: label masking, step history, run folders, devices (no model here)."""

import json
from pathlib import Path
from typing import Any

import pytest

from appliance.finetune import FinetuneError
from appliance.finetune.data import Example
from appliance.finetune.manifest import claim_run_dir, run_identity, timings
from appliance.finetune.train import (
    IGNORED,
    Hyperparameters,
    _history,
    encode,
    latest_checkpoint,
    pick_device,
)


class WordTokenizer:
    """One id per word; BOS=2 and EOS=1 like Gemma; a chat template only when given one."""

    bos_token_id, eos_token_id = 2, 1

    def __init__(self, chat_template: str | None = None) -> None:
        self.chat_template = chat_template
        self.vocab: dict[str, int] = {}

    def __call__(self, text: str, add_special_tokens: bool = True) -> Any:
        ids = [self.vocab.setdefault(w, len(self.vocab) + 10) for w in text.split()]
        return type("Encoding", (), {"input_ids": ([2] if add_special_tokens else []) + ids})

    def apply_chat_template(
        self, turns: list[dict[str, str]], tokenize: bool, add_generation_prompt: bool = False
    ) -> str:
        roles = {"user": "<user>", "assistant": "<model>"}  # as Gemma's template names them
        text = "".join(f"{roles[t['role']]} {t['content']} <end> " for t in turns)
        return text + ("<model> " if add_generation_prompt else "")


def example(mode: str = "completion", completion: str = " It is 28 days [1].") -> Example:
    return Example(
        "e1", "q", "a", mode, "Passages: [1] 28 days Question: q Answer:", completion, (1,), ()
    )


def test_only_the_answer_and_its_end_are_learned() -> None:
    tokenizer = WordTokenizer()
    row = encode(example(), tokenizer, max_length=64)
    assert row is not None
    prompt_len = 1 + len(example().prompt.split())
    answer_len = len(example().completion.split()) + 1
    assert len(row["input_ids"]) == len(row["labels"]) == prompt_len + answer_len
    assert row["labels"][:prompt_len] == [IGNORED] * prompt_len
    assert row["labels"][prompt_len:] == row["input_ids"][prompt_len:]
    assert row["input_ids"][0] == tokenizer.bos_token_id
    assert row["labels"][-1] == tokenizer.eos_token_id
    assert row["attention_mask"] == [1] * len(row["input_ids"])


def test_too_long_examples_are_skipped() -> None:
    assert encode(example(), WordTokenizer(), max_length=8) is None


def test_chat_examples_learn_the_assistant_turn_of_the_template() -> None:
    tokenizer = WordTokenizer(chat_template="{{ turns }}")
    row = encode(example("chat", "It is 28 days [1]."), tokenizer, max_length=64)
    assert row is not None
    learned = [
        i for i, label in zip(row["input_ids"], row["labels"], strict=True) if label != IGNORED
    ]
    words = {v: k for k, v in tokenizer.vocab.items()}
    assert [words[i] for i in learned] == ["It", "is", "28", "days", "[1].", "<end>"]
    with pytest.raises(FinetuneError, match="no chat template"):
        encode(example("chat"), WordTokenizer(), max_length=64)


def test_history_keeps_one_row_per_step_with_its_seconds() -> None:
    log = [
        {"loss": 2.0, "step": 1, "step_seconds": 1.5},
        {"loss": 1.0, "step": 2},
        {"loss": 0.5, "step": 2, "step_seconds": 1.25},  # the step redone after a resume
        {"train_runtime": 3.0, "step": 2},
    ]
    assert _history(log) == [
        {"step": 1, "loss": 2.0, "seconds": 1.5},
        {"step": 2, "loss": 0.5, "seconds": 1.25},
    ]
    assert timings(_history(log), 10.0, 20.0)["seconds_per_step_mean"] == 1.375


def test_a_run_folder_resumes_only_the_same_run(tmp_path: Path) -> None:
    out, checkpoints = tmp_path / "run", tmp_path / "run" / "checkpoints"
    first = run_identity("base", "data", Hyperparameters(steps=10).to_json())
    claim_run_dir(out, first, checkpoints)
    (checkpoints / "checkpoint-5").mkdir(parents=True)
    claim_run_dir(out, first, checkpoints)  # the same run: resumes
    other = run_identity("base", "other data", Hyperparameters(steps=10).to_json())
    with pytest.raises(FinetuneError, match=r"another run \(different training_data_sha256\)"):
        claim_run_dir(out, other, checkpoints)
    assert json.loads((out / "run.json").read_text())["training_data_sha256"] == "data"


def test_cpu_is_always_there_and_a_missing_gpu_is_a_clear_error() -> None:
    import torch

    assert pick_device("cpu") == "cpu"
    assert pick_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(FinetuneError, match="--device cuda"):
            pick_device("cuda")


def test_resuming_starts_from_the_newest_complete_checkpoint(tmp_path: Path) -> None:
    checkpoints = tmp_path / "checkpoints"
    assert latest_checkpoint(checkpoints) is None
    for step in (50, 100, 150):
        (checkpoints / f"checkpoint-{step}").mkdir(parents=True)
    for step in (50, 100):
        (checkpoints / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    # checkpoint-150 was being written when the process died: no trainer_state.json yet.
    assert latest_checkpoint(checkpoints) == str(checkpoints / "checkpoint-100")
    assert not (checkpoints / "checkpoint-150").exists()
