"""Sequence log-probs of answers, computed on answer positions only, and the cached reference.

On the CPU the LM head + log-softmax over a 49k vocabulary dominate a training step, and prompt
positions are not needed at all. So: run the transformer body (``model.model``, which in mlx-lm's
llama-style models already applies the final norm), gather the hidden states of the positions
whose next token is an answer token, and only then apply the LM head and log-softmax (in
vocabulary blocks where the model's backend says so: ``Backend.head_in_vocab_blocks``).
Models without that structure (or whose head does more, e.g. logit soft-capping) fall back to
the naive full-logits path; which path a model gets is decided once by comparing both.

When the adapter covers only the last blocks (mlx-lm's ``num_layers``), the blocks below it never
change during training: ``PrefixCache`` runs them once per row and every step (and the reference
pass) starts from their output. Functions here take either token ids (R, L) or such cached hidden
states (R, L, D) as ``inputs``.

A preference pair's chosen and rejected answers follow the same prompt, so a paired batch runs each
prompt once and both answers attend to its keys/values (``PairedBatch``; ``inputs`` is then a
(prompts, prompt_valid, answers) triple; docs/performance.md has the figures).
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

import mlx.core as mx
import mlx.nn as nn
import mlx_lm
import numpy as np
from mlx_lm.models.base import create_attention_mask
from mlx_lm.tuner.lora import LoRALinear

from asls_mlx.adaptation.base_cache import BaseCache, array_key, base_fingerprint, cached
from asls_mlx.adaptation.batching import Batch, EncodedPair, PairedBatch, answer_rows, collate, collate_pairs
from asls_mlx.adaptation.lm_head import _head_matrix, _mlx_logsumexp, _token_logps, _vocab_block, head_token_logps  # noqa: F401
from asls_mlx.adaptation.lora import adapter_disabled
from asls_mlx.engine.backend_choice import backend_of

if TYPE_CHECKING:
    from asls_mlx.adaptation.prefix_cache import PrefixCache

_PATH_ATTR = "_asls_answer_only"
_SPLIT_ATTR = "_asls_prefix_split"
_CHECKED_ATTR = "_asls_prefix_checked"
_SHARED_ATTR = "_asls_shared_prompt"


def _head(model: nn.Module):
    body = getattr(model, "model", None)
    if body is None or not hasattr(body, "embed_tokens"):
        return None
    if hasattr(model, "lm_head"):
        return model.lm_head
    if getattr(getattr(model, "args", None), "tie_word_embeddings", False):
        return body.embed_tokens.as_linear
    return None


def naive_answer_logps(model, inputs, positions, targets, select) -> mx.array:
    """Per-row answer log-probs from the full (R, L, V) logits: the reference implementation."""
    logits = model(inputs)
    flat = logits.reshape(-1, logits.shape[-1])[positions]
    return select @ _token_logps(flat, targets, backend_of(model).logsumexp)


def frozen_depth(model: nn.Module) -> int:
    """How many leading transformer blocks carry no LoRA layer (their outputs never change)."""
    depth = 0
    for layer in model.model.layers:
        if any(isinstance(m, LoRALinear) for _, m in layer.named_modules()):
            break
        depth += 1
    return depth


def prefix_hidden(model: nn.Module, inputs: mx.array, depth: int) -> mx.array:
    """The hidden states after the first ``depth`` blocks, (R, L, D)."""
    h = model.model.embed_tokens(inputs)
    mask = create_attention_mask(h, None)
    for layer in model.model.layers[:depth]:
        h = layer(h, mask)
    return h


class _PromptKV:
    """mlx-lm's cache protocol for a prompt segment: keeps each block's keys/values for the answers."""

    offset = 0

    def update_and_fetch(self, keys: mx.array, values: mx.array) -> tuple[mx.array, mx.array]:
        self.keys, self.values = keys, values
        return keys, values


class _AfterPrompt:
    """mlx-lm's cache protocol for answer rows: each prompt's keys/values serve ``copies`` answers."""

    def __init__(self, prompt: _PromptKV, copies: int):
        self.prompt, self.copies, self.offset = prompt, copies, prompt.keys.shape[2]

    def update_and_fetch(self, keys: mx.array, values: mx.array) -> tuple[mx.array, mx.array]:
        pk = mx.concatenate([self.prompt.keys] * self.copies, axis=0)
        pv = mx.concatenate([self.prompt.values] * self.copies, axis=0)
        return mx.concatenate([pk, keys], axis=2), mx.concatenate([pv, values], axis=2)


def paired_hidden(prompt_h: mx.array, prompt_valid: mx.array, answer_h: mx.array, layers) -> tuple[mx.array, mx.array]:
    """Run ``layers`` over prompt segments (n, Lp, D) and the answer rows (k n, La, D) that follow them.

    Row ``r`` of the answers continues prompt ``r % n`` (``PairedBatch``'s layout). Padded prompt
    positions attend only to themselves (never a fully masked softmax row) and nobody attends to them.
    """
    n, lp = prompt_valid.shape
    la, copies = answer_h.shape[1], answer_h.shape[0] // n
    i, j = mx.arange(lp), mx.arange(la)
    prompt_mask = (i[:, None] >= i[None]) & (prompt_valid[:, None, None, :] | (i[:, None] == i[None]))
    seen = mx.broadcast_to(mx.concatenate([prompt_valid] * copies)[:, None, None, :], (copies * n, 1, la, lp))
    causal = mx.broadcast_to((j[:, None] >= j[None])[None, None], (copies * n, 1, la, la))
    answer_mask = mx.concatenate([seen, causal], axis=-1)
    for layer in layers:
        kv = _PromptKV()
        prompt_h = layer(prompt_h, prompt_mask, kv)
        answer_h = layer(answer_h, answer_mask, _AfterPrompt(kv, copies))
    return prompt_h, answer_h


def body(model: nn.Module, inputs) -> mx.array:
    """Final-norm hidden states from token ids, or from hidden states cached after the frozen blocks.

    ``inputs`` may also be a ``PairedBatch.inputs`` triple (ids or cached hidden states): then the
    hidden states of the answer segment, (2n, La, D).
    """
    if isinstance(inputs, tuple):
        prompts, valid, answers = inputs
        layers = model.model.layers
        if prompts.ndim == 2:
            prompts, answers = model.model.embed_tokens(prompts), model.model.embed_tokens(answers)
        else:
            layers = layers[getattr(model, _SPLIT_ATTR) :]
        return model.model.norm(paired_hidden(prompts, valid, answers, layers)[1])
    if inputs.ndim == 2:
        return model.model(inputs)
    h = inputs
    mask = create_attention_mask(h, None)
    for layer in model.model.layers[getattr(model, _SPLIT_ATTR) :]:
        h = layer(h, mask)
    return model.model.norm(h)


def full_logits(model: nn.Module, inputs: mx.array) -> mx.array:
    return model(inputs) if inputs.ndim == 2 else _head(model)(body(model, inputs))


def full_logps(model: nn.Module, inputs: mx.array) -> mx.array:
    """Next-token log-probs (R, L, V) at every position (retention target and perplexity)."""
    logits = full_logits(model, inputs).astype(mx.float32)
    return logits - backend_of(model).logsumexp(logits, keepdims=True)


def fast_answer_logps(model, inputs, positions, targets, select) -> mx.array:
    """Per-row answer log-probs with the LM head applied to answer positions only."""
    hidden = body(model, inputs)
    hidden = hidden.reshape(-1, hidden.shape[-1])[positions]
    backend = backend_of(model)
    matrix = _head_matrix(model) if backend.head_in_vocab_blocks else None
    if matrix is None:
        return select @ _token_logps(_head(model)(hidden), targets, backend.logsumexp)
    return select @ head_token_logps(hidden, *matrix, targets, backend.logsumexp)


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


def shares_prompt(model: nn.Module) -> bool:
    """Whether chosen and rejected rows may share one run of their prompt (``PairedBatch``) for
    ``model``: checked once against the unshared rows, else pairs are run as separate rows."""
    cached = getattr(model, _SHARED_ATTR, None)
    if cached is not None:
        return cached
    ok = False
    if uses_answer_only(model):
        pairs = [((1, 2, 3, 4, 5), (6, 7), (8, 9, 10)), ((11, 12), (13, 14, 15), (16,))]
        try:
            shared = fast_answer_logps(model, *collate_pairs(pairs, bucket=4).arrays())
            separate = fast_answer_logps(model, *collate(answer_rows(pairs), bucket=4).arrays())
            ok = bool(mx.allclose(shared, separate, rtol=1e-4, atol=1e-4).item())
        except Exception:
            ok = False
    object.__setattr__(model, _SHARED_ATTR, ok)
    return ok


def prefix_split_depth(model: nn.Module) -> int:
    """Frozen blocks ``PrefixCache`` may skip: 0 unless the split forward equals the full one here."""
    depth = frozen_depth(model) if uses_answer_only(model) else 0
    if not depth:
        return 0
    object.__setattr__(model, _SPLIT_ATTR, depth)  # where ``body`` resumes
    checked = getattr(model, _CHECKED_ATTR, None)
    if checked is None or checked[0] != depth:
        tokens = mx.array([[1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12]])
        try:
            split = body(model, prefix_hidden(model, tokens, depth))
            ok = bool(mx.allclose(split, model.model(tokens), rtol=1e-4, atol=1e-4).item())
        except Exception:
            ok = False
        checked = (depth, ok)
        object.__setattr__(model, _CHECKED_ATTR, checked)
    return depth if checked[1] else 0


def decide_fast_paths(model: nn.Module, base_cache: BaseCache | None = None) -> None:
    """Run the checks of ``uses_answer_only``, ``shares_prompt`` and ``prefix_split_depth`` for
    ``model`` — or take their outcome from ``base_cache``, where an earlier process kept it.

    They cost ~0.6 s (six forwards of the whole model), in every fresh background process, and give
    the same answer for the same base weights, LoRA layout, backend, device and code: all of that is the key.
    """
    if getattr(model, _PATH_ATTR, None) is not None:
        return
    depth = frozen_depth(model)
    key = array_key(
        _code_version(), type(model).__module__, type(model).__name__, base_fingerprint(model), depth,
        backend_of(model).name,
    )

    def compute() -> dict[str, np.ndarray]:
        return {"paths": np.array([uses_answer_only(model), shares_prompt(model), prefix_split_depth(model) == depth])}

    answer_only, shared, split_ok = (bool(v) for v in cached(base_cache, "fast-paths", key, ("paths",), compute)["paths"])
    object.__setattr__(model, _PATH_ATTR, answer_only)
    object.__setattr__(model, _SHARED_ATTR, shared)
    if depth:
        object.__setattr__(model, _CHECKED_ATTR, (depth, split_ok))


@functools.cache
def _code_version() -> bytes:
    """The code the checks judge: this module and those it computes with, and the MLX versions."""
    import asls_mlx
    from asls_mlx.adaptation import batching, lora
    from asls_mlx.engine import backend, mlx_backend
    from asls_mlx.engine.cpu import cpu_kernels, patches

    digest = hashlib.sha256(f"{asls_mlx.__version__} {mx.__version__} {mlx_lm.__version__}".encode())
    modules = (backend, mlx_backend, cpu_kernels, patches)
    for module in (__file__, batching.__file__, lora.__file__, *(m.__file__ for m in modules)):
        try:
            digest.update(Path(module).read_bytes())
        except OSError:  # not a plain file (a zipped install): the versions alone
            pass
    return digest.digest()


def answer_logps(model, inputs, positions, targets, select) -> mx.array:
    """Per-row sum of answer-token log-probs, (R,). Usable inside ``mx.compile`` and ``value_and_grad``."""
    fn = fast_answer_logps if uses_answer_only(model) else naive_answer_logps
    return fn(model, inputs, positions, targets, select)


def rows_logps(model, rows: list[tuple], prefix: PrefixCache | None = None) -> mx.array:
    """Answer log-probs of (prompt, answer) rows, starting from ``prefix``'s cached blocks if given."""
    b = collate(rows)
    inputs = prefix.inputs(rows, b) if prefix is not None else b.inputs
    return answer_logps(model, inputs, *b.arrays()[1:])


def pair_batch(model, pairs: list[tuple], prefix: PrefixCache | None = None) -> tuple[Batch | PairedBatch, object]:
    """The batch of (prompt, chosen, rejected) ``pairs`` (all chosen rows, then all rejected) and its
    model inputs: one run of each prompt where ``shares_prompt(model)``, else separate rows."""
    if shares_prompt(model):
        b = collate_pairs(pairs)
        return b, (prefix.pair_inputs(pairs, b) if prefix is not None else b.inputs)
    rows = answer_rows(pairs)
    b = collate(rows)
    return b, (prefix.inputs(rows, b) if prefix is not None else b.inputs)


def pairs_logps(model, pairs: list[tuple], prefix: PrefixCache | None = None) -> mx.array:
    """Answer log-probs (2n,) of (prompt, chosen, rejected) ``pairs``: all chosen, then all rejected."""
    b, inputs = pair_batch(model, pairs, prefix)
    return answer_logps(model, inputs, *b.arrays()[1:])


def reference_logps(
    model,
    pairs: list[EncodedPair],
    cache: dict | None = None,
    batch_size: int = 8,
    prefix: PrefixCache | None = None,
) -> dict[str, tuple[float, float | None]]:
    """Base-model (adapter off) log-probs ``{pair.key: (chosen, rejected or None)}``, each pair once.

    Pairs already in ``cache`` are not recomputed; the cache is updated in place and returned so the
    caller can persist it beside the pairs.
    """
    cache = {} if cache is None else cache
    todo = list({p.key: p for p in pairs if p.key not in cache}.values())
    todo.sort(key=lambda p: p.length)  # similar lengths together: little padding
    shares_prompt(model)  # decide the paths outside the adapter_disabled block
    with adapter_disabled(model):
        for i in range(0, len(todo), batch_size):
            chunk = todo[i : i + batch_size]
            paired = [p for p in chunk if p.rejected is not None]
            single = [p for p in chunk if p.rejected is None]
            if paired:
                logps = pairs_logps(model, [(p.prompt, p.chosen, p.rejected) for p in paired], prefix).tolist()
                cache.update((p.key, (logps[k], logps[len(paired) + k])) for k, p in enumerate(paired))
            if single:
                logps = rows_logps(model, [(p.prompt, p.chosen) for p in single], prefix).tolist()
                cache.update((p.key, (logps[k], None)) for k, p in enumerate(single))
    return cache


def base_topk(model, tokens: mx.array, k: int = 32, inputs: mx.array | None = None) -> tuple[mx.array, mx.array]:
    """The base model's top-k next-token log-probs and ids on ``tokens``: the retention target.

    ``inputs``: ``tokens[:, :-1]`` or its cached prefix hidden states (``full_logits`` accepts both).
    """
    inputs = tokens[:, :-1] if inputs is None else inputs
    with adapter_disabled(model):
        logps = full_logps(model, inputs)
    # MLX's argpartition: NumPy's (which sampling uses) took 0.12 s over these 25M entries alone
    # but 0.46 s inside a session update (its 100 MB copies), more than MLX's
    index = mx.argpartition(-logps, kth=k - 1, axis=-1)[..., :k]
    top = mx.take_along_axis(logps, index, axis=-1)
    mx.eval(top, index)
    return top, index.astype(mx.int32)


def next_token_logps(model, inputs, targets: mx.array) -> mx.array:
    """log p(targets[r, t] | the row up to t) at every position, (R, L): where the backend says so
    with the LM head in vocabulary blocks (``head_token_logps``), so the (R, L, V) logits are never built."""
    backend = backend_of(model)
    matrix = _head_matrix(model) if backend.head_in_vocab_blocks and uses_answer_only(model) else None
    if matrix is None:
        return mx.take_along_axis(full_logps(model, inputs), targets[..., None], axis=-1).squeeze(-1)
    hidden = body(model, inputs)
    rows, length, width = hidden.shape
    logps = head_token_logps(hidden.reshape(-1, width), *matrix, targets.reshape(-1), backend.logsumexp)
    return logps.reshape(rows, length)
