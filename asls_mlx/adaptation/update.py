"""One per-session adapter update: gather pairs -> train the steps the data calls for -> validate -> gated commit.

Runs the same way in the chat process (on the live model) and in the background worker (on its own
copy of the model). The store is the authority on which version is active; adapter files are written
atomically by ``AdapterRepo`` before the store row says so, so a crash at any point leaves the previous
version active and complete. Nothing here depends on how fast it runs: the pairs, the steps and the gate's
checks are decided by the data, so an idle and a busy machine commit the same version with the same numbers
(only the wall-clock safety net, ``LearningConfig.time_limit_s``, can end the steps early, and the report says so).
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field, replace
from typing import Callable

from asls_mlx.adaptation.base_cache import BaseCache
from asls_mlx.adaptation.batching import encode_pair
from asls_mlx.adaptation.config import LearningConfig, TrainingArgs, stop_note
from asls_mlx.adaptation.answer_check import answer_check
from asls_mlx.adaptation.gate import GateChecks, GateDecision, first_prompts, gate, wanted
from asls_mlx.adaptation.harm import profile_fit_harm
from asls_mlx.adaptation.logprobs import decide_fast_paths
from asls_mlx.adaptation.prefix_cache import PrefixCache
from asls_mlx.adaptation.relevance import irrelevant
from asls_mlx.adaptation.lora import attach_lora, has_lora, load_adapter, lora_config, lora_parameters, reset_lora, set_lora_weights
from asls_mlx.adaptation.trainer import Progress, TrainResult, train_on_pairs
from asls_mlx.adaptation.validation import preference_metrics, retention_perplexity
from asls_mlx.adaptation.versions import AdapterRepo


@dataclass
class UpdateTarget:
    """Whose adapter is updated, on which loaded model. ``base_cache`` keeps what depends only on the base
    model (retention targets, base perplexity, which fast paths hold for it) for later updates, each of
    which runs in a fresh background process."""

    store: object
    user_id: int
    model: object
    tokenizer: object
    repo: AdapterRepo
    base_model_id: str
    base_cache: BaseCache | None = None


@dataclass
class UpdateReport:
    """What one update did. ``committed`` False means the previous adapter stayed active."""

    committed: bool
    reason: str
    version: int | None = None  # the active version after the update (None = base model)
    previous_version: int | None = None
    new_pairs: int = 0
    steps: int = 0
    planned_steps: int = 0  # the steps the data called for
    stopped: str = ""  # why the steps ended: max_steps | time_limit (the safety net) | cancelled | diverged | no_data
    seconds: float = 0.0
    losses: list[float] = field(default_factory=list)
    before: dict = field(default_factory=dict)
    after: dict = field(default_factory=dict)
    retention_ratio: float | None = None
    run_id: int | None = None
    profile_fit: tuple = (None, None)  # mean profile score of greedy answers, old adapter -> new
    answer_failures: int | None = None  # gate prompts whose new answer fails a check the old one passed
    answer_notes: tuple = ()  # failures that are not one answer's (template collapse)
    scale: float = 1.0  # the share of the trained change the gate last judged (LearningConfig.retry_scale)
    # the gate's greedy answers (prompt -> answer) of the old weights, the base model's and, if committed, the new
    # version's: the next update judges against the same (``gate_memory``)
    answers: dict = field(default_factory=dict)
    # seconds per phase: prepare (pairs, held-out metrics before), reference (+ frozen-block cache),
    # steps, validate (held-out metrics, retention, answers old vs new), commit
    timings: dict = field(default_factory=dict)

    def summary(self) -> str:
        if self.steps == 0 and not self.committed:
            return f"adapter unchanged: {self.reason}"
        acc = ""
        if self.before.get("n") and self.after.get("n"):
            acc = f", held-out preference {self.before['accuracy']:.2f} → {self.after['accuracy']:.2f}"
        note = self.stop_note()
        note = f" ({note})" if note else ""
        if self.committed and self.scale != 1.0:
            note += f" ({self.scale:g} of the trained change: the whole of it was rejected)"
        if self.committed:
            return f"adapter v{self.version} — trained on {self.new_pairs} new pairs{acc}{note}"
        return f"kept adapter {_name(self.previous_version)}: new one rejected ({self.reason}){note}"

    def stop_note(self) -> str:
        """ "stopped by the wall-clock safety net after 3 of 10 steps", or "" when the data decided the steps."""
        return stop_note(self.stopped, self.steps, self.planned_steps)


def _name(version: int | None) -> str:
    return f"v{version}" if version else "none (base model)"


@dataclass
class _Prepared:
    """The update's pairs and the state training starts from."""

    new: list
    replay: list
    val: list
    previous: int | None
    lr: float
    args: TrainingArgs
    old_weights: dict
    optimizer_state: dict | None
    ref_cache: dict
    stored_refs: set
    prefix: PrefixCache
    before: dict
    run_id: int
    started: float = 0.0
    timings: dict = field(default_factory=dict)
    # the old weights' and the base model's answers to the gate's prompts, once the gate has them (a retry judges
    # against the same)
    old_answers: dict = field(default_factory=dict)
    base_answers: dict = field(default_factory=dict)
    new_answers: dict = field(default_factory=dict)  # the weights the gate judged last


