"""Single-sequence generation steps (decode and prompt) of llama-style models in NumPy on the CPU.

Decoding one token is ~210 matrix-vector products plus ~20 tiny ops per block. On our 2-core x86
machines MLX runs the products as GEMMs at ~10 GB/s (OpenBLAS's GEMV reaches 20-40 GB/s), and
each of its small ops costs an evaluation round trip (~50-100 us), which adds up to more than the
arithmetic. NumPy does both at C speed, on zero-copy views of the model's MLX weights, so a decode
step takes about half the time. A chat prompt goes the same way: its GEMMs run at the same speed
in both, but MLX's elementwise ops and round trips made a 178-token prefill 0.33 s where NumPy takes
~0.25 s (time to the first token 0.48 -> 0.39 s). Batched decoding builds on these steps
(``host_batch``); training and scoring stay in MLX.

Scope: mlx-lm's llama architecture (SmolLM2, Llama, ...) with plain RoPE, RMSNorm, SwiGLU, optional
LoRA layers (mlx-lm's ``LoRALinear``), float32 weights, batch 1 and mlx-lm's ``KVCache``; the cache
is updated through its own ``update_and_fetch``, so prompt reuse, trimming and later MLX steps see
exactly what an MLX step would have left. Anything else takes the MLX path (``supports``).
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx_lm.models.cache import KVCache
from mlx_lm.tuner.lora import LoRALinear

from asls_mlx.engine.fastmath import MatvecEmbedding, MatvecLinear, _host_weight, logsumexp

_LINEARS = (nn.Linear, MatvecLinear)
_QUERY_ROWS = 256  # prompt positions per attention block in ``_attention``
_TRANSPOSED_ROWS = 256  # below this many rows, ``linear`` computes ``(W @ x.T).T``


def _plain_linear(m: Any) -> bool:
    return type(m) in _LINEARS and m.weight.dtype == mx.float32


def _linear_ok(m: Any) -> bool:
    return _plain_linear(m) or (type(m) is LoRALinear and _plain_linear(m.linear))


def _layer_ok(layer: Any) -> bool:
    attn, mlp = getattr(layer, "self_attn", None), getattr(layer, "mlp", None)
    if attn is None or mlp is None or getattr(layer, "use_sliding", False):
        return False
    linears = [getattr(attn, n, None) for n in ("q_proj", "k_proj", "v_proj", "o_proj")]
    linears += [getattr(mlp, n, None) for n in ("gate_proj", "up_proj", "down_proj")]
    norms = (getattr(layer, "input_layernorm", None), getattr(layer, "post_attention_layernorm", None))
    return (
        all(_linear_ok(m) for m in linears)
        and type(getattr(attn, "rope", None)) is nn.RoPE
        and all(type(n) is nn.RMSNorm for n in norms)
    )


def supports(model: nn.Module) -> bool:
    """Whether ``model``'s one-token steps can run here (checked per generation: LoRA may be attached later)."""
    body = getattr(model, "model", None)
    return bool(
        mx.default_device().type == mx.cpu
        and type(model).__module__ == "mlx_lm.models.llama"
        and body is not None
        # only models given the CPU kernels (use_fast_kernels; ASLS_FAST_KERNELS=off opts out)
        and type(getattr(body, "embed_tokens", None)) is MatvecEmbedding
        and type(getattr(body, "norm", None)) is nn.RMSNorm
        and (hasattr(model, "lm_head") and _plain_linear(model.lm_head) or not hasattr(model, "lm_head"))
        and all(_layer_ok(layer) for layer in body.layers)
    )


def _np(a: mx.array) -> np.ndarray:
    return np.asarray(a)


def linear(m: Any, x: np.ndarray) -> np.ndarray:
    """``x @ W.T`` for x (M, D), computed as OpenBLAS does it fastest for the M at hand.

    One row is a GEMV. Up to a few hundred rows ``(W @ x.T).T`` beats ``x @ W.T`` (OpenBLAS then
    packs the small x and streams W once): over the 210 block matrices of SmolLM2-135M on 2 cores,
    22 rows 63 vs 77 ms, 178 rows 166 vs 172 ms.
    """
    if type(m) is LoRALinear:
        y = linear(m.linear, x)
        return y + np.float32(m.scale) * ((x @ _np(m.lora_a)) @ _np(m.lora_b))
    w, rows = _host_weight(m), x.shape[0]
    if rows == 1:
        y = (w @ x[0])[None]
    else:
        y = (w @ x.T).T if rows < _TRANSPOSED_ROWS else x @ w.T
    return y + _np(m["bias"]) if "bias" in m else y


