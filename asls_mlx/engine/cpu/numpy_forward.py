"""The forward of llama-style models in NumPy, for the CPU backend's generation loops.

Decoding one token is ~210 matrix-vector products plus ~20 tiny ops per block. On the CPU MLX runs
the products as GEMMs, slower than OpenBLAS's GEMV, and each of its small ops costs an evaluation
round trip, which adds up to more than the arithmetic. NumPy does both at C speed, on zero-copy
views of the model's MLX weights; a prompt's elementwise ops gain the same way. The chat's loop
(``stream_decode``) and batched decoding (``batch_answers``) run their steps through ``blocks``;
training and scoring stay in MLX. Measurements: docs/performance.md.

Scope: mlx-lm's llama architecture (SmolLM2, Llama, ...) with plain RoPE, RMSNorm, SwiGLU, optional
LoRA layers (mlx-lm's ``LoRALinear``), float32 weights, batch 1 and mlx-lm's ``KVCache``; the cache
is updated through its own ``update_and_fetch``, so prompt reuse, trimming and later MLX steps see
exactly what an MLX step would have left. Anything else takes the MLX path (``supports``).
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Callable, Iterator, Sequence

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx_lm.models.cache import KVCache
from mlx_lm.tuner.lora import LoRALinear

from asls_mlx.engine.cpu.patches import MatvecEmbedding, MatvecLinear, host_weight
from asls_mlx.engine.row_lora import check_names

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
    """Whether ``model``'s steps can run in NumPy (checked per generation: LoRA may be attached later)."""
    body = getattr(model, "model", None)
    return bool(
        type(model).__module__ == "mlx_lm.models.llama"
        and body is not None
        and type(getattr(body, "embed_tokens", None)) in (nn.Embedding, MatvecEmbedding)
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
        chosen = _ROW_LORA.get()
        if chosen is None:
            return y + np.float32(m.scale) * ((x @ _np(m.lora_a)) @ _np(m.lora_b))
        return chosen[0].add(m, x, y, chosen[1])
    w, rows = host_weight(m), x.shape[0]
    if rows == 1:
        y = (w @ x[0])[None]
    else:
        y = (w @ x.T).T if rows < _TRANSPOSED_ROWS else x @ w.T
    return y + _np(m["bias"]) if "bias" in m else y


class RowLora:
    """Adapter weights chosen per row (``engine.row_lora``): set k of ``loras`` for the rows tagged k.

    ``sets[k]`` maps each LoRA layer (by id) to its (A, B), or to None where that set has no adapter; a set that
    is None reads the layer's own weights (the model as it stands)."""

    def __init__(self, model: nn.Module, loras: Sequence[Any]):
        layers = [(name, m) for name, m in model.named_modules() if type(m) is LoRALinear]
        for lora in loras:
            check_names(lora, {f"{name}.{leaf}" for name, _ in layers for leaf in ("lora_a", "lora_b")})
        self.sets = [None if lora is None else {id(m): _pair(lora, name) for name, m in layers} for lora in loras]

    def add(self, m: Any, x: np.ndarray, y: np.ndarray, groups: int | list) -> np.ndarray:
        """``y`` plus each row's low-rank term (``groups``: one set for all rows, or ``row_groups``)."""
        scale = np.float32(m.scale)
        if isinstance(groups, int):
            pair = self._pair(m, groups)
            return y if pair is None else y + scale * ((x @ pair[0]) @ pair[1])
        for k, rows in groups:
            pair = self._pair(m, k)
            if pair is not None:
                y[rows] += scale * ((x[rows] @ pair[0]) @ pair[1])
        return y

    def _pair(self, m: Any, k: int) -> tuple[np.ndarray, np.ndarray] | None:
        chosen = self.sets[k]
        return (_np(m.lora_a), _np(m.lora_b)) if chosen is None else chosen.get(id(m))


def _pair(lora: Any, name: str) -> tuple[np.ndarray, np.ndarray] | None:
    a, b = lora.get(f"{name}.lora_a"), lora.get(f"{name}.lora_b")
    return None if a is None or b is None else (np.asarray(a, np.float32), np.asarray(b, np.float32))


# (RowLora, tags) while a batch decodes with adapter weights chosen per row; per thread (the chat may answer
# while a background update decodes)
_ROW_LORA: ContextVar[tuple[RowLora, int | list] | None] = ContextVar("row_lora", default=None)


def row_groups(tags: np.ndarray) -> list[tuple[int, slice | np.ndarray]]:
    """(set, its rows) for each set in ``tags``: a slice where the rows are consecutive (the gate's are: new,
    old, base), which NumPy reads and writes in place."""
    groups = []
    for k in np.unique(tags).tolist():
        rows = np.flatnonzero(tags == k)
        groups.append((k, slice(rows[0], rows[-1] + 1) if rows[-1] - rows[0] + 1 == len(rows) else rows))
    return groups


@contextmanager
def rows_with(row_lora: RowLora | None, tags: int | np.ndarray | None) -> Iterator[None]:
    """``linear`` adds the low-rank term of each row's set (``tags``: one per row, or one for all rows) inside the
    block; nothing changes for None."""
    if row_lora is None:
        yield
        return
    token = _ROW_LORA.set((row_lora, tags if isinstance(tags, int) else row_groups(tags)))
    try:
        yield
    finally:
        _ROW_LORA.reset(token)


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
    path reads (``batch_answers``'s prefills); ``clone`` copies it for prompts that continue a shared prefix."""

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


def embed(model: nn.Module, tokens: np.ndarray) -> np.ndarray:
    """The input embeddings (M, D) of token ids (M,)."""
    return host_weight(model.model.embed_tokens)[tokens].astype(np.float32)


Attention = Callable[[int, Any, np.ndarray], np.ndarray]


def blocks(model: nn.Module, x: np.ndarray, attention: Attention) -> np.ndarray:
    """Hidden states x (M, D) through every block of ``model``. ``attention(i, attn, h)`` is block
    i's attention output (after its output projection) for its normed input h: the one part that
    differs between a sequence's steps, a batch's prompts and a batch's decoding steps."""
    for i, layer in enumerate(model.model.layers):
        x = x + attention(i, layer.self_attn, rms_norm(layer.input_layernorm, x))
        x = x + mlp(layer.mlp, rms_norm(layer.post_attention_layernorm, x))
    return x


def last_logits(model: nn.Module, tokens: np.ndarray, cache: list) -> np.ndarray:
    """Logits (vocab,) after ``tokens`` (1-D) that follow ``cache``'s context; the cache advances.

    Only the last position's logits are computed: mlx-lm's loops use nothing else (prefill chunks
    discard theirs, a step takes ``logits[:, -1]``).
    """
    x = blocks(model, embed(model, tokens), lambda i, attn, h: _attention(attn, h, cache[i]))
    return head(model, x[-1:]).reshape(-1)


def head(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """Final norm and LM head of hidden states x (M, D): logits (M, vocab)."""
    body = model.model
    return linear(model.lm_head if hasattr(model, "lm_head") else body.embed_tokens, rms_norm(body.norm, x))


def forward_tokens(model: nn.Module, tokens: np.ndarray, cache: list) -> mx.array:
    """``last_logits`` as mlx-lm's loops take them: an MLX array (1, 1, vocab)."""
    return mx.array(last_logits(model, tokens, cache))[None, None]