def update_adapter(target: UpdateTarget, config: LearningConfig = LearningConfig(), checks: GateChecks = GateChecks(),
                   drift: float = 0.0, session_ids: list[int] = (), progress: Callable[[Progress], None] | None = None,
                   should_stop: Callable[[], bool] | None = None, pause: Callable[[], float] | None = None) -> UpdateReport:
    """Train the user's adapter on their new pairs (+ replay), and commit it only if it is not worse.

    1) gather the new, replayed and held-out pairs; 2) prepare (schedule, LoRA, reference log-probs,
    held-out metrics before); 3) train; 4) validate and gate; 5) commit, or put the old weights back.
    ``pause()`` (blocks while the update must give the CPU to an answer) runs before each step and before
    each heavy phase.
    """
    pause = pause or _no_pause
    t0 = time.perf_counter()
    store, user_id = target.store, target.user_id
    new = wanted(store.pairs(user_id, split="train", unused_only=True), config)
    active = store.active_adapter(user_id)
    previous = active.version if active else None
    new, off_topic = helpful_chosen(new, checks)
    if not new:
        why = f" ({off_topic} whose preferred answer is not about its prompt)" if off_topic else ""
        return UpdateReport(False, f"no new pairs since the last update{why}", previous, previous)
    pause()
    prep = _prepare(target, config, new, previous, drift, session_ids, _validated_logps(active))
    prep.started = time.perf_counter()
    prep.timings["prepare"] = prep.started - t0
    try:
        result = train_on_pairs(
            target.model, target.tokenizer, prep.new, prep.args, replay_pairs=prep.replay,
            general_texts=checks.general_texts if checks.training_texts is None else checks.training_texts,
            optimizer_state=prep.optimizer_state, callback=progress,
            should_stop=should_stop, reference_cache=prep.ref_cache, prefix=prep.prefix, base_cache=target.base_cache,
            pause=pause,
        )
    except BaseException as e:  # KeyboardInterrupt included: restore, record, re-raise
        set_lora_weights(target.model, prep.old_weights)
        store.finish_training_run(prep.run_id, "failed", f"{type(e).__name__}: {e}"[:300])
        raise
    if progress is not None and result.steps and result.losses:  # the steps are done (the safety net may end them early)
        progress(Progress(result.steps, result.steps, result.losses[-1], time.perf_counter() - prep.started))
    report = UpdateReport(False, "", previous, previous, len(new), result.steps, result.planned, result.stopped_reason,
                          time.perf_counter() - prep.started, result.losses, prep.before, run_id=prep.run_id)
    prep.timings.update(reference=result.prepare_s, steps=result.seconds - result.prepare_s)
    report.timings = prep.timings
    _store_references(target, prep.new + prep.replay + prep.val, result.reference_cache, prep.stored_refs, prep.args)
    if result.stopped_reason == "cancelled":
        return _reject(target, prep, report, "cancelled", status="cancelled")
    if result.steps == 0:
        return _reject(target, prep, report, f"no training step ran ({result.stopped_reason})", status="failed")
    pause()
    decision = _validate(target, config, checks, prep, result, report, pause)
    if not decision.commit and config.retry_scale and not result.diverged:
        decision = _retry_scaled(target, config, checks, prep, result, report, decision, pause)
    report.answers = {"old": prep.old_answers, "base": prep.base_answers,
                      "new": prep.new_answers if decision.commit else {}}
    if not decision.commit:
        return _reject(target, prep, report, decision.reason, status="failed" if result.diverged else "rejected",
                       metrics=_run_metrics(config, prep, result, report, drift))
    return _commit(target, config, prep, result, report, decision, drift, session_ids)


