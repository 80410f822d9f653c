"""Fine-tuning: training data from the organisation's own index, a LoRA trained with peft on
the dequantized base GGUF, written back as a GGUF LoRA adapter that llama.cpp loads."""

from appliance.errors import ApplianceError


class FinetuneError(ApplianceError):
    """Training data, a training run or an adapter cannot be made as asked."""
