"""Neural adaptation layer: per-user LoRA adapters trained on preference pairs, gated, versioned."""

from asls_mlx.adaptation.lora import (
    LoraConfig,
    adapter_disabled,
    attach_lora,
    has_lora,
    lora_parameters,
    read_adapter,
    reset_lora,
    save_adapter,
    set_lora_weights,
)
from asls_mlx.adaptation.trainer import TrainingArgs, TrainResult, adapt_schedule, train

__all__ = [
    "LoraConfig",
    "TrainResult",
    "TrainingArgs",
    "adapt_schedule",
    "adapter_disabled",
    "attach_lora",
    "has_lora",
    "lora_parameters",
    "read_adapter",
    "reset_lora",
    "save_adapter",
    "set_lora_weights",
    "train",
]
