"""Log-probs of target tokens through a model's LM head, without building more logits than needed.

The picked logit is a row dot product; the log-sum-exp over the vocabulary is computed in column
blocks (``head_token_logps``) where the model's backend says so, so (positions, vocab) logits never
exist as one array.
"""

from __future__ import annotations

import functools

import mlx.core as mx
import mlx.nn as nn


_mlx_logsumexp = functools.partial(mx.logsumexp, axis=-1)  # Backend.logsumexp's form of MLX's own


def _token_logps(logits: mx.array, targets: mx.array, logsumexp=_mlx_logsumexp) -> mx.array:
    """log softmax(logits)[target] = logit[target] - logsumexp(logits), never materialising the rest.
    ``logsumexp``: the model's backend's (``Backend.logsumexp``)."""
    logits = logits.astype(mx.float32)
    picked = mx.take_along_axis(logits, targets[:, None], axis=-1).squeeze(-1)
    return picked - logsumexp(logits)


def _head_matrix(model: nn.Module) -> tuple[mx.array, mx.array | None] | None:
    """(weight (V, D), bias) of a plain floating-point LM head, tied or not; None for anything else."""
    if hasattr(model, "lm_head"):
        head = model.lm_head
        if not isinstance(head, nn.Linear) or type(head).__name__.startswith("Quantized"):
            return None
        weight, bias = head.weight, head["bias"] if "bias" in head else None
    else:
        weight, bias = model.model.embed_tokens.weight, None
    return (weight, bias) if mx.issubdtype(weight.dtype, mx.floating) else None


def _vocab_block(rows: int, vocab: int) -> int:
    # ~8 MB of float32 logits per block. Whole (512, 49k) logits are 100 MB arrays, which glibc
    # maps fresh for every allocation (above its 32 MB mmap threshold) and the kernel zeroes page
    # by page: ~0.2 s per array in our VMs. Blocks this size reuse freed heap memory instead.
    return min(vocab, 1 << max(10, (2**21 // max(rows, 1)).bit_length() - 1))


def head_token_logps(hidden: mx.array, weight: mx.array, bias: mx.array | None, targets: mx.array,
                     logsumexp=_mlx_logsumexp) -> mx.array:
    """``_token_logps(hidden @ weight.T + bias, targets)`` with the vocabulary in column blocks.

    The full (positions, vocab) logits are never built: the picked logit is a row dot product and
    the log-sum-exp combines per-block log-sum-exps. Same values to float32 rounding.
    ``logsumexp``: the model's backend's (``Backend.logsumexp``).
    """
    picked = (hidden.astype(mx.float32) * weight[targets].astype(mx.float32)).sum(-1)
    if bias is not None:
        picked = picked + bias[targets].astype(mx.float32)
    vocab = weight.shape[0]
    width = _vocab_block(hidden.shape[0], vocab)
    parts = []
    for start in range(0, vocab, width):
        z = hidden @ weight[start : start + width].T
        if bias is not None:
            z = z + bias[start : start + width]
        parts.append(logsumexp(z.astype(mx.float32)))
    lse = parts[0] if len(parts) == 1 else logsumexp(mx.stack(parts, axis=-1))
    return picked - lse


__all__ = ["head_token_logps"]
