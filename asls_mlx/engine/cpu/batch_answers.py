"""Many independent answers decoded together in NumPy: the CPU backend's ``generate_batch``.

The self-labelled samples and the commit gate's answers of a session update are ~22 short answers
decoded as one batch. In mlx-lm's ``BatchGenerator`` the GEMMs are a small part of a step on the
CPU, the rest MLX's per-op round trips (~30 small ops per block) and a log-softmax over the
vocabulary. The same step in NumPy (``numpy_forward``'s blocks, one KV buffer per block holding
every row at its own position) leaves mostly the GEMMs. Measurements: docs/performance.md.

Prefill: the prefix common to all prompts (system text, chat template) runs once, then the rest of
the distinct prompts (rows sampled k times share one) together, as one stack of rows through the
GEMMs; their keys and values are copied into the rows' buffers.
Ends, logits processors (called with the prompt + tokens so far) and samplers are those of mlx-lm's
loops; rows sharing a sampler object are sampled in one call; finished rows leave the batch.
More rows than one batch holds (``BATCH_ROWS``, or ``KV_BUDGET`` bytes of keys and values) are
decoded in batches of similar lengths.
Rows may carry their own adapter weights (``Row.lora``, the gate's new, old and base answers in one batch): the
rows of each set prefill with that set, and each step adds every row's own low-rank term (``numpy_forward.RowLora``).
Same scope as the chat's loop (``numpy_forward.supports``).
"""

from __future__ import annotations

from typing import Any, Sequence

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from asls_mlx.engine.backend import Row
from asls_mlx.engine.cpu.cpu_kernels import logsumexp
from asls_mlx.engine.cpu.numpy_forward import (
    HostKVCache, RowLora, attend, blocks, embed, head, last_logits, linear, project_qkv, rope_angles, rows_with, softmax,
)
from asls_mlx.engine.row_lora import lora_groups, mixed
from asls_mlx.engine.samplers import HostProcessor, HostSampler
from asls_mlx.yielding import pause_point

BATCH_ROWS = 32  # rows decoded at once (mlx-lm's completion batch size); more wait for the next batch
KV_BUDGET = 1 << 30  # bytes of one batch's KV buffers, at most (unless one row alone needs more)
PREFILL_ROWS = 2048  # prompt positions (after the shared prefix) prefilled together, at most (unless one prompt is longer)


