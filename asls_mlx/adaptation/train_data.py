"""What a session trains on: pairs -> encoded examples -> one ``TrainBatch`` per step.

``training_examples`` mixes in replayed pairs, encodes them and keeps those the loss can use.
``prepare`` does, once per session and before the first step, what every step then reuses: the base
model's reference log-probs (DPO), its top-k next-token distribution on general text (the retention
target) and the frozen blocks' outputs (``PrefixCache``). ``TrainingData.batches(start_step)`` yields
the batches of global steps ``start_step, start_step + 1, ...``, each built when its step is about to
run (so a cancelled or out-of-time session does not pay for the batches it never trains on).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import mlx.core as mx
import numpy as np

from asls_mlx.adaptation.base_cache import BaseCache, array_key, base_fingerprint, cached
from asls_mlx.adaptation.batching import (
    EncodedPair, TrainBatch, batch_schedule, collate, encode_pairs, free_openings, no_retention, text_batch,
    with_replay,
)
from asls_mlx.adaptation.config import TrainingArgs
from asls_mlx.adaptation.logprobs import base_topk, pair_batch, reference_logps
from asls_mlx.adaptation.prefix_cache import PrefixCache
from asls_mlx.adaptation.sft_target import with_sft_rows
from asls_mlx.adaptation.losses import PAIRED_LOSSES, REFERENCE_LOSSES


def training_examples(tokenizer, pairs, replay_pairs, args: TrainingArgs) -> list[EncodedPair]:
    """The session's pairs plus replayed ones (``args.replay_fraction``), encoded, that ``args.loss`` can
    train on: pair losses need a rejected answer; SFT takes chosen answers and liked unpaired ones."""
    pool = with_replay(pairs, replay_pairs, args.replay_fraction, args.seed)
    encoded = encode_pairs(tokenizer, pool, args.max_length, args.pair_system, shared_head=args.sft_on_change)
    if args.loss in PAIRED_LOSSES:
        return [p for p in encoded if p.rejected is not None]
    return [p for p in encoded if p.rejected is not None or p.label > 0]


@dataclass
class TrainingData:
    """A session's examples and what was computed once for them; ``batches`` feeds ``trainer.train``."""

    examples: list[EncodedPair]
    args: TrainingArgs
    prefix: PrefixCache
    reference: dict = field(default_factory=dict)  # {pair key: (chosen, rejected or None)} base log-probs
    retention: tuple = field(default_factory=no_retention)  # (inputs, mask, top, index) of the general texts

    @property
    def batch_size(self) -> int:
        return min(self.args.batch_size, len(self.examples))

    def steps(self) -> int:
        """Steps this session may take: ``max_steps``, and at most ``max_epochs`` passes over the examples."""
        steps = self.args.max_steps
        if self.args.max_epochs is not None:
            steps = min(steps, max(1, math.ceil(self.args.max_epochs * len(self.examples) / self.batch_size)))
        return steps

    def batches(self, start_step: int = 0) -> Batches:
        """The batches of global steps ``start_step ..``: the order is a function of the global step, so a
        resumed run (``start_step`` from the optimizer state) sees what an uninterrupted one would."""
        lengths = [p.length for p in self.examples]
        schedule = batch_schedule(lengths, self.batch_size, self.args.seed, start_step, self.steps())
        return Batches(self, schedule, start_step)

    def batch(self, indices: list[int], step: int) -> TrainBatch:
        """The ``TrainBatch`` of the examples at ``indices`` for global step ``step``."""
        examples = [self.examples[j] for j in indices]
        loss = self.args.loss
        if loss in PAIRED_LOSSES:
            b, inputs = pair_batch(self.prefix.model, [(p.prompt, p.chosen, p.rejected) for p in examples], self.prefix)
            if any(p.sft_tokens for p in examples):  # the SFT term imitates a line the user added (sft_target)
                b = with_sft_rows(b, [p.sft_tokens for p in examples])
        else:
            rows = [(p.prompt, p.chosen) for p in examples]
            b = collate(rows)
            inputs = self.prefix.inputs(rows, b)
        zero = [0.0] * len(examples)
        with_reference = loss in REFERENCE_LOSSES
        ref_c = [self.reference[p.key][0] for p in examples] if with_reference else zero
        ref_r = [self.reference[p.key][1] or 0.0 for p in examples] if with_reference else zero
        r_inputs, r_mask, r_top, r_index = self._retention_rows(step)
        return TrainBatch(
            inputs, b.positions, b.targets, b.select,
            weights=mx.array([p.weight for p in examples], dtype=mx.float32),
            reference_chosen=mx.array(ref_c, dtype=mx.float32),
            reference_rejected=mx.array(ref_r, dtype=mx.float32),
            retention_inputs=r_inputs, retention_mask=r_mask, retention_top=r_top, retention_index=r_index,
            n_tokens=b.n_tokens,
        )

    def _retention_rows(self, step: int) -> tuple:
        """The general-text rows of global step ``step``: ``retention_texts_per_step`` of them, in turn."""
        inputs, mask, top, index = self.retention
        n = min(self.args.retention_texts_per_step, inputs.shape[0])
        if not n:
            return self.retention
        rows = mx.array([(step * n + j) % inputs.shape[0] for j in range(n)])
        return inputs[rows], mask[rows], top[rows], index[rows]


