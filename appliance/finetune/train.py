"""A LoRA trained with peft through the transformers Trainer, on the CPU or a CUDA GPU.

Loss is on the answer tokens only (prompt tokens are labelled -100). Checkpoints go to
`DIR/checkpoints/` every `save_every` steps; a run started again on the same DIR with the same
base model, data and hyper-parameters resumes from the latest one.
"""

from __future__ import annotations

import shutil
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from appliance.finetune import FinetuneError
from appliance.finetune.base_model import BaseModel, load_for_training
from appliance.finetune.data import Example
from appliance.finetune.gguf_adapter import LoraWeights

# The attention and MLP projections: stored plainly in GGUF, so a LoRA on them maps 1:1.
TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
IGNORED = -100  # label of the tokens the loss skips

Device = Literal["auto", "cpu", "cuda"]


@dataclass(frozen=True)
class Hyperparameters:
    steps: int = 200
    rank: int = 8
    alpha: int = 16
    learning_rate: float = 2e-4
    dropout: float = 0.05
    batch_size: int = 1
    max_length: int = 2048
    save_every: int = 50
    seed: int = 0
    target_modules: tuple[str, ...] = TARGET_MODULES

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["target_modules"] = list(self.target_modules)
        return data


class Progress(Protocol):
    def start(self, total: int, done: int) -> None: ...

    def step(self, step: int, loss: float | None, seconds: float) -> None: ...

    def finish(self) -> None: ...


@dataclass
class TrainOutcome:
    weights: list[LoraWeights]
    device: str
    dtype: str
    examples_used: int
    examples_too_long: int
    resumed_from_step: int
    history: list[dict[str, Any]] = field(default_factory=list)  # step, loss, seconds


def pick_device(requested: Device) -> str:
    import torch

    if requested == "cuda" and not torch.cuda.is_available():
        raise FinetuneError(
            "--device cuda: no CUDA GPU is visible to torch (a CPU build of torch, or no "
            "driver): use --device cpu, or install a CUDA build of torch"
        )
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def encode(example: Example, tokenizer: Any, max_length: int) -> dict[str, list[int]] | None:
    """Token ids and labels as llama.cpp will see the prompt; None when too long."""
    if example.mode == "chat":
        prompt_ids, answer_ids = _encode_chat(example, tokenizer)
    else:
        # llama.cpp tokenizes a completion prompt with BOS and parses special tokens: so does
        # the tokenizer here. The answer ends with EOS so that the model learns to stop.
        prompt_ids = tokenizer(example.prompt).input_ids
        answer_ids = tokenizer(example.completion, add_special_tokens=False).input_ids
        answer_ids = [*answer_ids, tokenizer.eos_token_id]
    if len(prompt_ids) + len(answer_ids) > max_length:
        return None
    return {
        "input_ids": prompt_ids + answer_ids,
        "attention_mask": [1] * (len(prompt_ids) + len(answer_ids)),
        "labels": [IGNORED] * len(prompt_ids) + answer_ids,
    }


def _encode_chat(example: Example, tokenizer: Any) -> tuple[list[int], list[int]]:
    if not getattr(tokenizer, "chat_template", None):
        raise FinetuneError(
            "the training data is in chat mode but the base model has no chat template: "
            "rebuild it with APPLIANCE_LLM_PROMPT_MODE=completion"
        )
    before = [{"role": role, "content": content} for role, content in example.preamble]
    turn = [*before, {"role": "user", "content": example.prompt}]
    prompt = tokenizer.apply_chat_template(turn, tokenize=False, add_generation_prompt=True)
    whole = tokenizer.apply_chat_template(
        [*turn, {"role": "assistant", "content": example.completion}], tokenize=False
    )
    if not whole.startswith(prompt):
        raise FinetuneError("the chat template renders the answer turn in an unexpected way")
    prompt_ids = tokenizer(prompt, add_special_tokens=False).input_ids
    answer_ids = tokenizer(whole[len(prompt) :], add_special_tokens=False).input_ids
    return prompt_ids, answer_ids