def rms_norm(norm: nn.RMSNorm, x: np.ndarray) -> np.ndarray:
    """mlx's ``RMSNorm`` of x (..., D)."""
    return x * (1.0 / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + np.float32(norm.eps))) * _np(norm.weight)


_rope_memo: tuple | None = None  # (rope settings + positions, cos, sin) of the last step: its blocks share them


def _rope_angles(rope: nn.RoPE, offset: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    global _rope_memo
    key = (rope.dims, float(rope.base), float(rope.scale), offset, m)
    memo = _rope_memo  # one read and one write of a tuple: safe when two threads decode
    if memo is None or memo[0] != key:
        memo = _rope_memo = (key, *rope_angles(rope, np.arange(offset, offset + m)))
    return memo[1], memo[2]


def rope_angles(rope: nn.RoPE, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin (len(positions), dims / 2) of mlx's RoPE at ``positions``."""
    half = rope.dims // 2
    freqs = np.power(np.float32(rope.base), -np.arange(half, dtype=np.float32) / half).astype(np.float32)
    angle = (np.asarray(positions, np.float32) * np.float32(rope.scale))[:, None] * freqs
    return np.cos(angle), np.sin(angle)


def rotate(rope: nn.RoPE, x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """mlx's RoPE of ``x`` (..., head_dim) with angles that broadcast against x[..., :dims / 2]."""
    half = rope.dims // 2
    if rope.traditional:
        x1, x2 = x[..., 0 : rope.dims : 2], x[..., 1 : rope.dims : 2]
        out = x.copy()
        out[..., 0 : rope.dims : 2] = x1 * cos - x2 * sin
        out[..., 1 : rope.dims : 2] = x1 * sin + x2 * cos
        return out
    x1, x2 = x[..., :half], x[..., half : rope.dims]
    return np.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos, x[..., rope.dims :]], axis=-1)


class HostKVCache:
    """A batch-1 KV cache in NumPy buffers (n_kv, capacity, head_dim), for prompts that only the host
    path reads (``host_batch``'s prefills); ``clone`` copies it for prompts that continue a shared prefix."""

    def __init__(self, keys: np.ndarray | None = None, values: np.ndarray | None = None, offset: int = 0):
        self.keys, self.values, self.offset = keys, values, offset

    def append(self, k: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        end = self.offset + k.shape[1]
        if self.keys is None or end > self.keys.shape[1]:
            capacity = max(end, 2 * self.offset, 256)
            keys, values = (np.empty((k.shape[0], capacity, k.shape[2]), np.float32) for _ in range(2))
            if self.offset:
                keys[:, : self.offset], values[:, : self.offset] = self.keys[:, : self.offset], self.values[:, : self.offset]
            self.keys, self.values = keys, values
        self.keys[:, self.offset : end], self.values[:, self.offset : end] = k, v
        self.offset = end
        return self.keys[:, :end], self.values[:, :end]

    def clone(self) -> "HostKVCache":
        if self.keys is None:
            return HostKVCache()
        return HostKVCache(self.keys.copy(), self.values.copy(), self.offset)


def _append(cache: KVCache | HostKVCache, k: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Add positions k, v (n_kv, M, head_dim) to ``cache``; returns all its keys and values (n_kv, S, head_dim).

    While the cache's buffers have room, the new positions are written straight into them through
    NumPy views (an MLX slice update would cost two evaluation round trips per block); when they are
    full, mlx-lm's ``update_and_fetch`` grows them as an MLX step would.
    """
    if type(cache) is HostKVCache:
        return cache.append(k, v)
    offset, m = cache.offset, k.shape[1]
    if cache.keys is None or offset + m > cache.keys.shape[2] or cache.keys.shape[0] != 1:
        keys, values = cache.update_and_fetch(mx.array(k)[None], mx.array(v)[None])
        return _np(keys)[0], _np(values)[0]
    views = cache.__dict__.get("_asls_views")
    if views is None or views[0] is not cache.keys or views[1] is not cache.values:
        # MLX replaces the arrays when it writes or grows them, so a view never outlives its buffer
        views = (cache.keys, cache.values, _np(cache.keys)[0], _np(cache.values)[0])
        cache.__dict__["_asls_views"] = views
    keys, values = views[2], views[3]
    keys[:, offset : offset + m], values[:, offset : offset + m] = k, v
    cache.offset = offset + m
    return keys[:, : offset + m], values[:, : offset + m]


def softmax(scores: np.ndarray) -> np.ndarray:
    """Softmax over the last axis (-inf entries get weight 0)."""
    weights = scores - scores.max(axis=-1, keepdims=True)
    np.exp(weights, out=weights)
    weights /= weights.sum(axis=-1, keepdims=True)
    return weights


def project_qkv(attn: Any, h: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> tuple[np.ndarray, ...]:
    """Queries (heads, M, head_dim), keys and values (n_kv, M, head_dim) of h (M, D), RoPE at the
    positions whose angles (M, dims / 2) are given."""
    m = h.shape[0]
    q = linear(attn.q_proj, h).reshape(m, attn.n_heads, -1).transpose(1, 0, 2)
    k = linear(attn.k_proj, h).reshape(m, attn.n_kv_heads, -1).transpose(1, 0, 2)
    v = linear(attn.v_proj, h).reshape(m, attn.n_kv_heads, -1).transpose(1, 0, 2)
    return rotate(attn.rope, q, cos, sin), rotate(attn.rope, k, cos, sin), v


def attend(attn: Any, q: np.ndarray, keys: np.ndarray, values: np.ndarray, offset: int) -> np.ndarray:
    """Causal attention of queries q (heads, M, head_dim) at positions offset.. over keys and values
    (n_kv, S, head_dim) that end with theirs: (M, heads * head_dim), before the output projection."""
    n_heads, n_kv, m = attn.n_heads, attn.n_kv_heads, q.shape[1]
    group, span = n_heads // n_kv, keys.shape[1]
    grouped = q.reshape(n_kv, group, m, -1) * np.float32(attn.scale)
    out = np.empty(grouped.shape, np.float32)  # (n_kv, group, M, head_dim)
    # a few hundred queries at a time: a 2048-token prompt chunk's whole score array would be ~150 MB
    for start in range(0, m, _QUERY_ROWS):
        rows = slice(start, start + _QUERY_ROWS)
        r = len(range(m)[rows])
        # a kv head's whole query group as one matrix: one GEMM per kv head, not one per query head
        scores = grouped[:, :, rows].reshape(n_kv, group * r, -1) @ keys.transpose(0, 2, 1)
        scores = scores.reshape(n_kv, group, r, span)
        if m > 1:  # causal: query i sees the cache and new positions up to its own
            future = np.arange(span)[None, :] > (offset + np.arange(m)[rows])[:, None]
            scores += np.where(future, np.float32(-np.inf), np.float32(0))
        out[:, :, rows] = (softmax(scores).reshape(n_kv, group * r, span) @ values).reshape(n_kv, group, r, -1)
    return out.reshape(n_heads, m, -1).transpose(1, 0, 2).reshape(m, -1)


def _attention(attn: Any, h: np.ndarray, cache: KVCache) -> np.ndarray:
    offset = cache.offset
    q, k, v = project_qkv(attn, h, *_rope_angles(attn.rope, offset, h.shape[0]))
    keys, values = _append(cache, k, v)  # (n_kv, S, head_dim)
    return linear(attn.o_proj, attend(attn, q, keys, values, offset))


def mlp(block_mlp: Any, h: np.ndarray) -> np.ndarray:
    """A llama block's SwiGLU MLP of h (M, D)."""
    gate = linear(block_mlp.gate_proj, h)
    act = np.negative(gate)  # silu(gate) * up, computed in one buffer
    np.exp(act, out=act)
    act += 1.0
    np.divide(gate, act, out=act)
    act *= linear(block_mlp.up_proj, h)
    return linear(block_mlp.down_proj, act)


def last_logits(model: nn.Module, tokens: np.ndarray, cache: list) -> np.ndarray:
    """Logits (vocab,) after ``tokens`` (1-D) that follow ``cache``'s context; the cache advances.

    Only the last position's logits are computed: mlx-lm's loops use nothing else (prefill chunks
    discard theirs, a step takes ``logits[:, -1]``).
    """
    body = model.model
    x = _host_weight(body.embed_tokens)[tokens].astype(np.float32)  # (M, D)
    for layer, layer_cache in zip(body.layers, cache):
        x = x + _attention(layer.self_attn, rms_norm(layer.input_layernorm, x), layer_cache)
        x = x + mlp(layer.mlp, rms_norm(layer.post_attention_layernorm, x))
    return head(model, x[-1:]).reshape(-1)


def head(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """Final norm and LM head of hidden states x (M, D): logits (M, vocab)."""
    body = model.model
    return linear(model.lm_head if hasattr(model, "lm_head") else body.embed_tokens, rms_norm(body.norm, x))


def forward_tokens(model: nn.Module, tokens: np.ndarray, cache: list) -> mx.array:
    """``last_logits`` as mlx-lm's loops take them: an MLX array (1, 1, vocab)."""
    return mx.array(last_logits(model, tokens, cache))[None, None]


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
            return forward_tokens(self.model, _np(inputs).reshape(-1), cache)
        if input_embeddings is not None:
            return self.model(inputs, cache=cache, input_embeddings=input_embeddings, **kw)
        return self.model(inputs, cache=cache, **kw)

    def __getattr__(self, name: str):
        return getattr(self.model, name)


def stream_generate(model: nn.Module, tokenizer, prompt: mx.array, max_tokens: int, sampler,
                    logits_processors=None, prompt_cache: list | None = None, prefill_step_size: int = 2048):
    """mlx-lm's ``stream_generate`` (same ``GenerationResponse`` items, same end rules) for ``supports``
    models, without its one-step lookahead.

    mlx-lm computes token n+1 before it yields token n, which overlaps the two on a GPU; here every
    step runs synchronously in NumPy, so the lookahead only delayed each token, the first included,
    by one decode step (~35 ms of a 0.39 s time to first token).
    """
    import time

    from mlx_lm.generate import GenerationResponse
    from mlx_lm.models.cache import make_prompt_cache
    from mlx_lm.tokenizer_utils import TokenizerWrapper

    if max_tokens == 0:
        raise ValueError("max_tokens must be non-zero (-1 for no limit)")
    tokenizer = tokenizer if isinstance(tokenizer, TokenizerWrapper) else TokenizerWrapper(tokenizer)
    host = HostDecodeModel(model)
    cache = prompt_cache if prompt_cache is not None else make_prompt_cache(model)
    processors = list(logits_processors or ())
    # ours sample the NumPy logits (and penalise them) in place: no MLX log-softmax round trip
    # per token (~1-2 ms of a ~33 ms step)
    on_host = (
        all(type(c) is KVCache for c in cache) and hasattr(sampler, "host") and all(hasattr(p, "host") for p in processors)
    )
    detokenizer = tokenizer.detokenizer
    detokenizer.reset()
    tic = time.perf_counter()
    for start in range(0, prompt.size, prefill_step_size):
        chunk = prompt[start : start + prefill_step_size]
        logits = last_logits(model, _np(chunk), cache) if on_host else host(chunk[None], cache=cache)
    context = prompt.tolist() if on_host else prompt
    n, prompt_tps, token = 0, 0.0, None

    def response(finish_reason: str | None) -> GenerationResponse:
        return GenerationResponse(
            text=detokenizer.last_segment, token=token, logprobs=logprobs, from_draft=False,
            prompt_tokens=prompt.size, prompt_tps=prompt_tps, generation_tokens=n + 1,
            generation_tps=(n + 1) / (time.perf_counter() - tic), peak_memory=mx.get_peak_memory() / 1e9,
            finish_reason=finish_reason,
        )

    while True:
        if on_host:
            for processor in processors:
                processor.host(context, logits)
            x = mx.array(logits)
            logprobs = x - logsumexp(x)  # lazy: computed only if a caller reads it
            token = int(sampler.host(logits[None])[0])
        else:
            logits = logits[:, -1, :]
            for processor in processors:
                logits = processor(context, logits)
            logprobs = logits - logsumexp(logits, keepdims=True)  # MLX's exp is scalar on the CPU
            token, logprobs = sampler(logprobs).item(), logprobs.squeeze(0)
        if n == 0:
            prompt_tps = prompt.size / (time.perf_counter() - tic)
            tic = time.perf_counter()
        if token in tokenizer.eos_token_ids:
            break
        detokenizer.add_token(token)
        if n + 1 == max_tokens:
            break
        yield response(None)
        if on_host:
            logits = last_logits(model, np.array([token]), cache)
            context.append(token)
        else:
            logits = host(mx.array([[token]]), cache=cache)
            if processors:
                context = mx.concatenate([context, mx.array([token])])
        n += 1
    detokenizer.finalize()
    yield response("stop" if token in tokenizer.eos_token_ids else "length")
