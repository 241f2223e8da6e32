"""Sequence log-probs of answers, computed on answer positions only, and the cached reference.

On the CPU backend the LM head + log-softmax over a 49k vocabulary dominate a step (DESIGN.md), and
prompt positions are not needed at all. So: run the transformer body (``model.model``, which in
mlx-lm's llama-style models already applies the final norm), gather the hidden states of the
positions whose next token is an answer token, and only then apply the LM head and log-softmax.
Models without that structure (or whose head does more, e.g. logit soft-capping) fall back to
the naive full-logits path; which path a model gets is decided once by comparing both.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from asls_mlx.adaptation.batching import Batch, EncodedPair, collate
from asls_mlx.adaptation.lora import adapter_disabled

_PATH_ATTR = "_asls_answer_only"


def _head(model: nn.Module):
    body = getattr(model, "model", None)
    if body is None or not hasattr(body, "embed_tokens"):
        return None
    if hasattr(model, "lm_head"):
        return model.lm_head
    if getattr(getattr(model, "args", None), "tie_word_embeddings", False):
        return body.embed_tokens.as_linear
    return None


def _token_logps(logits: mx.array, targets: mx.array) -> mx.array:
    """log softmax(logits)[target] = logit[target] - logsumexp(logits), never materialising the rest."""
    logits = logits.astype(mx.float32)
    picked = mx.take_along_axis(logits, targets[:, None], axis=-1).squeeze(-1)
    return picked - mx.logsumexp(logits, axis=-1)


def naive_answer_logps(model, inputs, positions, targets, select) -> mx.array:
    """Per-row answer log-probs from the full (R, L, V) logits: the reference implementation."""
    logits = model(inputs)
    flat = logits.reshape(-1, logits.shape[-1])[positions]
    return select @ _token_logps(flat, targets)


def fast_answer_logps(model, inputs, positions, targets, select) -> mx.array:
    """Per-row answer log-probs with the LM head applied to answer positions only."""
    hidden = model.model(inputs)
    hidden = hidden.reshape(-1, hidden.shape[-1])[positions]
    return select @ _token_logps(_head(model)(hidden), targets)


def uses_answer_only(model) -> bool:
    """Whether ``fast_answer_logps`` is exact for ``model`` (checked once against the naive path)."""
    cached = getattr(model, _PATH_ATTR, None)
    if cached is not None:
        return cached
    ok = False
    if _head(model) is not None:
        try:
            b = collate([((1, 2, 3, 4), (5, 6, 7)), ((8, 9), (10, 11, 12, 13))], bucket=8)
            fast = fast_answer_logps(model, *b.arrays())
            naive = naive_answer_logps(model, *b.arrays())
            ok = bool(mx.allclose(fast, naive, rtol=1e-4, atol=1e-4).item())
        except Exception:
            ok = False
    object.__setattr__(model, _PATH_ATTR, ok)
    return ok


def answer_logps(model, inputs, positions, targets, select) -> mx.array:
    """Per-row sum of answer-token log-probs, (R,). Usable inside ``mx.compile`` and ``value_and_grad``."""
    fn = fast_answer_logps if uses_answer_only(model) else naive_answer_logps
    return fn(model, inputs, positions, targets, select)


def batch_logps(model, batch: Batch) -> mx.array:
    return answer_logps(model, *batch.arrays())


def reference_logps(
    model,
    pairs: list[EncodedPair],
    cache: dict | None = None,
    batch_size: int = 8,
) -> dict[str, tuple[float, float | None]]:
    """Base-model (adapter off) log-probs ``{pair.key: (chosen, rejected or None)}``, each pair once.

    Pairs already in ``cache`` are not recomputed; the cache is updated in place and returned so the
    caller can persist it beside the pairs.
    """
    cache = {} if cache is None else cache
    todo = list({p.key: p for p in pairs if p.key not in cache}.values())
    todo.sort(key=lambda p: p.length)  # similar lengths together: little padding
    uses_answer_only(model)  # decide the path outside the adapter_disabled block
    with adapter_disabled(model):
        for i in range(0, len(todo), batch_size):
            chunk = todo[i : i + batch_size]
            rows = [(p.prompt, p.chosen) for p in chunk] + [(p.prompt, p.rejected) for p in chunk if p.rejected is not None]
            logps = batch_logps(model, collate(rows)).tolist()
            j = len(chunk)
            for k, p in enumerate(chunk):
                rejected = None
                if p.rejected is not None:
                    rejected = logps[j]
                    j += 1
                cache[p.key] = (logps[k], rejected)
    return cache


def text_logps(model, tokens: mx.array) -> mx.array:
    """Full next-token log-probs (N, L-1, V) on general text (retention / perplexity)."""
    logits = model(tokens[:, :-1]).astype(mx.float32)
    return logits - mx.logsumexp(logits, axis=-1, keepdims=True)


def base_topk(model, tokens: mx.array, k: int = 32) -> tuple[mx.array, mx.array]:
    """The base model's top-k next-token log-probs and ids on ``tokens``: the retention target."""
    with adapter_disabled(model):
        logps = text_logps(model, tokens)
    index = mx.argpartition(-logps, kth=k - 1, axis=-1)[..., :k]
    top = mx.take_along_axis(logps, index, axis=-1)
    mx.eval(top, index)
    return top, index.astype(mx.int32)