def train(
    examples: Sequence[Example],
    base: BaseModel,
    checkpoints: Path,
    hp: Hyperparameters,
    device: Device,
    progress: Progress,
) -> TrainOutcome:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import DataCollatorForSeq2Seq, PrinterCallback, Trainer

    chosen = pick_device(device)
    model, tokenizer = load_for_training(base)
    encoded = [e for e in (encode(x, tokenizer, hp.max_length) for x in examples) if e]
    if not encoded:
        raise FinetuneError(
            f"every example is longer than --max-length {hp.max_length} tokens: raise it"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # deprecations inside transformers/peft
        torch.manual_seed(hp.seed)
        lora = LoraConfig(
            r=hp.rank,
            lora_alpha=hp.alpha,
            lora_dropout=hp.dropout,
            target_modules=list(hp.target_modules),
            task_type="CAUSAL_LM",
        )
        peft_model = get_peft_model(model, lora)
        bf16 = chosen == "cuda" and torch.cuda.is_bf16_supported()
        clock = _StepClock(progress)
        trainer = Trainer(
            model=peft_model,
            args=_arguments(checkpoints, hp, chosen, bf16),
            train_dataset=encoded,
            data_collator=DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=IGNORED),
            callbacks=[_progress_callback(clock)],
        )
        trainer.remove_callback(PrinterCallback)  # it prints every log to stdout; ours reports
        trainer.train(resume_from_checkpoint=latest_checkpoint(checkpoints))
    return TrainOutcome(
        weights=lora_weights(peft_model),
        device=chosen,
        dtype="bfloat16 autocast" if bf16 else "float32",
        examples_used=len(encoded),
        examples_too_long=len(examples) - len(encoded),
        resumed_from_step=clock.resumed_from,
        history=_history(trainer.state.log_history),
    )


def latest_checkpoint(checkpoints: Path) -> str | None:
    """The newest complete checkpoint; incomplete ones (a crash while saving) are removed.

    The trainer writes trainer_state.json last, so a folder without it is incomplete.
    """
    if not checkpoints.is_dir():
        return None
    complete: dict[int, Path] = {}
    for folder in checkpoints.glob("checkpoint-*"):
        number = folder.name.removeprefix("checkpoint-")
        if not folder.is_dir() or not number.isdigit():
            continue
        if (folder / "trainer_state.json").is_file():
            complete[int(number)] = folder
        else:
            shutil.rmtree(folder, ignore_errors=True)
    return str(complete[max(complete)]) if complete else None


def _arguments(checkpoints: Path, hp: Hyperparameters, device: str, bf16: bool) -> Any:
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(checkpoints),
        max_steps=hp.steps,
        per_device_train_batch_size=hp.batch_size,
        learning_rate=hp.learning_rate,
        lr_scheduler_type="linear",
        warmup_steps=min(10, hp.steps // 10),
        weight_decay=0.0,
        logging_steps=1,
        save_strategy="steps",
        save_steps=hp.save_every,
        save_total_limit=1,
        seed=hp.seed,
        data_seed=hp.seed,
        use_cpu=device == "cpu",
        bf16=bf16,
        report_to="none",
        disable_tqdm=True,
        remove_unused_columns=False,
        dataloader_num_workers=0,
    )


def lora_weights(peft_model: Any) -> list[LoraWeights]:
    """lora_A and lora_B of every adapted layer, named as in the transformers model."""
    from peft.tuners.lora import LoraLayer

    weights = []
    for name, module in peft_model.named_modules():
        if isinstance(module, LoraLayer) and "default" in module.lora_A:
            a, b = _array(module.lora_A["default"]), _array(module.lora_B["default"])
            weights.append(LoraWeights(name.removeprefix("base_model.model."), a, b))
    return weights


def _array(linear: Any) -> Any:
    return linear.weight.detach().float().cpu().numpy()


def _history(log_history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per step (step, loss, seconds), the last record of a step winning."""
    rows: dict[int, dict[str, Any]] = {}
    for entry in log_history:
        if "loss" in entry and "step" in entry:
            seconds = entry.get("step_seconds")
            rows[int(entry["step"])] = {
                "step": int(entry["step"]),
                "loss": round(float(entry["loss"]), 5),
                "seconds": round(float(seconds), 3) if seconds is not None else None,
            }
    return [rows[step] for step in sorted(rows)]


class _StepClock:
    """What the trainer callback records: the step it started from and each step's time."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.resumed_from = 0
        self.started = 0.0
        self.seconds = 0.0


def _progress_callback(clock: _StepClock) -> Any:
    """A TrainerCallback feeding the progress bar and recording each step's seconds."""
    from transformers import TrainerCallback

    class ProgressCallback(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            clock.resumed_from = int(state.global_step)
            clock.progress.start(int(state.max_steps), clock.resumed_from)

        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            clock.started = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            clock.seconds = time.perf_counter() - clock.started

        def on_log(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            logs = kw.get("logs") or {}
            if "loss" not in logs:
                return
            # Kept in the trainer's own history: a resumed run still has every step's time.
            state.log_history[-1]["step_seconds"] = clock.seconds
            clock.progress.step(int(state.global_step), float(logs["loss"]), clock.seconds)

        def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            clock.progress.finish()

    return ProgressCallback()
