"""The incremental trainer: a few compiled LoRA steps on new + replayed pairs, as many as the data asks for.

``train(model, optimizer, batches, args, loss=..., callback=...)`` has the shape of mlx-lm's
``tuner.trainer.train``: the caller builds the optimizer (``build_optimizer`` resumes a stored AdamW
state) and the batches (``train_data``), and the loss is one of ``losses.LOSSES``. The whole step
(loss, gradients, clipping, AdamW) is compiled once per batch shape. ``train_on_pairs`` is what a
session calls: pairs in, a ``TrainResult`` out. The steps are decided by the data (``max_steps``, the
batches), never by how fast they run: a wall-clock limit (``time_limit_s``, preparation included) is a safety
net whose stop the result reports (``STOP_TIME_LIMIT``). The defaults and why: ``config.LearningConfig``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Iterable

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
from mlx.utils import tree_flatten, tree_unflatten

from asls_mlx.adaptation.base_cache import BaseCache
from asls_mlx.adaptation.batching import TrainBatch, no_retention
from asls_mlx.adaptation.config import LOSS_NAMES, STOP_TIME_LIMIT, LearningConfig, TrainingArgs, adapt_schedule
from asls_mlx.adaptation.logprobs import shares_prompt
from asls_mlx.adaptation.prefix_cache import PrefixCache
from asls_mlx.adaptation.lora import has_lora, lora_parameters, set_lora_weights
from asls_mlx.adaptation.losses import LOSSES, LossFn
from asls_mlx.adaptation.train_data import prepare, training_examples
from asls_mlx.errors import ASLSError


@dataclass
class Progress:
    step: int  # steps done in this call
    total: int  # steps planned in this call
    loss: float
    elapsed: float  # seconds since training started (preparation included)


@dataclass
class TrainResult:
    steps: int
    losses: list[float]
    tokens: int  # tokens processed (rows x padded length)
    seconds: float
    stopped_reason: str  # max_steps (or the batches ran out) | time_limit | cancelled | diverged | no_data
    optimizer_state: dict[str, mx.array]
    diverged: bool = False
    metrics: dict[str, float] = field(default_factory=dict)  # last step's loss parts
    reference_cache: dict = field(default_factory=dict)
    prepare_s: float = 0.0  # encode + reference log-probs + retention targets, before the first step
    planned: int = 0  # the steps the data called for (``steps`` < ``planned``: something stopped them early)


def build_optimizer(model, args: TrainingArgs, state: dict[str, mx.array] | None = None) -> optim.AdamW:
    """AdamW over the model's trainable (LoRA) parameters, continuing ``state`` when given
    (``TrainResult.optimizer_state``) at ``args.lr``: its global step, and with ``args.resume_moments``
    its moments too (an exact resume)."""
    optimizer = optim.AdamW(learning_rate=args.lr, weight_decay=args.weight_decay)
    optimizer.init(model.trainable_parameters())
    if state and not args.resume_moments and "step" in state:
        optimizer.state["step"] = state["step"]
    elif state:
        expected = set(dict(tree_flatten(optimizer.state)))
        if set(state) != expected:
            raise ASLSError(
                "The saved optimizer state does not match this adapter "
                f"({len(set(state) ^ expected)} mismatched entries); start without it."
            )
        optimizer.state = tree_unflatten(list(state.items()))
        optimizer.learning_rate = args.lr  # the saved state carries the old lr; this session's wins
    return optimizer


def optimizer_state_dict(optimizer) -> dict[str, mx.array]:
    """AdamW state as flat ``{name: array}`` (safetensors-ready); ``build_optimizer`` accepts it back."""
    return dict(tree_flatten(optimizer.state))


def global_step(optimizer) -> int:
    """Steps the optimizer has taken over all sessions: where the batch order and retention rows resume."""
    return int(optimizer.state["step"].item())


def make_loss(args: TrainingArgs) -> LossFn:
    """``losses.LOSSES[args.loss]`` with ``args``' weights: ``fn(model, batch) -> (loss, metrics)``."""
    return partial(LOSSES[args.loss], args=args)


def make_step(model, optimizer, loss: LossFn, args: TrainingArgs):
    """One optimizer step ``step(batch) -> (loss, grad_norm, metrics)`` and its state list.

    Compiled with the model, optimizer and random state as inputs/outputs (as in mlx-lm), so it is
    traced once per batch shape; ``mx.eval(state)`` after each call.
    """
    shares_prompt(model)  # decide the logits path and the pair layout before tracing
    loss_and_grad = nn.value_and_grad(model, lambda m, *arrays: loss(m, TrainBatch(*arrays)))

    def step_fn(*arrays):
        (value, metrics), grads = loss_and_grad(model, *arrays)
        grads, norm = optim.clip_grad_norm(grads, args.grad_clip)
        optimizer.update(model, grads)
        return value, norm, metrics

    state = [model.state, optimizer.state, mx.random.state]
    compiled = partial(mx.compile, inputs=state, outputs=state)(step_fn) if args.compile else step_fn
    return (lambda batch: compiled(*batch.arrays())), state


def _stop_reason(i: int, started: float, args: TrainingArgs, should_stop) -> str | None:
    """Why step ``i`` (0-based) must not start, or None.

    Only a cancel or the wall-clock safety net stop the data's steps early. The net predicts nothing
    from step durations (a busy machine's slow steps must not cut a run that would end well within it):
    the first step always runs, and no later one starts ``time_limit_s`` after ``started``.
    """
    if should_stop is not None and should_stop():
        return "cancelled"
    if i > 0 and time.perf_counter() - started >= args.time_limit_s:
        return STOP_TIME_LIMIT
    return None