def generate(model: nn.Module, rows: Sequence[Row], stop_tokens: set[int], batch_rows: int = BATCH_ROWS) -> list[list[int]]:
    """The new tokens of each row, without the stop token that ended it (if one did)."""
    if any(len(r.prompt) == 0 for r in rows):
        raise ValueError("every row needs a prompt of at least one token")
    out: list[list[int]] = [[] for _ in rows]
    for batch in _batches(rows, batch_rows, KV_BUDGET // _kv_bytes_per_position(model)):
        for i, answer in zip(batch, _generate_batch(model, [rows[i] for i in batch], stop_tokens)):
            out[i] = answer
    return out


def _length(rows: Sequence[Row]) -> int:
    """Positions of each row's KV buffer in a batch of ``rows`` (as ``_generate_batch`` allocates them)."""
    return max(len(r.prompt) for r in rows) + max(max(r.max_tokens, 1) for r in rows)


def _batches(rows: Sequence[Row], batch_rows: int, budget_positions: int) -> list[list[int]]:
    """Row indices per batch. Every row's KV buffer is as long as the batch's longest prompt plus its
    largest ``max_tokens``: when the rows do not all fit in one batch, similar lengths go together
    and a batch holds at most ``budget_positions`` (rows x that length), so a few long
    conversations among short prompts cannot make every row's buffer long (32 x 2,300 positions
    would be ~3 GB on SmolLM2-135M)."""
    if len(rows) <= batch_rows and len(rows) * _length(rows) <= budget_positions:
        return [list(range(len(rows)))]  # one batch, rows in their order (seeded draws as before)
    batches: list[list[int]] = []
    for i in sorted(range(len(rows)), key=lambda i: (len(rows[i].prompt), rows[i].max_tokens)):
        grown = batches[-1] + [i] if batches else []
        if grown and len(grown) <= batch_rows and len(grown) * _length([rows[j] for j in grown]) <= budget_positions:
            batches[-1] = grown
        else:
            batches.append([i])
    return batches


def _kv_bytes_per_position(model: nn.Module) -> int:
    """Bytes one row's keys and values take per position, over all blocks (float32)."""
    return sum(2 * 4 * getattr(l.self_attn.k_proj, "linear", l.self_attn.k_proj).weight.shape[0] for l in model.model.layers)


def prefill(model: nn.Module, prompts: list[tuple[int, ...]]) -> dict[tuple[int, ...], tuple[list[HostKVCache], np.ndarray]]:
    """Per distinct prompt: its blocks' caches and the logits after it."""
    distinct = list(dict.fromkeys(prompts))
    shared = min(len(p) for p in distinct) - 1  # each prompt keeps >= 1 token of its own for its logits
    for p in distinct[1:]:
        shared = min(shared, next((i for i, (a, b) in enumerate(zip(distinct[0], p)) if a != b), shared))
    prefix = [HostKVCache() for _ in model.model.layers]
    if shared > 0:
        last_logits(model, np.array(distinct[0][:shared]), prefix)
    done = {}
    group: list[tuple[int, ...]] = []
    for i, p in enumerate(distinct):
        group.append(p)
        if i + 1 == len(distinct) or sum(len(q) - shared for q in group + [distinct[i + 1]]) > PREFILL_ROWS:
            caches = [[c.clone() for c in prefix] for _ in group]
            logits = _prefill_suffixes(model, [np.array(q[shared:]) for q in group], caches, shared)
            done.update((q, (c, row)) for q, c, row in zip(group, caches, logits))
            group = []
    return done


def _prefill_suffixes(model: nn.Module, suffixes: list[np.ndarray], caches: list[list[HostKVCache]], offset: int) -> np.ndarray:
    """Logits (len(suffixes), vocab) after each suffix, each following ``offset`` positions already in
    its caches: the suffixes go through the matrix products as one stack of rows (a GEMM over 300
    rows costs little more than one over 30), and attend each to its own cache."""
    ends = np.cumsum([len(t) for t in suffixes])
    segments = [slice(end - len(t), end) for end, t in zip(ends, suffixes)]
    positions = np.concatenate([np.arange(offset, offset + len(t)) for t in suffixes])
    angles: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}

    def attention(i: int, attn: Any, h: np.ndarray) -> np.ndarray:
        q, k, v = project_qkv(attn, h, *angles_at(angles, attn.rope, positions))
        out = []
        for cache, rows in zip(caches, segments):
            keys, values = cache[i].append(k[:, rows], v[:, rows])
            out.append(attend(attn, q[:, rows], keys, values, offset))
        return linear(attn.o_proj, np.concatenate(out))

    x = blocks(model, embed(model, np.concatenate(suffixes)), attention)
    return head(model, x[ends - 1])


