"""Neural adaptation layer: per-user LoRA adapters trained on preference pairs, gated, versioned."""

from asls_mlx.adaptation.config import LearningConfig, TrainingArgs, adapt_schedule
from asls_mlx.adaptation.gate import GateChecks, GateDecision, gate
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
from asls_mlx.adaptation.trainer import TrainResult, train
from asls_mlx.adaptation.update import UpdateReport, UpdateTarget, update_adapter
from asls_mlx.adaptation.validation import preference_metrics, retention_perplexity
from asls_mlx.adaptation.versions import AdapterRepo, VersionInfo

__all__ = [
    "AdapterRepo",
    "GateChecks",
    "GateDecision",
    "LearningConfig",
    "UpdateReport",
    "UpdateTarget",
    "update_adapter",
    "LoraConfig",
    "TrainResult",
    "TrainingArgs",
    "adapt_schedule",
    "adapter_disabled",
    "attach_lora",
    "gate",
    "has_lora",
    "lora_parameters",
    "preference_metrics",
    "read_adapter",
    "reset_lora",
    "retention_perplexity",
    "save_adapter",
    "set_lora_weights",
    "train",
    "VersionInfo",
]
