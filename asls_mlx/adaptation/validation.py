"""What the commit gate measures with log-probs: held-out preference and general-text perplexity (retention)."""

from __future__ import annotations

import math

import numpy as np

from asls_mlx.adaptation.base_cache import BaseCache, array_key, base_fingerprint, cached
from asls_mlx.adaptation.batching import encode_pairs, text_batch
from asls_mlx.adaptation.logprobs import next_token_logps, pairs_logps, reference_logps
from asls_mlx.adaptation.prefix_cache import PrefixCache
from asls_mlx.adaptation.lora import adapter_disabled, adapter_is_identity
from asls_mlx.yielding import pause_point

RETENTION_ROWS = 4  # general-text rows per pass of the retention check; pause points fall between passes


def preference_metrics(model, tokenizer, val_pairs, ref_cache: dict | None = None, beta: float = 0.1, max_length: int = 256,
                       batch_size: int = 8, tie: float = 1e-4, prefix: PrefixCache | None = None,
                       system: str | None = None, known: dict | None = None) -> dict:
    """Implicit DPO reward on held-out pairs, adapter on vs off (the reference).

    margin_i = beta * [(pc_i - rc_i) - (pr_i - rr_i)]; accuracy = share of pairs with margin > 0
    (a tie — e.g. the base model itself, up to float noise ``tie`` — is not a success). Returns
    {accuracy, margin, n, margins (per pair, in order)};
    ``ref_cache`` is filled with any reference log-probs it had to compute. ``prefix`` (shared with
    the trainer) lets the reference and both policy passes start after the frozen blocks. ``system``: the pairs'
    system turn, as in training (``LearningConfig.pair_system``). The result's ``logps`` holds each pair's policy
    log-probs (chosen, rejected) by its key; ``known`` takes such a dict back for the same weights (the active
    version's own ``val_after``), so a later update does not compute again what its version already did.
    """
    pairs = [p for p in encode_pairs(tokenizer, val_pairs, max_length, system) if p.rejected is not None]
    if not pairs:
        return {"accuracy": float("nan"), "margin": float("nan"), "n": 0}
    ref = reference_logps(model, pairs, ref_cache if ref_cache is not None else {}, prefix=prefix)
    if adapter_is_identity(model):  # the policy is the reference: every margin is exactly 0
        return {"accuracy": 0.0, "margin": 0.0, "n": len(pairs), "margins": [0.0] * len(pairs)}
    policy = {p.key: tuple(known[p.key]) for p in pairs if known and p.key in known}
    todo = list({p.key: p for p in pairs if p.key not in policy}.values())
    for i in range(0, len(todo), batch_size):
        chunk = todo[i : i + batch_size]
        logps = pairs_logps(model, [(p.prompt, p.chosen, p.rejected) for p in chunk], prefix).tolist()
        policy.update((p.key, (logps[j], logps[len(chunk) + j])) for j, p in enumerate(chunk))
    margins = [beta * ((policy[p.key][0] - ref[p.key][0]) - (policy[p.key][1] - ref[p.key][1])) for p in pairs]
    return {
        "accuracy": sum(m > tie for m in margins) / len(margins),
        "margin": sum(margins) / len(margins),
        "n": len(margins),
        "margins": [float(m) for m in margins],  # per pair, in order: the gate's sign test pairs them up
        "logps": {p.key: [float(x) for x in policy[p.key]] for p in pairs},
    }


def _perplexity(model, inputs: list, tokens, mask) -> float:
    """Perplexity over all rows, one chunk of ``inputs`` at a time with a pause point between (a background update
    gives way to an answer there: the whole pass is ~4 s of CPU on the embedded model)."""
    total, count, start = 0.0, 0.0, 0
    for chunk in inputs:
        if start:
            pause_point()
        end = start + chunk.shape[0]
        picked = next_token_logps(model, chunk, tokens[start:end, 1:])
        m = mask[start:end]
        total += float((-(picked * m).sum()).item())
        count += float(m.sum().item())
        start = end
    return math.exp(total / max(count, 1.0))


def retention_perplexity(model, tokenizer, texts, max_length: int = 128, base_cache: BaseCache | None = None) -> dict:
    """Perplexity of general text with the adapter on and off: {ppl, base_ppl, ratio} (ratio 1 = no change).

    The base model's perplexity never changes, so it is computed once per model and text batch (and
    kept in ``base_cache``, if given, for later processes).
    """
    tokens, mask = text_batch(tokenizer, texts, max_length)
    if tokens.shape[0] == 0:
        return {"ppl": float("nan"), "base_ppl": float("nan"), "ratio": 1.0, "n": 0}
    prefix = PrefixCache(model)
    hidden = prefix.text_inputs(tokens, base_cache)
    inputs = [hidden[i : i + RETENTION_ROWS] for i in range(0, tokens.shape[0], RETENTION_ROWS)]
    memo = model.__dict__.setdefault("_asls_base_ppl", {})
    key = array_key(tokens, mask, base_fingerprint(model))  # in this process and, via base_cache, later ones
    if key not in memo:
        def compute() -> dict:
            with adapter_disabled(model):
                return {"ppl": np.array(_perplexity(model, inputs, tokens, mask))}

        memo[key] = float(cached(base_cache, "base-perplexity", key, ("ppl",), compute)["ppl"])
    base = memo[key]
    ppl = base if adapter_is_identity(model) else _perplexity(model, inputs, tokens, mask)
    return {"ppl": ppl, "base_ppl": base, "ratio": ppl / base, "n": int(tokens.shape[0])}
