"""The incremental trainer: a few compiled LoRA steps on new + replayed pairs, under a time budget.

``train(model, tokenizer, pairs, args)`` is a plain function like mlx-lm's; losses are the pure
functions of ``losses.py``. Over-optimisation is the main risk (DESIGN.md: 10 DPO steps took a 135M
model from 0% to 92% compliance, 20 steps made it refuse), so the defaults are conservative: few
steps, an SFT term on the chosen answers, and a KL term to the base model on general text.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Callable

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
from mlx.utils import tree_flatten, tree_unflatten

from asls_mlx.adaptation import losses
from asls_mlx.adaptation.base_cache import BaseCache, array_key, base_fingerprint, cached
from asls_mlx.adaptation.batching import EncodedPair, batch_schedule, collate, encode_pairs, pair_key, text_batch
from asls_mlx.adaptation.logprobs import (
    PrefixCache, answer_logps, base_topk, full_logits, pair_batch, reference_logps, shares_prompt,
)
from asls_mlx.adaptation.lora import has_lora, lora_parameters, set_lora_weights
from asls_mlx.errors import ASLSError

LOSSES = ("dpo", "simpo", "orpo", "sft", "kto")
MAX_STEPS_PER_SESSION = 12  # DESIGN.md: 10 steps helped, 20 made the model refuse


@dataclass
class TrainingArgs:
    loss: str = field(default="dpo", metadata={"help": "dpo | simpo | orpo | sft | kto (unpaired thumbs)."})
    beta: float = field(default=0.1, metadata={"help": "DPO/KTO/ORPO beta; higher: less deviation from the reference."})
    simpo_beta: float = field(default=2.0, metadata={"help": "SimPO reward scale on length-normalised log-probs."})
    simpo_gamma: float = field(default=0.5, metadata={"help": "SimPO target reward margin."})
    sft_weight: float = field(default=0.2, metadata={"help": "Weight of the NLL on chosen answers: keeps answers fluent."})
    retention_weight: float = field(default=0.5, metadata={"help": "Weight of KL(base || policy) on general text: no forgetting."})
    retention_texts_per_step: int = field(default=2, metadata={"help": "General texts in each step's retention term."})
    retention_length: int = field(default=64, metadata={"help": "Tokens of each general text used for retention."})
    retention_topk: int = field(default=32, metadata={"help": "Base next-token probabilities kept per position."})
    lr: float = field(default=2e-4, metadata={"help": "AdamW learning rate (measured good: 2e-4 at rank 8, scale 20)."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay on the LoRA weights."})
    max_steps: int = field(default=10, metadata={"help": "Step cap for this session (over-training causes refusals)."})
    max_epochs: float | None = field(default=None, metadata={"help": "Also stop after this many passes over the examples (None: no cap)."})
    time_budget_s: float = field(default=30.0, metadata={"help": "Wall-clock budget; no step starts that would overrun it."})
    batch_size: int = field(default=4, metadata={"help": "Pairs per step."})
    replay_fraction: float = field(default=0.3, metadata={"help": "Share of the training pool drawn from older pairs."})
    max_length: int = field(default=256, metadata={"help": "Max prompt+answer tokens (prompt tail, answer head kept)."})
    seed: int = field(default=0, metadata={"help": "Seed for replay sampling and batch order."})
    grad_clip: float = field(default=1.0, metadata={"help": "Clip the global gradient norm to this."})
    divergence_factor: float = field(default=4.0, metadata={"help": "Loss above factor x first loss (+1) counts as diverged."})
    compile: bool = field(default=True, metadata={"help": "mx.compile the step (same numbers, faster)."})


@dataclass
class Progress:
    step: int  # steps done in this call
    total: int  # steps planned in this call
    loss: float
    elapsed: float  # seconds since train() started


@dataclass
class TrainResult:
    steps: int
    losses: list[float]
    tokens: int  # tokens processed (rows x padded length)
    seconds: float
    stopped_reason: str  # max_steps | time_budget | cancelled | diverged | no_data
    optimizer_state: dict[str, mx.array]
    diverged: bool = False
    metrics: dict[str, float] = field(default_factory=dict)  # last step's loss parts
    reference_cache: dict = field(default_factory=dict)
    prepare_s: float = 0.0  # encode + reference log-probs + retention targets, before the first step


def adapt_schedule(n_new_pairs: int, drift: float = 0.0, base_lr: float = 2e-4, max_steps: int = 10) -> tuple[int, float, float]:
    """How hard to train this session: ``(steps, lr, replay_fraction)``.

    1) signal = more new pairs (saturating at 32) or more profile drift (0..1) -> in [0, 1];
    2) steps grow 3 -> ``max_steps`` with the signal (0 without new pairs);
    3) lr grows 0.5x -> 1x ``base_lr`` (never above it);
    4) replay falls 0.5 -> 0.2 with drift: old pairs matter less when the user's taste moved.
    """
    if n_new_pairs <= 0:
        return 0, 0.0, 0.0
    drift = min(max(float(drift), 0.0), 1.0)
    signal = max(min(n_new_pairs / 32.0, 1.0), drift)
    steps = int(round(3 + (max_steps - 3) * signal))
    steps = max(1, min(steps, max_steps, MAX_STEPS_PER_SESSION))
    lr = base_lr * (0.5 + 0.5 * signal)
    replay = 0.5 - 0.3 * drift
    return steps, lr, replay


def _pool(train_pairs, replay_pairs, fraction: float, seed: int) -> list:
    """New pairs plus ``fraction`` of the pool drawn (seeded, without replacement) from older ones."""
    pool = list(train_pairs)
    replay = list(replay_pairs)
    if replay and 0 < fraction < 1:
        want = min(len(replay), int(round(len(pool) * fraction / (1 - fraction))) or 1)
        rng = np.random.default_rng([seed, 7])
        pool += [replay[i] for i in sorted(rng.choice(len(replay), size=want, replace=False))]
    return pool


def _examples(encoded: list[EncodedPair], loss: str) -> list[EncodedPair]:
    if loss in ("dpo", "simpo", "orpo"):
        return [p for p in encoded if p.rejected is not None]
    if loss == "sft":
        return [p for p in encoded if p.rejected is not None or p.label > 0]
    # kto: every answer on its own, chosen +1, rejected -1
    out = []
    for p in encoded:
        if p.rejected is None:
            out.append(p)
        else:
            out.append(EncodedPair(p.prompt, p.chosen, None, p.weight, 1, pair_key(p.prompt, p.chosen, None)))
            out.append(EncodedPair(p.prompt, p.rejected, None, p.weight, -1, pair_key(p.prompt, p.rejected, None)))
    return out


def make_loss(args: TrainingArgs, n: int):
    """The training loss for batches of ``n`` examples: preference + SFT + retention terms."""

    def loss_fn(model, inputs, positions, targets, select, weights, ref_c, ref_r, labels, r_inputs, r_mask, r_top, r_index):
        logps = answer_logps(model, inputs, positions, targets, select)
        counts = select.sum(1)
        metrics = {}
        if args.loss in ("dpo", "simpo", "orpo"):
            pc, pr, nc, nr = logps[:n], logps[n:], counts[:n], counts[n:]
            if args.loss == "dpo":
                pref, metrics = losses.dpo_loss(pc, pr, ref_c, ref_r, args.beta, weights)
            elif args.loss == "simpo":
                pref, metrics = losses.simpo_loss(pc / nc, pr / nr, args.simpo_beta, args.simpo_gamma, weights)
            else:
                pref, metrics = losses.orpo_loss(pc / nc, pr / nr, args.beta, weights)
            sft, _ = losses.sft_loss(pc, nc, weights)
            total = pref + args.sft_weight * sft
        elif args.loss == "kto":
            pref, metrics = losses.kto_loss(logps, ref_c, labels, args.beta, weights=weights)
            sft, _ = losses.sft_loss(logps, counts, weights * (labels > 0))
            total = pref + args.sft_weight * sft
        else:
            sft, _ = losses.sft_loss(logps, counts, weights)
            total = sft
        metrics = dict(metrics, sft=sft)
        if r_inputs.shape[0] > 0 and args.retention_weight > 0:
            kl, _ = losses.retention_kl(full_logits(model, r_inputs), r_top, r_mask, r_index)
            total = total + args.retention_weight * kl
            metrics["retention_kl"] = kl
        return total, metrics

    return loss_fn


def make_step(model, optimizer, args: TrainingArgs, n: int):
    """One optimizer step ``step(*batch_arrays) -> (loss, grad_norm, metrics)`` and its state list.

    Compiled with the model, optimizer and random state as inputs/outputs (as in mlx-lm), so it is
    traced once per batch shape; ``mx.eval(state)`` after each call.
    """
    shares_prompt(model)  # decide the logits path and the pair layout before tracing
    loss_and_grad = nn.value_and_grad(model, make_loss(args, n))

    def step_fn(*arrays):
        (loss, metrics), grads = loss_and_grad(model, *arrays)
        grads, norm = optim.clip_grad_norm(grads, args.grad_clip)
        optimizer.update(model, grads)
        return loss, norm, metrics

    state = [model.state, optimizer.state, mx.random.state]
    step = partial(mx.compile, inputs=state, outputs=state)(step_fn) if args.compile else step_fn
    return step, state


def no_retention() -> tuple:
    """Empty retention arrays for a step without general text."""
    return mx.zeros((0, 1), mx.int32), mx.zeros((0, 1), mx.float32), mx.zeros((0, 1, 1)), mx.zeros((0, 1, 1), mx.int32)


def _batch_arrays(examples: list[EncodedPair], loss: str, ref: dict, prefix: PrefixCache) -> tuple:
    if loss in ("dpo", "simpo", "orpo"):
        b, inputs = pair_batch(prefix.model, [(p.prompt, p.chosen, p.rejected) for p in examples], prefix)
    else:
        rows = [(p.prompt, p.chosen) for p in examples]
        b = collate(rows)
        inputs = prefix.inputs(rows, b)
    weights = mx.array([p.weight for p in examples], dtype=mx.float32)
    labels = mx.array([p.label for p in examples], dtype=mx.float32)
    zero = [0.0] * len(examples)
    ref_c = mx.array([ref[p.key][0] for p in examples] if ref else zero, dtype=mx.float32)
    ref_r = mx.array([ref[p.key][1] or 0.0 for p in examples] if ref and loss == "dpo" else zero, dtype=mx.float32)
    return (inputs, *b.arrays()[1:], weights, ref_c, ref_r, labels), b.n_tokens


def _retention_targets(model, tokens: mx.array, k: int, inputs: mx.array, base_cache: BaseCache | None) -> tuple:
    """``base_topk`` of the general texts, from ``base_cache`` when an earlier process computed it."""
    def compute() -> dict:
        top, index = base_topk(model, tokens, k, inputs=inputs)
        return {"top": np.asarray(top), "index": np.asarray(index)}

    stored = cached(base_cache, "retention", array_key(tokens, k, base_fingerprint(model)), ("top", "index"), compute)
    return mx.array(stored["top"]), mx.array(stored["index"])


def train(
    model,
    tokenizer,
    train_pairs,
    args: TrainingArgs = TrainingArgs(),
    replay_pairs=(),
    general_texts=(),
    optimizer_state: dict | None = None,
    callback: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    reference_cache: dict | None = None,
    prefix: PrefixCache | None = None,
    base_cache: BaseCache | None = None,
) -> TrainResult:
    """Train the attached LoRA adapter in place for at most ``args.max_steps`` / ``args.time_budget_s``.

    ``optimizer_state`` (from a previous ``TrainResult``) resumes AdamW exactly, including the global
    step, which also fixes the batch order. ``reference_cache`` ({pair key: (chosen, rejected)}
    base log-probs) avoids recomputing the DPO/KTO reference; the updated cache is returned.
    ``prefix`` shares the frozen blocks' outputs with the caller's held-out checks; ``base_cache`` keeps
    the base model's retention targets between processes.
    On NaN/inf or an exploding loss the adapter and optimizer are restored to their state at the
    call and ``diverged=True`` is returned.
    """
    t0 = time.perf_counter()
    if args.loss not in LOSSES:
        raise ASLSError(f"Unknown loss {args.loss!r}; choose one of {', '.join(LOSSES)}.")
    if not has_lora(model):
        raise ASLSError("Attach a LoRA adapter (attach_lora) before training.")
    ref = dict(reference_cache or {})
    empty_state = optimizer_state or {}

    pool = _pool(train_pairs, replay_pairs, args.replay_fraction, args.seed)
    examples = _examples(encode_pairs(tokenizer, pool, args.max_length), args.loss)
    if not examples or args.max_steps <= 0:
        return TrainResult(0, [], 0, time.perf_counter() - t0, "no_data", dict(empty_state), reference_cache=ref)

    prefix = prefix if prefix is not None else PrefixCache(model)
    if args.loss in ("dpo", "kto"):
        ref = reference_logps(model, examples, ref, prefix=prefix)
    n = min(args.batch_size, len(examples))

    # Retention target: the base model's top-k next-token distribution on general text, computed once.
    r_tokens, r_mask = text_batch(tokenizer, general_texts, args.retention_length)
    if r_tokens.shape[0] and args.retention_weight > 0:
        k = min(args.retention_topk, model(r_tokens[:1, :2]).shape[-1])
        r_inputs = prefix.text_inputs(r_tokens)
        r_top, r_index = _retention_targets(model, r_tokens, k, r_inputs, base_cache)
    else:
        r_inputs, r_mask, r_top, r_index = no_retention()
    n_ret = min(args.retention_texts_per_step, r_inputs.shape[0])

    optimizer = optim.AdamW(learning_rate=args.lr, weight_decay=args.weight_decay)
    optimizer.init(model.trainable_parameters())
    if optimizer_state:
        expected = set(dict(tree_flatten(optimizer.state)))
        if set(optimizer_state) != expected:
            raise ASLSError(
                "The saved optimizer state does not match this adapter "
                f"({len(set(optimizer_state) ^ expected)} mismatched entries); start without it."
            )
        optimizer.state = tree_unflatten(list(optimizer_state.items()))
        optimizer.learning_rate = args.lr  # the saved state carries the old lr; this session's wins
    start_step = int(optimizer.state["step"].item())
    initial_weights = lora_parameters(model)
    initial_state = optimizer_state_dict(optimizer)

    prepare_s = time.perf_counter() - t0
    step, state = make_step(model, optimizer, args, n)
    # Bucket by length, except for KTO: there length would sort liked (short) and disliked answers
    # into separate batches, and its reference point z0 is a per-batch estimate.
    lengths = [p.length if args.loss != "kto" else 0 for p in examples]
    steps = args.max_steps
    if args.max_epochs is not None:
        steps = min(steps, max(1, math.ceil(args.max_epochs * len(examples) / n)))
    schedule = batch_schedule(lengths, n, args.seed, start_step, steps)
    model.train()
    losses_seen, metrics, tokens, reason, diverged = [], {}, 0, "max_steps", False
    last_step_s = 0.0
    for i, idx in enumerate(schedule):
        elapsed = time.perf_counter() - t0
        if should_stop is not None and should_stop():
            reason = "cancelled"
            break
        # The first step always runs (a slow or busy machine must still learn something); after it,
        # predict from the last step, but not from the first (it includes tracing/compiling).
        if i > 0 and (elapsed >= args.time_budget_s or (i > 1 and elapsed + last_step_s > args.time_budget_s)):
            reason = "time_budget"
            break
        ts = time.perf_counter()
        arrays, n_tok = _batch_arrays([examples[j] for j in idx], args.loss, ref, prefix)
        if n_ret:
            rows = [(start_step + i) * n_ret + j for j in range(n_ret)]
            rows = mx.array([r % r_inputs.shape[0] for r in rows])
            arrays = (*arrays, r_inputs[rows], r_mask[rows], r_top[rows], r_index[rows])
        else:
            arrays = (*arrays, r_inputs, r_mask, r_top, r_index)
        loss, norm, m = step(*arrays)
        mx.eval(state, loss, norm, m)
        loss_v, norm_v = loss.item(), norm.item()
        last_step_s = time.perf_counter() - ts
        tokens += n_tok
        losses_seen.append(loss_v)
        metrics = {k: float(v.item()) for k, v in m.items()}
        if not (math.isfinite(loss_v) and math.isfinite(norm_v)) or loss_v > args.divergence_factor * abs(losses_seen[0]) + 1.0:
            diverged, reason = True, "diverged"
            break
        if callback is not None:
            callback(Progress(i + 1, len(schedule), loss_v, time.perf_counter() - t0))
    model.eval()

    if diverged:
        set_lora_weights(model, initial_weights)
        final_state = initial_state
    else:
        final_state = optimizer_state_dict(optimizer)
    return TrainResult(
        steps=len(losses_seen),
        losses=losses_seen,
        tokens=tokens,
        seconds=time.perf_counter() - t0,
        stopped_reason=reason,
        optimizer_state=final_state,
        diverged=diverged,
        metrics=metrics,
        reference_cache=ref,
        prepare_s=prepare_s,
    )


def optimizer_state_dict(optimizer) -> dict[str, mx.array]:
    """AdamW state as flat ``{name: array}`` (safetensors-ready); ``train`` accepts it back."""
    return dict(tree_flatten(optimizer.state))
