"""What a backend computes for a model: the one place the engine meets the hardware.

A model gets its backend once, when it is loaded (``backend_choice``). ``MlxBackend`` is pure MLX:
what Metal and CUDA run, and the CPU with ``ASLS_FAST_KERNELS=off``. ``CpuBackend`` (``engine/cpu/``)
decodes in NumPy and gives the model CPU kernels. ``ChatEngine``, the log-prob code and the losses
ask the model's backend; none of them tests the device.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, Collection, Iterator, Mapping, Sequence

import mlx.core as mx
import mlx.nn as nn


@dataclass
class Row:
    """One answer to generate in a batch: prompt token ids, at most ``max_tokens`` new tokens; ``lora``: the
    adapter weights to decode it with (``engine.row_lora``; None: the model's as they stand)."""

    prompt: Sequence[int]
    max_tokens: int
    sampler: Callable[[mx.array], mx.array]
    processors: Sequence[Callable] = field(default_factory=tuple)
    lora: Mapping[str, Any] | None = None


class Backend(ABC):
    """How a model's generation, log-sum-exps and samplers compute.

    ``name`` keys outcomes that depend on the backend (the log-prob checks kept between processes);
    ``host_top_k``: samplers find their top-k candidates with NumPy; ``head_in_vocab_blocks``: the
    log-prob code applies a plain LM head in vocabulary blocks instead of building whole logits.
    """

    name: str
    host_top_k: bool
    head_in_vocab_blocks: bool

    def prepare(self, model: nn.Module) -> None:
        """Make ``model`` compute as this backend does (once, when it is loaded)."""

    def release(self, model: nn.Module) -> None:
        """Undo ``prepare``: ``model`` computes with MLX's own ops again."""

    @abstractmethod
    def logsumexp(self, x: mx.array, axis: int = -1, keepdims: bool = False) -> mx.array:
        """``mx.logsumexp`` over ``axis`` (the last by default), differentiable."""

    @abstractmethod
    def stream_generate(self, model: nn.Module, tokenizer: Any, prompt: mx.array, *, max_tokens: int,
                        sampler: Callable, logits_processors: list | None, prompt_cache: list) -> Iterator[Any]:
        """mlx-lm's ``stream_generate``: its ``GenerationResponse`` items, its end rules."""

    @abstractmethod
    def generate_batch(self, model: nn.Module, rows: Sequence[Row], stop_tokens: Collection[int]) -> list[list[int]]:
        """The new tokens of each row, decoded together, without the stop token that ended it; each row with its
        ``lora`` weights."""

    def answer_logps(self, model: nn.Module, rows: Sequence[tuple[Sequence[int], Sequence[int]]]) -> list[float] | None:
        """Per (prompt ids, answer ids) row, the sum of the answer's token log-probs under ``model`` as its
        weights stand (no gradient); None where the caller's MLX forward computes them as fast."""
        return None
