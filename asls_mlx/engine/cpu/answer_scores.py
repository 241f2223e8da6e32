"""Log-probs of given answers after given prompts, in NumPy: the CPU backend's ``answer_logps``.

The relevance check reads each answer after its own prompt and after four reference prompts: 5 rows per
answer, most of each row a prompt that many rows share. In MLX every row runs whole. Here each distinct
prompt runs once (their common prefix once, as ``batch_answers`` prefills), and then every row's answer
tokens go through the blocks as one stack, each segment attending to its prompt's keys and values: a
row costs its answer's tokens, not its prompt's. No gradient: scoring only, with the weights as they are
(``adapter_disabled`` scales are read, as in decoding).
"""

from __future__ import annotations

from typing import Any, Sequence

import mlx.nn as nn
import numpy as np

from asls_mlx.engine.cpu.batch_answers import angles_at, prefill
from asls_mlx.engine.cpu.numpy_forward import attend, blocks, embed, head, linear, project_qkv

STACK_POSITIONS = 2048  # answer positions through the blocks at once, at most (unless one answer is longer)
HEAD_ROWS = 256  # positions per LM-head block: 256 x 49k logits are 50 MB on SmolLM2


def answer_logps(model: nn.Module, rows: Sequence[tuple[Sequence[int], Sequence[int]]]) -> list[float]:
    """Per (prompt ids, answer ids) row: the sum of the answer tokens' log-probs after the prompt."""
    if any(len(p) == 0 or len(a) == 0 for p, a in rows):
        raise ValueError("every row needs a prompt and an answer of at least one token")
    prompts = [tuple(int(t) for t in p) for p, _ in rows]
    answers = [np.asarray(a, np.int64) for _, a in rows]
    prefilled = prefill(model, prompts)
    # the answer's first token is predicted by the prompt's last position
    out = [float(_token_logps(prefilled[p][1][None], a[:1])[0]) for p, a in zip(prompts, answers)]
    todo = [i for i, a in enumerate(answers) if len(a) > 1]
    for group in _groups(todo, [len(answers[i]) - 1 for i in todo]):
        suffixes = [answers[i][:-1] for i in group]
        hidden = _suffix_hidden(model, suffixes, [prefilled[prompts[i]][0] for i in group],
                                [len(prompts[i]) for i in group])
        ends = np.cumsum([len(s) for s in suffixes])
        logps = _token_logps_in_blocks(model, hidden, np.concatenate([answers[i][1:] for i in group]))
        for i, end, s in zip(group, ends, suffixes):
            out[i] += float(logps[end - len(s): end].sum())
    return out


def _groups(indices: list[int], lengths: list[int]) -> list[list[int]]:
    groups: list[list[int]] = []
    total = 0
    for i, n in zip(indices, lengths):
        if groups and total + n <= STACK_POSITIONS:
            groups[-1].append(i)
            total += n
        else:
            groups.append([i])
            total = n
    return groups


def _suffix_hidden(model: nn.Module, suffixes: list[np.ndarray], caches: list[list], offsets: list[int]) -> np.ndarray:
    """Final hidden states (sum of lengths, D) of each suffix following the ``offsets`` positions in its
    caches (read, not written: many suffixes share one prompt's caches)."""
    ends = np.cumsum([len(s) for s in suffixes])
    segments = [slice(end - len(s), end) for end, s in zip(ends, suffixes)]
    positions = np.concatenate([np.arange(o, o + len(s)) for o, s in zip(offsets, suffixes)])
    angles: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}

    def attention(i: int, attn: Any, h: np.ndarray) -> np.ndarray:
        q, k, v = project_qkv(attn, h, *angles_at(angles, attn.rope, positions))
        out = []
        for cache, offset, rows in zip(caches, offsets, segments):
            keys = np.concatenate([cache[i].keys[:, :offset], k[:, rows]], axis=1)
            values = np.concatenate([cache[i].values[:, :offset], v[:, rows]], axis=1)
            out.append(attend(attn, q[:, rows], keys, values, offset))
        return linear(attn.o_proj, np.concatenate(out))

    return blocks(model, embed(model, np.concatenate(suffixes)), attention)


def _token_logps_in_blocks(model: nn.Module, hidden: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """log p(target) at each position of ``hidden``, the LM head applied HEAD_ROWS positions at a time."""
    return np.concatenate([_token_logps(head(model, hidden[s: s + HEAD_ROWS]), targets[s: s + HEAD_ROWS])
                           for s in range(0, len(hidden), HEAD_ROWS)])


def _token_logps(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    top = logits.max(axis=-1, keepdims=True)
    lse = np.log(np.exp(logits - top).sum(axis=-1)) + top[:, 0]
    return logits[np.arange(len(targets)), targets] - lse


__all__ = ["answer_logps"]
