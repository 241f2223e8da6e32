"""Preference and regularisation losses: pure functions of log-prob arrays, and the training
objectives built from them.

Vocabulary follows TRL: ``policy_chosen_logps`` is log pi(chosen | prompt) summed over the answer
tokens, ``reference_*`` the same under the base model (adapter off). ``weights`` are per-pair
confidence weights (default 1); every loss is the weighted mean  sum_i w_i l_i / sum_i w_i.
Each function returns ``(loss, metrics)`` where metrics are scalar arrays (not yet evaluated).

``LOSSES`` maps each training loss name to its objective ``fn(model, batch, args) -> (loss, metrics)``
over a ``TrainBatch``: the preference term, plus ``args.sft_weight`` x the NLL of the chosen answers
(keeps them fluent), plus ``args.retention_weight`` x the KL to the base model on general text
(keeps the model's general ability). ``args`` defaults to ``TrainingArgs()``, so ``fn(model, batch)``
is a complete loss; ``trainer.make_loss`` binds a session's args.
"""

from __future__ import annotations

from typing import Callable

import mlx.core as mx
import mlx.nn as nn

from asls_mlx.adaptation.batching import TrainBatch
from asls_mlx.adaptation.config import TrainingArgs
from asls_mlx.adaptation.logprobs import answer_logps, full_logits
from asls_mlx.engine.backend_choice import select_backend


def _weights(weights, like: mx.array) -> mx.array:
    if weights is None:
        return mx.ones(like.shape, dtype=mx.float32)
    return mx.array(weights, dtype=mx.float32) if not isinstance(weights, mx.array) else weights.astype(mx.float32)


def _wmean(values: mx.array, weights: mx.array) -> mx.array:
    return (values * weights).sum() / mx.maximum(weights.sum(), 1e-12)


def dpo_loss(
    policy_chosen_logps: mx.array,
    policy_rejected_logps: mx.array,
    reference_chosen_logps: mx.array,
    reference_rejected_logps: mx.array,
    beta: float = 0.1,
    weights=None,
    label_smoothing: float = 0.0,
):
    """Direct Preference Optimisation (Rafailov et al. 2023).

    h_i = beta * [(pc_i - rc_i) - (pr_i - rr_i)]   (implicit reward margin)
    l_i = -(1 - eps) log sigma(h_i) - eps log sigma(-h_i)   (eps = label_smoothing, cDPO)
    Higher beta: less deviation from the reference model. At the reference l = log 2.
    """
    w = _weights(weights, policy_chosen_logps)
    chosen_rewards = beta * (policy_chosen_logps - reference_chosen_logps)
    rejected_rewards = beta * (policy_rejected_logps - reference_rejected_logps)
    h = chosen_rewards - rejected_rewards
    losses = -(1 - label_smoothing) * nn.log_sigmoid(h) - label_smoothing * nn.log_sigmoid(-h)
    metrics = {
        "rewards_chosen": _wmean(chosen_rewards, w),
        "rewards_rejected": _wmean(rejected_rewards, w),
        "margin": _wmean(h, w),
        "accuracy": _wmean((h > 0).astype(mx.float32), w),
    }
    return _wmean(losses, w), metrics


def simpo_loss(
    policy_chosen_logps_avg: mx.array,
    policy_rejected_logps_avg: mx.array,
    beta: float = 2.0,
    gamma: float = 0.5,
    weights=None,
):
    """SimPO (Meng et al. 2024), reference-free, on length-normalised log-probs.

    l_i = -log sigma(beta * (avg_pc_i - avg_pr_i) - gamma)
    where avg_* is the mean log-prob per answer token; gamma is a target reward margin.
    """
    w = _weights(weights, policy_chosen_logps_avg)
    h = beta * (policy_chosen_logps_avg - policy_rejected_logps_avg)
    losses = -nn.log_sigmoid(h - gamma)
    metrics = {"margin": _wmean(h, w), "accuracy": _wmean((h > 0).astype(mx.float32), w)}
    return _wmean(losses, w), metrics


