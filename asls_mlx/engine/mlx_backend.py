"""The pure-MLX backend: mlx-lm's generation loops and MLX's own ops, as Metal and CUDA run them."""

from __future__ import annotations

from typing import Any, Callable, Collection, Iterator, Sequence

import mlx.core as mx
import mlx.nn as nn

from asls_mlx.engine.backend import Backend, Row
from asls_mlx.engine.row_lora import decode_by_lora
from asls_mlx.yielding import pause_point


class MlxBackend(Backend):
    """mlx-lm's loops (``stream_generate``, ``BatchGenerator``) and MLX's ops, the model untouched."""

    host_top_k = False
    head_in_vocab_blocks = False  # one fused logits + logsumexp is fastest on a GPU

    @property
    def name(self) -> str:
        return f"mlx-{mx.default_device().type.name}"

    def logsumexp(self, x: mx.array, axis: int = -1, keepdims: bool = False) -> mx.array:
        return mx.logsumexp(x, axis=axis, keepdims=keepdims)

    def stream_generate(self, model: nn.Module, tokenizer: Any, prompt: mx.array, *, max_tokens: int,
                        sampler: Callable, logits_processors: list | None, prompt_cache: list) -> Iterator[Any]:
        return mlx_lm_stream(model, tokenizer, prompt, max_tokens=max_tokens, sampler=sampler,
                             logits_processors=logits_processors, prompt_cache=prompt_cache)

    def generate_batch(self, model: nn.Module, rows: Sequence[Row], stop_tokens: Collection[int]) -> list[list[int]]:
        return decode_by_lora(model, rows, lambda some: batch_generator_answers(model, some, stop_tokens))

    def __repr__(self) -> str:
        return "MlxBackend()"


def mlx_lm_stream(model: nn.Module, tokenizer: Any, prompt: mx.array, **kwargs) -> Iterator[Any]:
    """mlx-lm's ``stream_generate`` (it decodes one token ahead, which pays where steps run asynchronously)."""
    from mlx_lm import stream_generate

    return stream_generate(model, tokenizer, prompt, **kwargs)


def batch_generator_answers(model: nn.Module, rows: Sequence[Row], stop_tokens: Collection[int]) -> list[list[int]]:
    """``generate_batch`` through mlx-lm's ``BatchGenerator`` (it calls different samplers row by row)."""
    from mlx_lm.generate import BatchGenerator

    gen = BatchGenerator(model, stop_tokens=[[t] for t in stop_tokens])
    uids = gen.insert(
        [r.prompt for r in rows], [r.max_tokens for r in rows],
        samplers=[r.sampler for r in rows], logits_processors=[r.processors for r in rows],
    )
    tokens: dict[int, list[int]] = {uid: [] for uid in uids}
    try:
        while responses := gen.next_generated():
            pause_point()  # in a background update: give way to an answer being written (no-op elsewhere)
            for r in responses:
                if r.finish_reason != "stop":
                    tokens[r.uid].append(r.token)
    finally:
        gen.close()
    return [tokens[uid] for uid in uids]
