"""One per-session adapter update: gather pairs -> train within budget -> validate -> gated commit.

Runs the same way in the chat process (``train(wait=True)``, on the live model) and in the
background worker (on its own copy of the model). The store is the authority on which version is
active; adapter files are written atomically by ``AdapterRepo`` before the store row says so, so a
crash at any point leaves the previous version active and complete.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field

from typing import Callable

from asls_mlx.adaptation.base_cache import BaseCache
from asls_mlx.adaptation.batching import encode_pair
from asls_mlx.adaptation.evaluate import GateDecision, gate, preference_metrics, retention_perplexity
from asls_mlx.adaptation.lora import (
    LoraConfig, attach_lora, has_lora, load_adapter, lora_config, lora_parameters, reset_lora, set_lora_weights,
)
from asls_mlx.adaptation.logprobs import PrefixCache, decide_fast_paths
from asls_mlx.adaptation.trainer import Progress, TrainingArgs, adapt_schedule, train_on_pairs
from asls_mlx.adaptation.versions import AdapterRepo
from asls_mlx.profiling.quality import quality_issues

AnswerFn = Callable[[list[str]], list[str]]  # greedy answers to prompts with the model's current weights
ScoreFn = Callable[[str, str], float]  # (prompt, answer) -> how well it fits the user's profile, 0..1


@dataclass
class UpdateOptions:
    loss: str = "dpo"  # dpo | simpo | orpo | sft
    time_budget_s: float = 30.0  # wall clock for the training steps themselves
    max_steps: int = 10  # per session: over-training makes a 135M model loop or refuse (DESIGN.md)
    # ...and so does seeing the same few pairs many times: a 10-turn session gave 3 DPO pairs, and
    # its 4th and 5th passes over them raised general-text perplexity 1.015x -> 1.108x and made the
    # answers fit the user worse (profile fit 0.83 -> 0.64 after 5 passes, measured)
    max_epochs: float = 3.0
    base_lr: float = 2e-4
    drift_adaptation: bool = True  # steps/lr/replay follow the profile's drift score
    replay_pool: int = 64  # older pairs eligible for replay
    quality_prompts: int = 6  # the user's prompts answered greedily by the old and the new adapter
    quality_max_tokens: int = 64
    min_score_gain: float = -0.02  # the new adapter's answers may not fit the profile worse than this
    retention_bound: float = 1.10  # general-text perplexity may rise at most 10%
    lora: LoraConfig = field(default_factory=LoraConfig)
    seed: int = 0
    sources: frozenset | None = None  # train only on pairs from these sources (ablations); None: all


@dataclass
class UpdateReport:
    """What one update did. ``committed`` False means the previous adapter stayed active."""

    committed: bool
    reason: str
    version: int | None = None  # the active version after the update (None = base model)
    previous_version: int | None = None
    new_pairs: int = 0
    steps: int = 0
    seconds: float = 0.0
    losses: list[float] = field(default_factory=list)
    before: dict = field(default_factory=dict)
    after: dict = field(default_factory=dict)
    retention_ratio: float | None = None
    run_id: int | None = None
    profile_fit: tuple = (None, None)  # mean profile score of greedy answers, old adapter -> new
    # seconds per phase: prepare (pairs, held-out metrics before), reference (+ frozen-block cache),
    # steps, validate (held-out metrics, retention, answers old vs new), commit
    timings: dict = field(default_factory=dict)

    def summary(self) -> str:
        if self.steps == 0 and not self.committed:
            return f"adapter unchanged: {self.reason}"
        acc = ""
        if self.before.get("n") and self.after.get("n"):
            acc = f", held-out preference {self.before['accuracy']:.2f} → {self.after['accuracy']:.2f}"
        if self.committed:
            return f"adapter v{self.version} — trained on {self.new_pairs} new pairs{acc}"
        return f"kept adapter {_name(self.previous_version)}: new one rejected ({self.reason})"


def _name(version: int | None) -> str:
    return f"v{version}" if version else "none (base model)"


def update_adapter(
    store,
    user_id: int,
    model,
    tokenizer,
    repo: AdapterRepo,
    base_model_id: str,
    options: UpdateOptions = UpdateOptions(),
    drift: float = 0.0,
    general_texts: list[str] = (),
    answer_fn: AnswerFn | None = None,
    profile_score: ScoreFn | None = None,
    progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    session_ids: list[int] = (),
    answers_before: dict[str, str] | None = None,
    base_cache: BaseCache | None = None,
) -> UpdateReport:
    """Train the user's adapter on their new pairs (+ replay), and commit it only if it is not worse.

    ``answers_before``: the old adapter's greedy answers to (some of) the gate's prompts, if the
    caller already has them (decoded alongside the self-labelled samples); the rest are generated.
    ``base_cache``: keeps what depends only on the base model (retention targets, base perplexity,
    which fast paths hold for it) for later updates, each of which runs in a fresh background process.
    """
    new = _wanted(store.pairs(user_id, split="train", unused_only=True), options)
    active = store.active_adapter(user_id)
    previous = active.version if active else None
    if not new:
        return UpdateReport(False, "no new pairs since the last update", previous, previous)
    new_ids = {n.id for n in new}
    older = [p for p in _wanted(store.pairs(user_id, split="train"), options) if p.id not in new_ids]
    replay = random.Random(options.seed).sample(older, min(len(older), options.replay_pool))
    val = _wanted(store.pairs(user_id, split="val"), options)

    t0 = time.perf_counter()
    steps, lr, replay_fraction = adapt_schedule(
        len(new), drift if options.drift_adaptation else 0.0, options.base_lr, options.max_steps
    )
    if not has_lora(model):
        attach_lora(model, options.lora)
    old_weights = {k: v for k, v in lora_parameters(model).items()}
    optimizer_state = repo.optimizer_state(previous) if previous else None
    # reference log-probs are stored with the pairs: replay and held-out pairs are not recomputed
    ref_cache = store.reference_logps(user_id, base_model_id)
    stored_refs = set(ref_cache)
    decide_fast_paths(model, base_cache)
    prefix = PrefixCache(model)  # frozen blocks run once per row: held-out before/after and training
    before = preference_metrics(model, tokenizer, val, ref_cache, prefix=prefix)
    run_id = store.add_training_run(user_id, [p.id for p in new], session_ids, parent_version=previous)
    args = TrainingArgs(
        loss=options.loss, lr=lr, max_steps=steps, time_budget_s=options.time_budget_s,
        replay_fraction=replay_fraction, seed=options.seed, max_epochs=options.max_epochs,
    )
    started = time.perf_counter()
    timings = {"prepare": started - t0}
    try:
        result = train_on_pairs(
            model, tokenizer, new, args, replay_pairs=replay, general_texts=general_texts,
            optimizer_state=optimizer_state, callback=progress, should_stop=should_stop, reference_cache=ref_cache,
            prefix=prefix, base_cache=base_cache,
        )
    except BaseException as e:  # KeyboardInterrupt included: restore, record, re-raise
        set_lora_weights(model, old_weights)
        store.finish_training_run(run_id, "failed", f"{type(e).__name__}: {e}"[:300])
        raise
    report = UpdateReport(
        False, "", previous, previous, len(new), result.steps, time.perf_counter() - started, result.losses, before, run_id=run_id
    )
    timings.update(reference=result.prepare_s, steps=result.seconds - result.prepare_s)
    report.timings = timings
    _store_references(store, tokenizer, base_model_id, new + replay + val, result.reference_cache, stored_refs, args)
    validating = time.perf_counter()
    if result.stopped_reason == "cancelled":
        return _reject(store, model, old_weights, report, "cancelled", status="cancelled")
    if result.steps == 0:
        return _reject(store, model, old_weights, report, f"no training step ran ({result.stopped_reason})", status="failed")
    report.after = preference_metrics(model, tokenizer, val, ref_cache, prefix=prefix)
    timings["validate_heldout"] = time.perf_counter() - validating
    retention = (
        retention_perplexity(model, tokenizer, list(general_texts), base_cache=base_cache) if general_texts else {"ratio": 1.0}
    )
    report.retention_ratio = retention["ratio"]
    timings["validate_retention"] = time.perf_counter() - validating - timings["validate_heldout"]
    checks = dict(bound=options.retention_bound, diverged=result.diverged, require_validation=False)
    # the answers (~5 s of generation) only when the held-out and forgetting checks let the adapter through
    passes_so_far = gate(before, report.after, report.retention_ratio, **checks).commit
    failures, fit_before, fit_after = (
        _answer_check(model, old_weights, val + new, answer_fn, profile_score, options, answers_before)
        if answer_fn and passes_so_far else (0, None, None)
    )
    report.profile_fit = (fit_before, fit_after)
    decision = gate(before, report.after, report.retention_ratio, quality_failures=failures, **checks)
    if decision.commit and fit_before is not None and fit_after < fit_before + options.min_score_gain:
        decision = GateDecision(False, f"answers fit the profile worse ({fit_before:.2f} -> {fit_after:.2f})")
    timings["validate"] = time.perf_counter() - validating
    if not decision.commit:
        return _reject(store, model, old_weights, report, decision.reason, status="failed" if result.diverged else "rejected")
    metrics = {
        "loss": options.loss, "steps": result.steps, "seconds": round(report.seconds, 2), "losses": result.losses,
        "new_pairs": len(new), "val_before": before, "val_after": report.after,
        "retention_ratio": report.retention_ratio, "lr": lr, "drift": drift, "stopped": result.stopped_reason,
        "profile_fit_before": fit_before, "profile_fit_after": fit_after,
    }
    config = lora_config(model)  # the attached one: an older adapter may use another layout
    committing = time.perf_counter()
    try:
        version = repo.commit(
            model, config,
            {"base_model": base_model_id, "rank": config.rank, "keys": list(config.keys), "loss": options.loss,
             "pairs": [p.id for p in new], "sessions": list(session_ids), "metrics": _finite(metrics)},
            optimizer_state=result.optimizer_state, version=store.next_adapter_version(user_id),
        )
        # The store row is written last: until it exists, the previous version stays the active one.
        store.add_adapter_version(
            user_id, str(repo.path(version)), base_model_id, metrics=_finite(metrics), parent_version=previous,
            status="active", version=version,
        )
        store.mark_pairs_used([p.id for p in new], version)
        store.finish_training_run(run_id, "ok", decision.reason, _finite(metrics), adapter_version=version)
    except BaseException as e:  # disk full, killed, ...: the old adapter stays, the run says why
        set_lora_weights(model, old_weights)
        store.finish_training_run(run_id, "failed", f"commit failed: {e}"[:300])
        raise
    report.committed, report.reason, report.version = True, decision.reason, version
    timings["commit"] = time.perf_counter() - committing
    return report


def _store_references(store, tokenizer, model_id: str, pairs, refs: dict, stored: set, args: TrainingArgs) -> None:
    """Persist the reference log-probs computed in this update beside their pairs."""
    rows = []
    for p in pairs:
        key = encode_pair(tokenizer, p, args.max_length).key  # the key train() and the metrics used
        if p.id is not None and key in refs and key not in stored:
            rows.append((p.id, key, *refs[key]))
    if rows:
        store.add_reference_logps(model_id, rows)


def _reject(store, model, old_weights, report: UpdateReport, reason: str, status: str) -> UpdateReport:
    set_lora_weights(model, old_weights)  # the live model goes back to the old adapter exactly
    store.finish_training_run(report.run_id, status, reason, _finite({"losses": report.losses, "steps": report.steps}))
    report.reason = reason
    return report


def _wanted(pairs, options: UpdateOptions) -> list:
    return [p for p in pairs if options.sources is None or p.source in options.sources]


def gate_prompts(store, user_id: int, options: UpdateOptions = UpdateOptions()) -> list[str]:
    """The user's prompts the commit gate answers with the old and the new adapter: held-out first,
    then those of the pairs not trained on yet."""
    pairs = _wanted(store.pairs(user_id, split="val"), options) + _wanted(
        store.pairs(user_id, split="train", unused_only=True), options
    )
    return _first_prompts(pairs, options.quality_prompts)


def _first_prompts(pairs, n: int) -> list[str]:
    return list(dict.fromkeys(p.prompt for p in pairs))[:n]


def _answer_check(model, old_weights, pairs, answer_fn: AnswerFn, profile_score: ScoreFn | None,
                  options: UpdateOptions, answers_before: dict[str, str] | None = None
                  ) -> tuple[int, float | None, float | None]:
    """Answer the user's own prompts greedily with the old and the new adapter.

    Returns (answers that fail the quality guard now but did not before, mean profile fit before,
    after). Preference accuracy on log-probs does not see what over-optimisation does first — loops,
    refusals, empty or off-topic answers (DESIGN.md) — nor whether answers actually got better for
    this user; generating does.
    """
    prompts = _first_prompts(pairs, options.quality_prompts)
    if not prompts:
        return 0, None, None
    after = answer_fn(prompts)
    known = dict(answers_before or {})
    missing = [q for q in prompts if q not in known]
    if missing:
        new_weights = lora_parameters(model)
        set_lora_weights(model, old_weights)
        try:
            known.update(zip(missing, answer_fn(missing)))
        finally:
            set_lora_weights(model, new_weights)
    before = [known[q] for q in prompts]
    failures = sum(1 for q, b, a in zip(prompts, before, after) if quality_issues(q, a) and not quality_issues(q, b))
    if profile_score is None:
        return failures, None, None
    fit = [(profile_score(q, b), profile_score(q, a)) for q, b, a in zip(prompts, before, after)]
    return failures, sum(f[0] for f in fit) / len(fit), sum(f[1] for f in fit) / len(fit)


def _finite(value):
    """JSON-safe copy: NaN/inf become None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def activate_version(model, repo: AdapterRepo, version: int | None) -> None:
    """Hot-swap: put ``version``'s weights into the loaded model in place (None = base model)."""
    if version is None:
        if has_lora(model):
            reset_lora(model)
        return
    load_adapter(repo.path(version), model)


__all__ = ["UpdateOptions", "UpdateReport", "activate_version", "gate_prompts", "update_adapter"]