def orpo_loss(
    policy_chosen_logps_avg: mx.array,
    policy_rejected_logps_avg: mx.array,
    beta: float = 0.1,
    weights=None,
):
    """The odds-ratio term of ORPO (Hong et al. 2024), reference-free.

    log odds(y) = avg_logp(y) - log(1 - exp(avg_logp(y)))
    l_i = -beta * log sigma(log odds(chosen_i) - log odds(rejected_i))
    ORPO's full objective adds the NLL of the chosen answer: the trainer's SFT term (``sft_loss``).
    """
    w = _weights(weights, policy_chosen_logps_avg)
    # log1p(-exp(x)) for x < 0; clamp so a probability of ~1 does not give log(0).
    c = mx.minimum(policy_chosen_logps_avg, -1e-6)
    r = mx.minimum(policy_rejected_logps_avg, -1e-6)
    log_odds = (c - r) - (mx.log1p(-mx.exp(c)) - mx.log1p(-mx.exp(r)))
    losses = -beta * nn.log_sigmoid(log_odds)
    metrics = {"log_odds": _wmean(log_odds, w), "accuracy": _wmean((log_odds > 0).astype(mx.float32), w)}
    return _wmean(losses, w), metrics


def sft_loss(policy_chosen_logps: mx.array, chosen_token_counts: mx.array, weights=None):
    """Mean negative log-likelihood per answer token, confidence-weighted.

    l = sum_i w_i * (-pc_i) / sum_i w_i * n_i   (pc_i summed over the n_i answer tokens of pair i)
    """
    w = _weights(weights, policy_chosen_logps)
    n = chosen_token_counts.astype(mx.float32)
    loss = -(w * policy_chosen_logps).sum() / mx.maximum((w * n).sum(), 1e-12)
    return loss, {"nll": loss}


def retention_kl(
    policy_logits_or_logps: mx.array,
    base_logps: mx.array,
    mask: mx.array | None = None,
    base_index: mx.array | None = None,
):
    """KL(base || policy) of the next-token distributions, averaged over (masked) positions.

    policy: (..., V) logits or log-probs (log_softmax is applied; it is idempotent on log-probs).
    Full form, base_logps (..., V):   KL = sum_v p_b(v) (log p_b(v) - log p_pi(v)).
    Top-k form, base_logps (..., k) at vocabulary ids ``base_index`` (..., k): the KL between the
    distributions coarsened to k+1 bins (the k ids and "everything else"), a lower bound of the full
    KL that needs only k numbers per position stored for the base.
    """
    logq = policy_logits_or_logps - select_backend().logsumexp(policy_logits_or_logps, keepdims=True)
    if base_index is None:
        kl = (mx.exp(base_logps) * (base_logps - logq)).sum(-1)
    else:
        logq_k = mx.take_along_axis(logq, base_index, axis=-1)
        p_k = mx.exp(base_logps)
        tail_p = mx.maximum(1.0 - p_k.sum(-1), 1e-12)
        tail_q = mx.maximum(1.0 - mx.exp(logq_k).sum(-1), 1e-12)
        kl = (p_k * (base_logps - logq_k)).sum(-1) + tail_p * (mx.log(tail_p) - mx.log(tail_q))
    if mask is None:
        loss = kl.mean()
    else:
        m = mask.astype(mx.float32)
        loss = (kl * m).sum() / mx.maximum(m.sum(), 1.0)
    return loss, {"kl": loss}


# -- training objectives: (model, TrainBatch) -> (loss, metrics) ------------------------------------------

_DEFAULT_ARGS = TrainingArgs()


def _answer_logps(model, batch: TrainBatch) -> tuple[mx.array, mx.array]:
    """Per-row answer log-probs and answer-token counts of the batch's rows."""
    logps = answer_logps(model, batch.inputs, batch.positions, batch.targets, batch.select)
    return logps, batch.select.sum(1)


