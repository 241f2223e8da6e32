"""Rows of one batch decoded with different LoRA weights (``Row.lora``).

The commit gate answers the same prompts with the new adapter, the old one and the base model. Decoding on a
CPU is memory-bound: a batch of 28 rows costs little more than one of 24, while a batch of 2 costs half of one
of 24. So the three go in one batch, each row with its own adapter weights: the frozen matrices are shared
and only the small low-rank product differs per row (``numpy_forward.linear``). Backends that cannot choose
per row decode each set of rows with its weights swapped in (``decode_by_lora``).

A row's ``lora`` is a dict of adapter weights named as ``adapters.safetensors`` names them
(``model.layers.14.self_attn.q_proj.lora_a``); ``{}`` is no adapter (the base model's answer); None is the
model's weights as they stand.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator, Mapping, Sequence

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_unflatten

Lora = Mapping[str, Any]


def lora_groups(rows: Sequence[Any]) -> dict[int, list[int]]:
    """Row indices per distinct ``row.lora`` (by identity; rows without one under the key of None)."""
    groups: dict[int, list[int]] = {}
    for i, row in enumerate(rows):
        groups.setdefault(id(row.lora), []).append(i)
    return groups


def mixed(rows: Sequence[Any]) -> bool:
    """Whether any row asks for other weights than the model's own."""
    return any(row.lora is not None for row in rows)


def check_names(lora: Lora | None, names: set[str]) -> None:
    """ValueError when ``lora`` has weights that are not among this model's adapter weights ``names``."""
    unknown = set(lora or ()) - names
    if unknown:
        raise ValueError(f"not adapter weights of this model: {sorted(unknown)[:3]}")


@contextmanager
def swapped_in(model: nn.Module, lora: Lora | None) -> Iterator[None]:
    """The model decodes with ``lora`` (None: as it stands; {}: every B zero) until the block ends."""
    if lora is None:
        yield
        return
    current = {k: v for k, v in tree_flatten(model.parameters()) if k.endswith((".lora_a", ".lora_b"))}
    check_names(lora, set(current))
    chosen = {k: lora.get(k, v if k.endswith(".lora_a") else mx.zeros_like(v)) for k, v in current.items()}
    model.update(tree_unflatten(list(chosen.items())))
    try:
        yield
    finally:
        model.update(tree_unflatten(list(current.items())))


def decode_by_lora(model: nn.Module, rows: Sequence[Any], decode: Callable[[list], list[list[int]]]) -> list[list[int]]:
    """``decode(rows)`` for rows of one weight set each time, that set swapped in: for backends that decode a
    batch with one set of weights."""
    if not mixed(rows):
        return decode(list(rows))
    out: list[list[int]] = [[] for _ in rows]
    for indices in lora_groups(rows).values():
        with swapped_in(model, rows[indices[0]].lora):
            for i, answer in zip(indices, decode([rows[i] for i in indices])):
                out[i] = answer
    return out


__all__ = ["Lora", "check_names", "decode_by_lora", "lora_groups", "mixed", "swapped_in"]