# No objective here reaches this on a sane model (DPO ~0.7, a token's NLL < 30, the KL term small): a loss above
# it has exploded already at the first step, where the relative rule (factor x the first loss) cannot see it.
MAX_LOSS = 1e4


def _diverged(loss: float, grad_norm: float, first_loss: float, factor: float) -> bool:
    return (not (math.isfinite(loss) and math.isfinite(grad_norm)) or loss > MAX_LOSS
            or loss > factor * abs(first_loss) + 1.0)


def train(
    model,
    optimizer,
    batches: Iterable[TrainBatch],
    args: TrainingArgs = TrainingArgs(),
    loss: LossFn | None = None,
    callback: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    started: float | None = None,
    pause: Callable[[], float] | None = None,
) -> TrainResult:
    """Train the attached LoRA adapter in place, one compiled step per batch, until the batches end or
    ``args.max_steps``, or the wall-clock safety net, ``should_stop()`` or divergence stops it.

    ``loss``: ``fn(model, batch) -> (loss, metrics)``, by default ``make_loss(args)``. ``batches`` is
    best sized (``len`` gives ``Progress.total``, and the trainer stops after the last one without
    another stop check). ``started``: the ``time.perf_counter()`` the safety net and ``Progress.elapsed``
    count from (default: now), so that preparing the batches counts too; ``pause()`` (before each step) returns
    the seconds it waited, not counted.
    On NaN/inf or an exploding loss the adapter is restored to its weights at the call, the returned
    optimizer state is the one at the call, and ``diverged=True``.
    """
    started = time.perf_counter() if started is None else started
    if not has_lora(model):
        raise ASLSError("Attach a LoRA adapter (attach_lora) before training.")
    total = min(len(batches), args.max_steps) if hasattr(batches, "__len__") else args.max_steps
    if total <= 0:
        return TrainResult(0, [], 0, time.perf_counter() - started, "no_data", optimizer_state_dict(optimizer))
    initial_weights, initial_state = lora_parameters(model), optimizer_state_dict(optimizer)
    step, state = make_step(model, optimizer, loss if loss is not None else make_loss(args), args)
    model.train()
    losses, metrics, tokens, reason, diverged = [], {}, 0, "max_steps", False
    it = iter(batches)
    for i in range(total):
        started += pause() if pause is not None else 0.0  # waiting for the chat is not training time
        stop = _stop_reason(i, started, args, should_stop)
        if stop:
            reason = stop
            break
        batch = next(it, None)
        if batch is None:
            reason = reason if i else "no_data"
            break
        value, norm, m = step(batch)
        mx.eval(state, value, norm, m)
        loss_v, norm_v = value.item(), norm.item()
        tokens += batch.n_tokens
        losses.append(loss_v)
        metrics = {k: float(v.item()) for k, v in m.items()}
        if _diverged(loss_v, norm_v, losses[0], args.divergence_factor):
            diverged, reason = True, "diverged"
            break
        if callback is not None:
            callback(Progress(i + 1, total, loss_v, time.perf_counter() - started))
    model.eval()
    if diverged:
        set_lora_weights(model, initial_weights)
    final_state = initial_state if diverged else optimizer_state_dict(optimizer)
    return TrainResult(len(losses), losses, tokens, time.perf_counter() - started, reason, final_state, diverged, metrics,
                       planned=total)


def train_on_pairs(
    model,
    tokenizer,
    pairs,
    args: TrainingArgs = TrainingArgs(),
    *,
    replay_pairs=(),
    general_texts=(),
    optimizer_state: dict | None = None,
    callback: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    reference_cache: dict | None = None,
    prefix: PrefixCache | None = None,
    base_cache: BaseCache | None = None,
    pause: Callable[[], float] | None = None,
) -> TrainResult:
    """One session's training: ``training_examples`` -> ``prepare`` -> ``build_optimizer`` -> ``train``.

    ``optimizer_state`` (from a previous ``TrainResult``) continues AdamW (``build_optimizer``): the global
    step, which also fixes the batch order, and with ``args.resume_moments`` the moments. ``reference_cache``
    ({pair key: (chosen, rejected)} base log-probs) avoids recomputing the DPO reference; the result holds an
    updated copy. ``prefix``
    shares the frozen blocks' outputs with the caller's held-out checks; ``base_cache`` keeps the base
    model's retention targets between processes. The wall-clock safety net counts from this call; ``pause``:
    see ``train``.
    """
    t0 = time.perf_counter()
    if not has_lora(model):
        raise ASLSError("Attach a LoRA adapter (attach_lora) before training.")
    examples = training_examples(tokenizer, pairs, replay_pairs, args)
    if not examples or args.max_steps <= 0:
        return TrainResult(0, [], 0, time.perf_counter() - t0, "no_data", dict(optimizer_state or {}),
                           reference_cache=dict(reference_cache or {}))
    data = prepare(model, tokenizer, examples, args, general_texts, reference_cache, prefix, base_cache)
    optimizer = build_optimizer(model, args, optimizer_state)
    prepare_s = time.perf_counter() - t0
    batches = data.batches(global_step(optimizer))
    result = train(model, optimizer, batches, args, loss=make_loss(args), callback=callback, should_stop=should_stop, started=t0,
                   pause=pause)
    result.reference_cache, result.prepare_s = data.reference, prepare_s
    return result


__all__ = [
    "LOSSES", "LOSS_NAMES", "LearningConfig", "Progress", "STOP_TIME_LIMIT", "TrainResult", "TrainingArgs", "adapt_schedule",
    "build_optimizer", "global_step", "make_loss", "make_step", "no_retention", "optimizer_state_dict", "train",
    "train_on_pairs",
]
