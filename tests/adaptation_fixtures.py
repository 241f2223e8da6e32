"""Shared helpers for the adaptation tests: a fresh tiny model with LoRA, synthetic preference pairs."""

from __future__ import annotations

from dataclasses import replace

import asls_mlx  # noqa: F401  (BLAS before mlx.core)
import mlx_lm

from asls_mlx.adaptation.lora import LoraConfig, attach_lora
from asls_mlx.store import PreferencePair

TOPICS = ["the sea", "a cat", "green tea", "old maps", "rain", "bikes", "jazz", "bread", "stars", "snow", "owls", "clocks"]
LONG = "well, there is a great deal to say here, and then there is even more to add about it"


def one_try(assistant):
    """The assistant's learning config without the second, scaled-down try of a rejected update: a test of one gate
    decision (tests/test_retry_scaled.py tests the second try)."""
    return replace(assistant.config.learning_config(), retry_scale=None)


def fresh_model(model_dir, config: LoraConfig | None = LoraConfig()):
    model, tokenizer = mlx_lm.load(str(model_dir))
    if config is not None:
        attach_lora(model, config)
    return model, tokenizer


def short_pairs(topics=TOPICS, split="train", weight=1.0):
    """The user prefers a short answer to a long one (the evaluation's 'concise' persona)."""
    return [
        PreferencePair(f"Tell me about {t}.", f"{t.title()}: fine.", f"About {t}: {LONG}.", "self", weight, split=split)
        for t in topics
    ]


class WordTokenizer:
    """One token per word: a token budget (the gate's) counted in words."""

    def encode(self, text: str) -> list[str]:
        return text.split()