class Batches:
    """The batches of one session's steps, built one at a time as they are iterated; ``len`` is their number."""

    def __init__(self, data: TrainingData, schedule: list[list[int]], start_step: int):
        self.data, self.schedule, self.start_step = data, schedule, start_step

    def __len__(self) -> int:
        return len(self.schedule)

    def __iter__(self):
        for i, indices in enumerate(self.schedule):
            yield self.data.batch(indices, self.start_step + i)


def prepare(
    model,
    tokenizer,
    examples: list[EncodedPair],
    args: TrainingArgs,
    general_texts=(),
    reference_cache: dict | None = None,
    prefix: PrefixCache | None = None,
    base_cache: BaseCache | None = None,
) -> TrainingData:
    """Compute what the steps reuse: reference log-probs (for ``REFERENCE_LOSSES``; pairs already in a copy
    of ``reference_cache`` are not recomputed) and the retention targets (from ``base_cache`` when an
    earlier process computed them). ``prefix`` shares the frozen blocks' outputs with the caller's
    held-out checks."""
    reference = dict(reference_cache or {})
    prefix = prefix if prefix is not None else PrefixCache(model)
    if args.loss in REFERENCE_LOSSES:
        reference = reference_logps(model, examples, reference, prefix=prefix)
    tokens, mask = text_batch(tokenizer, general_texts, args.retention_length)
    mask = free_openings(tokenizer, tokens, mask, args.anchor_free_opening)
    retention = no_retention()
    if tokens.shape[0] and args.retention_weight > 0:
        k = min(args.retention_topk, model(tokens[:1, :2]).shape[-1])
        inputs = prefix.text_inputs(tokens, base_cache)
        retention = (inputs, mask, *_retention_targets(model, tokens, k, inputs, base_cache))
    return TrainingData(examples, args, prefix, reference, retention)


def _retention_targets(model, tokens: mx.array, k: int, inputs: mx.array, base_cache: BaseCache | None) -> tuple:
    """``base_topk`` of the general texts, from ``base_cache`` when an earlier process computed it."""
    def compute() -> dict:
        top, index = base_topk(model, tokens, k, inputs=inputs)
        return {"top": np.asarray(top), "index": np.asarray(index)}

    stored = cached(base_cache, "retention", array_key(tokens, k, base_fingerprint(model)), ("top", "index"), compute)
    return mx.array(stored["top"]), mx.array(stored["index"])


__all__ = ["Batches", "TrainingData", "prepare", "training_examples"]