def _pair_logps(model, batch: TrainBatch) -> tuple[mx.array, ...]:
    """(chosen log-probs, rejected log-probs, chosen counts, rejected counts, SFT log-probs, SFT counts): chosen
    rows come first, then rejected ones, then, when the batch has them, the rows of what the SFT term imitates of
    each chosen answer (``sft_target.with_sft_rows``); without them the SFT term reads the chosen rows."""
    logps, counts = _answer_logps(model, batch)
    n = batch.n_examples
    sft = slice(2 * n, 3 * n) if logps.shape[0] == 3 * n else slice(0, n)
    return logps[:n], logps[n:2 * n], counts[:n], counts[n:2 * n], logps[sft], counts[sft]


def _with_retention(model, batch: TrainBatch, args: TrainingArgs, total: mx.array, metrics: dict):
    """``total`` plus the retention term, when the batch has general-text rows and the term has weight."""
    if batch.retention_inputs.shape[0] > 0 and args.retention_weight > 0:
        kl, _ = retention_kl(full_logits(model, batch.retention_inputs), batch.retention_top, batch.retention_mask,
                             batch.retention_index)
        total = total + args.retention_weight * kl
        metrics["retention_kl"] = kl
    return total, metrics


def _with_sft(model, batch: TrainBatch, args: TrainingArgs, preference, metrics: dict, chosen, chosen_counts):
    """A preference term plus the SFT term on the chosen answers, plus retention."""
    sft, _ = sft_loss(chosen, chosen_counts, batch.weights)
    return _with_retention(model, batch, args, preference + args.sft_weight * sft, dict(metrics, sft=sft))


def dpo(model, batch: TrainBatch, args: TrainingArgs = _DEFAULT_ARGS):
    """DPO against the batch's reference log-probs, + SFT + retention."""
    pc, pr, _, _, ps, ns = _pair_logps(model, batch)
    pref, metrics = dpo_loss(pc, pr, batch.reference_chosen, batch.reference_rejected, args.beta, batch.weights)
    return _with_sft(model, batch, args, pref, metrics, ps, ns)


def simpo(model, batch: TrainBatch, args: TrainingArgs = _DEFAULT_ARGS):
    """SimPO on per-token log-probs (no reference), + SFT + retention."""
    pc, pr, nc, nr, ps, ns = _pair_logps(model, batch)
    pref, metrics = simpo_loss(pc / nc, pr / nr, args.simpo_beta, args.simpo_gamma, batch.weights)
    return _with_sft(model, batch, args, pref, metrics, ps, ns)


def orpo(model, batch: TrainBatch, args: TrainingArgs = _DEFAULT_ARGS):
    """ORPO's odds-ratio term on per-token log-probs + its NLL term (the SFT term) + retention."""
    pc, pr, nc, nr, ps, ns = _pair_logps(model, batch)
    pref, metrics = orpo_loss(pc / nc, pr / nr, args.beta, batch.weights)
    return _with_sft(model, batch, args, pref, metrics, ps, ns)


def sft(model, batch: TrainBatch, args: TrainingArgs = _DEFAULT_ARGS):
    """The NLL of the batch's answers (chosen answers and liked unpaired ones) + retention."""
    logps, counts = _answer_logps(model, batch)
    loss, _ = sft_loss(logps, counts, batch.weights)
    return _with_retention(model, batch, args, loss, {"sft": loss})


LossFn = Callable[..., tuple]  # (model, TrainBatch[, args]) -> (loss, metrics)

# Keys: config.LOSS_NAMES, which TrainingArgs and LearningConfig check names against.
LOSSES: dict[str, LossFn] = {"dpo": dpo, "simpo": simpo, "orpo": orpo, "sft": sft}
PAIRED_LOSSES = frozenset({"dpo", "simpo", "orpo"})  # need a rejected answer; batches hold chosen + rejected rows
REFERENCE_LOSSES = frozenset({"dpo"})  # need the base model's log-probs of every pair
