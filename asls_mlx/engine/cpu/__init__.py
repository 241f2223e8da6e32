"""The CPU backend: NumPy generation loops and CPU kernels for MLX's CPU device.

On the CPU, MLX runs one-row matrix products as GEMMs and pays an evaluation round trip per small op,
and its exp and sigmoid are scalar. So this backend decodes llama-style models in NumPy on views of
the MLX weights (``numpy_forward``: the chat's loop in ``stream_decode``, batches in
``batch_answers``), gives the model faster SwiGLU, attention and one-row matmuls in MLX for
training and for the architectures NumPy does not cover (``patches`` installs them,
``cpu_kernels`` holds them), and the log-prob code its vocabulary-blocked LM head.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Collection, Iterator, Sequence

import mlx.core as mx
import mlx.nn as nn

from asls_mlx.engine.backend import Backend, Row
from asls_mlx.engine.cpu import answer_scores, batch_answers, cpu_kernels, patches, stream_decode
from asls_mlx.engine.cpu.numpy_forward import supports
from asls_mlx.engine.mlx_backend import batch_generator_answers, mlx_lm_stream
from asls_mlx.engine.row_lora import decode_by_lora


@dataclass(frozen=True)
class CpuBackend(Backend):
    """``numpy_decode=False`` decodes through mlx-lm's loops instead (with the kernels), to compare."""

    numpy_decode: bool = True

    name = "cpu"
    host_top_k = True
    head_in_vocab_blocks = True

    def prepare(self, model: nn.Module) -> None:
        patches.install(model)

    def release(self, model: nn.Module) -> None:
        patches.uninstall(model)

    def logsumexp(self, x: mx.array, axis: int = -1, keepdims: bool = False) -> mx.array:
        return cpu_kernels.logsumexp(x, axis=axis, keepdims=keepdims)

    def stream_generate(self, model: nn.Module, tokenizer: Any, prompt: mx.array, *, max_tokens: int,
                        sampler: Callable, logits_processors: list | None, prompt_cache: list) -> Iterator[Any]:
        kwargs = dict(max_tokens=max_tokens, sampler=sampler, logits_processors=logits_processors, prompt_cache=prompt_cache)
        if self.numpy_decode and supports(model):
            steps = stream_decode.stream_generate(model, tokenizer, prompt, **kwargs)
        else:
            steps = mlx_lm_stream(model, tokenizer, prompt, **kwargs)
        return _each_with_host_matvec(steps)

    def generate_batch(self, model: nn.Module, rows: Sequence[Row], stop_tokens: Collection[int]) -> list[list[int]]:
        if self.numpy_decode and supports(model):
            return batch_answers.generate(model, rows, set(stop_tokens))
        with patches.host_matvec():
            return decode_by_lora(model, rows, lambda some: batch_generator_answers(model, some, stop_tokens))

    def answer_logps(self, model: nn.Module, rows: Sequence[tuple[Sequence[int], Sequence[int]]]) -> list[float] | None:
        return answer_scores.answer_logps(model, rows) if self.numpy_decode and supports(model) else None


def _each_with_host_matvec(steps: Iterator[Any]) -> Iterator[Any]:
    # only the generation's own computation runs its one-row matmuls in NumPy, not the caller's
    # code between items (which may trace or differentiate the model)
    while True:
        with patches.host_matvec():
            item = next(steps, None)
        if item is None:
            return
        yield item


__all__ = ["CpuBackend"]