def helpful_chosen(pairs: list, checks: GateChecks) -> tuple[list, int]:
    """The pairs whose chosen answer is about its prompt, and how many were dropped.

    A model-written chosen answer (a regeneration, the answer after a correction, a self-labelled sample, a
    liked answer) must itself be helpful, or the adapter learns what it has in common with the others (a
    short template) instead of the task. The text checks ran when the pair was mined; here the base model's
    PMI (``checks.relevance``) also judges whether it answers its prompt. The user's own edits are theirs to
    make and are kept.
    """
    judged = [p for p in pairs if p.source != "edit" and p.label >= 0]
    if checks.relevance is None or not judged:
        return pairs, 0
    pmi = checks.relevance([p.prompt for p in judged], [p.chosen for p in judged])
    off = {id(p) for p, x in zip(judged, pmi) if irrelevant(x)}
    return [p for p in pairs if id(p) not in off], len(off)


def _validated_logps(active) -> dict:
    """The active version's policy log-probs of the held-out pairs its own gate read (``preference_metrics``'s
    ``logps``, kept in its metrics): its held-out metrics before the next update need not compute them again."""
    if active is None:
        return {}
    validated = (active.metrics or {}).get("val_after") or {}
    return validated.get("logps") or {}


def _prepare(target: UpdateTarget, config: LearningConfig, new: list, previous: int | None, drift: float,
             session_ids, known_logps: dict) -> _Prepared:
    store, model = target.store, target.model
    new_ids = {n.id for n in new}
    older = [p for p in wanted(store.pairs(target.user_id, split="train"), config) if p.id not in new_ids]
    replay = random.Random(config.seed).sample(older, min(len(older), config.replay_pool))
    val = wanted(store.pairs(target.user_id, split="val"), config)
    steps, lr, replay_fraction = config.schedule(len(new), drift)
    if not has_lora(model):
        attach_lora(model, config.lora)
    old_weights = dict(lora_parameters(model))
    # a later update continues the previous version's step count: the batch order, the lr decay
    optimizer_state = target.repo.optimizer_state(previous) if previous else None
    if optimizer_state and "step" in optimizer_state:
        lr = config.continued_lr(lr, int(optimizer_state["step"].item()))
    # reference log-probs are stored with the pairs: replay and held-out pairs are not recomputed
    ref_cache = store.reference_logps(target.user_id, target.base_model_id)
    stored_refs = set(ref_cache)
    decide_fast_paths(model, target.base_cache)
    prefix = PrefixCache(model)  # frozen blocks run once per row: held-out before/after and training
    before = preference_metrics(model, target.tokenizer, val, ref_cache, prefix=prefix, system=config.pair_system,
                                max_length=config.max_length, known=known_logps)
    before.pop("logps", None)  # the active version's: its own record keeps them
    run_id = store.add_training_run(target.user_id, [p.id for p in new], session_ids, parent_version=previous)
    args = config.training_args(max_steps=steps, lr=lr, replay_fraction=replay_fraction)
    return _Prepared(new, replay, val, previous, lr, args, old_weights, optimizer_state, ref_cache, stored_refs, prefix,
                     before, run_id)


