"""The chat's token loop on the CPU backend: mlx-lm's ``stream_generate`` on NumPy steps.

Scope: models ``numpy_forward.supports`` and mlx-lm's ``KVCache``; the cache is updated through its
own ``update_and_fetch`` or in place, so prompt reuse, trimming and later MLX steps see exactly what
an MLX step would have left.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterator

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx_lm.models.cache import KVCache

from asls_mlx.engine.cpu.cpu_kernels import logsumexp
from asls_mlx.engine.cpu.numpy_forward import forward_tokens, last_logits
from asls_mlx.engine.samplers import HostProcessor, HostSampler


class HostDecodeModel:
    """``model`` for a generation loop: batch-1 steps on a ``KVCache`` through ``forward_tokens``, the rest in MLX."""

    def __init__(self, model: nn.Module):
        self.model = model

    def __call__(self, inputs: mx.array, cache: list | None = None, input_embeddings: mx.array | None = None, **kw):
        if (
            input_embeddings is None
            and not kw
            and inputs.ndim == 2
            and inputs.shape[0] == 1
            and cache is not None
            and all(type(c) is KVCache for c in cache)
        ):
            return forward_tokens(self.model, np.asarray(inputs).reshape(-1), cache)
        if input_embeddings is not None:
            return self.model(inputs, cache=cache, input_embeddings=input_embeddings, **kw)
        return self.model(inputs, cache=cache, **kw)

    def __getattr__(self, name: str):
        return getattr(self.model, name)


class _NumpySteps:
    """Logits stay NumPy arrays: our processors and sampler work on them in place, with no MLX
    log-softmax round trip per token."""

    def __init__(self, model: nn.Module, cache: list, sampler: HostSampler, processors: list, prompt: mx.array):
        self.model, self.cache, self.sampler, self.processors = model, cache, sampler, processors
        self.context = prompt.tolist()

    def prefill(self, chunk: mx.array) -> None:
        self.logits = last_logits(self.model, np.asarray(chunk), self.cache)

    def sample(self) -> tuple[int, mx.array]:
        for processor in self.processors:
            processor.host(self.context, self.logits)
        x = mx.array(self.logits)
        logprobs = x - logsumexp(x)  # lazy: computed only if a caller reads it
        return int(self.sampler.host(self.logits[None])[0]), logprobs

    def advance(self, token: int) -> None:
        self.logits = last_logits(self.model, np.array([token]), self.cache)
        self.context.append(token)


class _MlxSteps:
    """Any other sampler or processor, called as mlx-lm's loops call it, on MLX logits."""

    def __init__(self, model: nn.Module, cache: list, sampler: Callable, processors: list, prompt: mx.array):
        self.model, self.cache, self.sampler, self.processors = HostDecodeModel(model), cache, sampler, processors
        self.context = prompt

    def prefill(self, chunk: mx.array) -> None:
        self.logits = self.model(chunk[None], cache=self.cache)

    def sample(self) -> tuple[int, mx.array]:
        logits = self.logits[:, -1, :]
        for processor in self.processors:
            logits = processor(self.context, logits)
        logprobs = logits - logsumexp(logits, keepdims=True)  # MLX's exp is scalar on the CPU
        return self.sampler(logprobs).item(), logprobs.squeeze(0)

    def advance(self, token: int) -> None:
        self.logits = self.model(mx.array([[token]]), cache=self.cache)
        if self.processors:
            self.context = mx.concatenate([self.context, mx.array([token])])


def stream_generate(model: nn.Module, tokenizer: Any, prompt: mx.array, max_tokens: int, sampler: Callable,
                    logits_processors: list | None = None, prompt_cache: list | None = None,
                    prefill_step_size: int = 2048) -> Iterator[Any]:
    """mlx-lm's ``stream_generate`` (same ``GenerationResponse`` items, same end rules) for ``supports``
    models, without its one-step lookahead.

    mlx-lm computes token n+1 before it yields token n, which overlaps the two on a GPU; here every
    step runs synchronously in NumPy, so the lookahead would only delay each token, the first
    included, by one decode step.
    """
    from mlx_lm.generate import GenerationResponse
    from mlx_lm.models.cache import make_prompt_cache
    from mlx_lm.tokenizer_utils import TokenizerWrapper

    if max_tokens == 0:
        raise ValueError("max_tokens must be non-zero (-1 for no limit)")
    tokenizer = tokenizer if isinstance(tokenizer, TokenizerWrapper) else TokenizerWrapper(tokenizer)
    cache = prompt_cache if prompt_cache is not None else make_prompt_cache(model)
    processors = list(logits_processors or ())
    numpy = (
        all(type(c) is KVCache for c in cache)
        and isinstance(sampler, HostSampler)
        and all(isinstance(p, HostProcessor) for p in processors)
    )
    steps = (_NumpySteps if numpy else _MlxSteps)(model, cache, sampler, processors, prompt)
    detokenizer = tokenizer.detokenizer
    detokenizer.reset()
    tic = time.perf_counter()
    for start in range(0, prompt.size, prefill_step_size):
        steps.prefill(prompt[start : start + prefill_step_size])
    n, prompt_tps, token = 0, 0.0, None

    def response(finish_reason: str | None) -> GenerationResponse:
        return GenerationResponse(
            text=detokenizer.last_segment, token=token, logprobs=logprobs, from_draft=False,
            prompt_tokens=prompt.size, prompt_tps=prompt_tps, generation_tokens=n + 1,
            generation_tps=(n + 1) / (time.perf_counter() - tic), peak_memory=mx.get_peak_memory() / 1e9,
            finish_reason=finish_reason,
        )

    while True:
        token, logprobs = steps.sample()
        if n == 0:
            prompt_tps = prompt.size / (time.perf_counter() - tic)
            tic = time.perf_counter()
        if token in tokenizer.eos_token_ids:
            break
        detokenizer.add_token(token)
        if n + 1 == max_tokens:
            break
        yield response(None)
        steps.advance(token)
        n += 1
    detokenizer.finalize()
    yield response("stop" if token in tokenizer.eos_token_ids else "length")