def angles_at(memo: dict, rope: Any, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``rope_angles`` at ``positions``, computed once per RoPE setting for all blocks of a forward."""
    key = (rope.dims, float(rope.base), float(rope.scale))
    if key not in memo:
        memo[key] = rope_angles(rope, positions)
    return memo[key]


def _prefill_rows(model: nn.Module, rows: list[Row], prompts: list[tuple[int, ...]]) -> tuple[list, RowLora | None, np.ndarray | None]:
    """Each row's (caches, logits) after its prompt, the rows' adapter weights (None: the model's for all) and
    each row's set among them (None then): rows of one set prefill together, with that set's weights."""
    if not mixed(rows):
        prefilled = prefill(model, prompts)
        return [prefilled[p] for p in prompts], None, None
    groups = list(lora_groups(rows).values())
    row_lora, tags, out = RowLora(model, [rows[g[0]].lora for g in groups]), np.zeros(len(rows), np.int64), [None] * len(rows)
    for k, indices in enumerate(groups):
        with rows_with(row_lora, k):
            prefilled = prefill(model, [prompts[i] for i in indices])
        for i in indices:
            out[i], tags[i] = prefilled[prompts[i]], k
    return out, row_lora, tags


def _generate_batch(model: nn.Module, rows: list[Row], stop_tokens: set[int]) -> list[list[int]]:
    prompts = [tuple(int(t) for t in r.prompt) for r in rows]
    prefilled, row_lora, tags = _prefill_rows(model, rows, prompts)
    capacity = max(len(p) for p in prompts) + max(max(r.max_tokens, 1) for r in rows)
    kv = []
    for i, layer in enumerate(model.model.layers):
        first = prefilled[0][0][i].keys
        keys = np.zeros((len(rows), first.shape[0], capacity, first.shape[2]), np.float32)
        values = np.zeros_like(keys)
        for b, p in enumerate(prompts):
            cache = prefilled[b][0][i]
            keys[b, :, : len(p)], values[b, :, : len(p)] = cache.keys[:, : len(p)], cache.values[:, : len(p)]
        kv.append((keys, values))
    logits = np.stack([row[1] for row in prefilled])
    del prefilled
    positions = np.array([len(p) for p in prompts])  # where each row's next token goes
    slots: list[int | None] = list(range(len(rows)))  # the row in each batch slot; None once finished
    contexts = [list(p) for p in prompts]
    answers: list[list[int]] = [[] for _ in rows]
    while True:
        live = [s for s, r in enumerate(slots) if r is not None]
        sampled = _sample(logits[live], [rows[slots[s]] for s in live], [contexts[slots[s]] for s in live])
        tokens = np.zeros(len(slots), np.int64)
        for s, token in zip(live, sampled):
            row = slots[s]
            tokens[s] = token
            if token in stop_tokens:
                slots[s] = None
                continue
            answers[row].append(token)
            contexts[row].append(token)
            if len(answers[row]) >= rows[row].max_tokens:
                slots[s] = None
        finished = sum(r is None for r in slots)
        if finished == len(slots):
            return answers
        if 4 * finished >= len(slots):  # drop finished rows (a copy of the buffers) once they are a quarter
            keep = [s for s, r in enumerate(slots) if r is not None]
            kv = [(k[keep], v[keep]) for k, v in kv]
            slots, tokens, positions = [slots[s] for s in keep], tokens[keep], positions[keep]
            tags = None if tags is None else tags[keep]  # each slot's weight set
        pause_point()  # in a background update: give way to an answer being written (no-op elsewhere)
        with rows_with(row_lora, tags):
            logits = _step(model, tokens, kv, positions)
        positions = positions + 1


def _sample(logits: np.ndarray, rows: list[Row], contexts: list[list[int]]) -> list[int]:
    """One token per row. ``logits`` (rows, vocab) is a fresh array: processors may change it in place."""
    if all(isinstance(p, HostProcessor) for r in rows for p in r.processors):  # ours: applied to the NumPy rows
        for row, r, context in zip(logits, rows, contexts):
            for processor in r.processors:
                processor.host(context, row)
        x = None if all(isinstance(r.sampler, HostSampler) for r in rows) else mx.array(logits)
    else:  # any other processor as mlx-lm's loops call it: one row of MLX logits at a time
        x = mx.concatenate([_processed(mx.array(row[None]), r, c) for row, r, c in zip(logits, rows, contexts)])
    logprobs = None if x is None else x - logsumexp(x, keepdims=True)

    def draw(indices: list[int]) -> np.ndarray:
        sampler, every = rows[indices[0]].sampler, len(indices) == len(rows)
        if logprobs is None:  # ours: sampled from the NumPy logits, no round trip through MLX
            return sampler.host(logits if every else logits[indices])
        return np.array(sampler(logprobs if every else logprobs[mx.array(indices)]))

    groups: dict[int, list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(id(r.sampler), []).append(i)
    tokens = [0] * len(rows)
    for indices in groups.values():
        for i, t in zip(indices, draw(indices).reshape(-1).tolist()):
            tokens[i] = int(t)
    return tokens


def _processed(x: mx.array, row: Row, context: list[int]) -> mx.array:
    if row.processors:
        tokens = mx.array(context)
        for processor in row.processors:
            x = processor(tokens, x)
    return x


def _step(model: nn.Module, tokens: np.ndarray, kv: list, positions: np.ndarray) -> np.ndarray:
    """Logits (rows, vocab) of one new token per row at ``positions``, written into ``kv``."""
    span = int(positions.max()) + 1
    # each row sees its own positions only: later slots (other rows' lengths) are masked
    mask = np.where(np.arange(span)[None, :] > positions[:, None], np.float32(-np.inf), np.float32(0))
    angles: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}

    def attention(i: int, attn: Any, h: np.ndarray) -> np.ndarray:
        keys, values = kv[i]
        return _attention_rows(attn, h, keys, values, positions, span, mask, angles_at(angles, attn.rope, positions))

    return head(model, blocks(model, embed(model, tokens), attention))


def _attention_rows(attn: Any, h: np.ndarray, keys: np.ndarray, values: np.ndarray, positions: np.ndarray,
                    span: int, mask: np.ndarray, angles: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    n, n_kv = h.shape[0], attn.n_kv_heads
    q, k, v = project_qkv(attn, h, *angles)  # (heads or kv heads, rows, head_dim)
    rows = np.arange(n)
    keys[rows, :, positions], values[rows, :, positions] = k.transpose(1, 0, 2), v.transpose(1, 0, 2)
    grouped = q.transpose(1, 0, 2).reshape(n, n_kv, attn.n_heads // n_kv, -1) * np.float32(attn.scale)
    scores = grouped @ keys[:, :, :span].transpose(0, 1, 3, 2) + mask[:, None, None, :]  # (rows, n_kv, group, span)
    out = softmax(scores) @ values[:, :, :span]
    return linear(attn.o_proj, out.reshape(n, -1))