def _validate(target: UpdateTarget, config: LearningConfig, checks: GateChecks, prep: _Prepared, result: TrainResult,
              report: UpdateReport, pause: Callable[[], float] = lambda: 0.0) -> GateDecision:
    """Held-out preference, retention, then (only if those pass: ~5 s of generation) the answers old vs new;
    ``pause()`` between them."""
    model, timings = target.model, prep.timings
    validating = time.perf_counter()
    report.after = preference_metrics(model, target.tokenizer, prep.val, prep.ref_cache, prefix=prep.prefix,
                                      system=config.pair_system, max_length=config.max_length)
    timings["validate_heldout"] = time.perf_counter() - validating
    pause()
    retention = (retention_perplexity(model, target.tokenizer, list(checks.general_texts), base_cache=target.base_cache)
                 if checks.general_texts else {"ratio": 1.0})
    report.retention_ratio = retention["ratio"]
    timings["validate_retention"] = time.perf_counter() - validating - timings["validate_heldout"]
    limits = dict(bound=config.retention_bound, diverged=result.diverged, require_validation=False)
    passes_so_far = gate(prep.before, report.after, report.retention_ratio, **limits).commit
    failures, fit_before, fit_after, notes, fits = 0, None, None, (), ()
    prep.new_answers = {}
    if checks.answer_fn and passes_so_far:
        pause()

        def swap_to(put_in: Callable[[], None]) -> Callable[[], Callable[[], None]]:
            def swap():
                new_weights = lora_parameters(model)
                put_in()
                return lambda: set_lora_weights(model, new_weights)
            return swap

        swap_to_old = swap_to(lambda: set_lora_weights(model, prep.old_weights))
        swap_to_base = swap_to(lambda: reset_lora(model))  # B = 0: the base model's outputs
        prompts = first_prompts(prep.val + prep.new, config.quality_prompts)
        check = answer_check(prompts, replace(checks, answers_before=prep.old_answers or checks.answers_before,
                                              answers_base=prep.base_answers or checks.answers_base),
                             swap_to_old, None if prep.previous is None else swap_to_base, old_weights=prep.old_weights)
        prep.old_answers, prep.base_answers, prep.new_answers = check.answers_before, check.answers_base, check.answers_after
        (failures, fit_before, fit_after), notes, fits = check, check.notes, check.fits
    report.profile_fit = (fit_before, fit_after)
    report.answer_failures, report.answer_notes = (failures, tuple(notes)) if checks.answer_fn and passes_so_far else (None, ())
    decision = gate(prep.before, report.after, report.retention_ratio, quality_failures=failures, quality_notes=notes, **limits)
    fit_harm = profile_fit_harm(fits, config.min_score_gain) if decision.commit else None
    if fit_harm:
        decision = GateDecision(False, fit_harm)
    timings["validate"] = time.perf_counter() - validating
    return decision


def _retry_scaled(target: UpdateTarget, config: LearningConfig, checks: GateChecks, prep: _Prepared,
                  result: TrainResult, report: UpdateReport, rejected: GateDecision,
                  pause: Callable[[], float]) -> GateDecision:
    """The trained update rejected: put in ``config.retry_scale`` of it (old + s x (trained - old), per weight) and
    let the whole gate judge that afresh. For a first adapter the old B is 0, so the change of weights is scaled by
    s up to the small drift of A; both decisions are in the reason."""
    scale, model, first_time = config.retry_scale, target.model, prep.timings.get("validate", 0.0)
    trained = lora_parameters(model)
    set_lora_weights(model, {k: prep.old_weights[k] + scale * (v - prep.old_weights[k]) for k, v in trained.items()})
    pause()
    retried = _validate(target, config, checks, prep, result, report, pause)
    prep.timings["validate"] += first_time
    report.scale = scale
    if retried.commit:
        return GateDecision(True, f"{scale:g} of the update: {retried.reason} (the whole update: {rejected.reason})")
    return GateDecision(False, f"{rejected.reason}; {scale:g} of the update too: {retried.reason}")


def _commit(target: UpdateTarget, config: LearningConfig, prep: _Prepared, result: TrainResult, report: UpdateReport,
            decision: GateDecision, drift: float, session_ids) -> UpdateReport:
    """Write the version folder, then the store rows that make it active (last: until then the old one is)."""
    store, model, repo = target.store, target.model, target.repo
    metrics = _run_metrics(config, prep, result, report, drift)
    layout = lora_config(model)  # the attached one: an older adapter may use another layout
    committing = time.perf_counter()
    try:
        version = repo.commit(
            model, layout,
            {"base_model": target.base_model_id, "rank": layout.rank, "keys": list(layout.keys), "loss": config.loss,
             "pairs": [p.id for p in prep.new], "sessions": list(session_ids), "metrics": _finite(metrics)},
            optimizer_state=result.optimizer_state, version=store.next_adapter_version(target.user_id),
        )
        store.add_adapter_version(
            target.user_id, str(repo.path(version)), target.base_model_id, metrics=_finite(metrics),
            parent_version=prep.previous, status="active", version=version,
        )
        store.mark_pairs_used([p.id for p in prep.new], version)
        store.finish_training_run(prep.run_id, "ok", decision.reason, _finite(metrics), adapter_version=version)
    except BaseException as e:  # disk full, killed, ...: the old adapter stays, the run says why
        set_lora_weights(model, prep.old_weights)
        store.finish_training_run(prep.run_id, "failed", f"commit failed: {e}"[:300])
        raise
    report.committed, report.reason, report.version = True, decision.reason, version
    prep.timings["commit"] = time.perf_counter() - committing
    return report


def _run_metrics(config: LearningConfig, prep: _Prepared, result: TrainResult, report: UpdateReport, drift: float) -> dict:
    """The numbers the gate decided on, stored with the training run whatever it decided (and with the version)."""
    return {
        "loss": config.loss, "steps": result.steps, "seconds": round(report.seconds, 2), "losses": result.losses,
        "new_pairs": len(prep.new), "val_before": prep.before, "val_after": report.after,
        "retention_ratio": report.retention_ratio, "lr": prep.lr, "drift": drift, "stopped": result.stopped_reason,
        "planned_steps": result.planned, "scale": report.scale,
        "profile_fit_before": report.profile_fit[0], "profile_fit_after": report.profile_fit[1],
        "answer_failures": report.answer_failures, "answer_notes": list(report.answer_notes),
        "timings": {k: round(v, 2) for k, v in prep.timings.items()},  # the update's expected time (`asls train`)
    }


def _store_references(target: UpdateTarget, pairs, refs: dict, stored: set, args: TrainingArgs) -> None:
    """Persist the reference log-probs computed in this update beside their pairs: under the key of the pair as
    trained and, where it differs (``sft_on_change`` moves an added line's shared head into the context), as the
    held-out check reads it (``preference_metrics``), or the held-out pairs' were computed again every update."""
    rows = []
    for p in pairs:
        keys = {encode_pair(target.tokenizer, p, args.max_length, args.pair_system, shared_head).key
                for shared_head in {args.sft_on_change, False}}
        rows += [(p.id, key, *refs[key]) for key in keys if p.id is not None and key in refs and key not in stored]
    if rows:
        target.store.add_reference_logps(target.base_model_id, rows)


def _reject(target: UpdateTarget, prep: _Prepared, report: UpdateReport, reason: str, status: str,
            metrics: dict | None = None) -> UpdateReport:
    set_lora_weights(target.model, prep.old_weights)  # the live model goes back to the old adapter exactly
    # without the gate's numbers (cancelled, no step ran): what there is, so `asls adapters --runs` can show it
    metrics = metrics or {"losses": report.losses, "steps": report.steps, "new_pairs": report.new_pairs,
                          "stopped": report.stopped, "planned_steps": report.planned_steps,
                          "val_before": report.before, "seconds": round(report.seconds, 2),
                          "timings": {k: round(v, 2) for k, v in prep.timings.items()}}
    target.store.finish_training_run(report.run_id, status, reason, _finite(metrics))
    report.reason = reason
    return report


def _no_pause() -> float:
    return 0.0


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


__all__ = ["UpdateReport", "UpdateTarget", "activate_version", "helpful_chosen", "update_adapter"]
