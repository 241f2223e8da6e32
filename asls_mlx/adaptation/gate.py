"""The commit gate: a new adapter replaces the active one only if nothing got worse.

Over-optimising a small model on a handful of pairs gives repetition loops and refusals before it
gives anything else, and preference accuracy on log-probs does not see them. So the gate checks, in
order of cost: divergence and non-finite numbers, forgetting (general-text perplexity within a bound of
the base model's), held-out preference (not significantly worse than before: a handful of held-out pairs is
noise, not evidence, so a sign test decides), and then — generating — the answers the old and the new adapter give
to the user's own prompts: no new quality failures (``profiling.quality``), no collapse to one template, a fit to the
profile not worse; and fixed probe questions and tasks, done right by the base model, not done worse by the new
adapter (what a session asked says little about what an adapter forgot).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

from asls_mlx.adaptation.harm import HARM_ALPHA, MIN_HELDOUT_PAIRS, heldout_harm, profile_fit_harm, sign_test_p

AnswerFn = Callable[[list[str]], list[str]]  # greedy answers to prompts with the model's current weights
ScoreFn = Callable[[str, str], float]  # (prompt, answer) -> how well it fits the user's profile, 0..1
QualityFn = Callable[[str, str], list]  # (prompt, answer) -> what is wrong with the answer (empty: nothing)
RelevanceFn = Callable[[list[str], list[str]], list[float]]  # (prompts, answers) -> each answer's PMI per token
# (new answers, old answers) -> the opening the new ones collapse to ("the answer is"), or None
CollapseFn = Callable[[list[str], list[str]], str | None]
# Template collapse is judged on 4 answers or more: profiling's rule wants 3 answers alike, and on 3 prompts
# that is every answer, which three similar questions ("capital of ...?") give honestly.
MIN_TEMPLATE_PROMPTS = 4
# A band of this half-width around the relevance threshold where no answer changes its verdict in the gate: the new
# answer must fall below the threshold by this much and the old one have cleared it by as much (the quick eval's
# concise user lost an update to "How do I boil an egg?" -> "1. First, you need to bring the water to a rolling
# boil ...", PMI 0.73 -> 0.49 at threshold 0.5). The calibration run flags 95% of swapped answers at 0.4 as at 0.5.
RELEVANCE_MARGIN = 0.1
# In the session gate (six prompts) a learnt template must open this much larger a share of the answers than before:
# two more of six alike, not one (the quick eval's follow-up user: v3 opened 8 of 12 "Here's how you can add ...").
GATE_TEMPLATE_MARGIN = 0.3
# Against the base model (a chain of adapters), a new adapter is rejected when this many more of its answers fail:
# one answer flips by chance with any change of weights, and the base model's answers were never chosen by the gate.
BASE_FLOOR = 2
# On the fixed probe questions, a new adapter is rejected when this many more of its answers are wrong than the base
# model's: the quick eval's follow-up user ended with an adapter that opened 8 of 12 answers "Would you like ..." and
# kept 30% of the base model's correctness, while its answers to the session's own few prompts still passed.
PROBE_FLOOR = 2


@dataclass
class GateChecks:
    """What the gate may generate and judge beyond log-probs; each part is optional.

    ``answers_before``: the old adapter's greedy answers to (some of) the gate's prompts, if the caller
    already has them (decoded alongside the self-labelled samples); the rest are generated.
    ``template_collapse``: the opening the new adapter's answers share far more often than the old one's (each
    answer alone may pass the quality guard; together they show a learnt template); the gate's reason quotes it.
    ``relevance``: the base model's PMI of each answer with its prompt (``adaptation.relevance.answer_pmi``):
    whether an answer is about its prompt, whatever its length or form.
    ``probes``: fixed questions beyond the user's (question -> whether an answer to it is right), answered by the
    new adapter and the base model: what the user asked in a session says little about what an adapter forgot.
    ``training_texts``: the retention term's texts when they are not ``general_texts`` (answer anchors mixed in).
    ``base_probe_answers``: (probes, their decoder with the base weights) -> the base model's answers, from a cache.
    ``answers_base``: the base model's answers to (some of) the gate's prompts and probes, if the caller has them
    (a rejected update's second try is judged against the same).
    ``answers_with``: ``answer_fn`` with each prompt's adapter weights (``engine.row_lora``: None the model's as they
    stand, {} none): the new, old and base answers in one batch (a batch of 2 rows costs half of one of 24).
    """

    general_texts: list[str] = field(default_factory=list)
    training_texts: list[str] | None = None
    answer_fn: AnswerFn | None = None
    profile_score: ScoreFn | None = None
    quality_issues: QualityFn | None = None
    answers_before: dict[str, str] | None = None
    template_collapse: CollapseFn | None = None
    relevance: RelevanceFn | None = None
    probes: dict[str, Callable[[str], bool]] = field(default_factory=dict)
    base_probe_answers: Callable[[list[str], AnswerFn], list[str]] | None = None
    answers_base: dict[str, str] | None = None
    answers_with: Callable[[list[str], list], list[str]] | None = None


@dataclass(frozen=True)
class GateDecision:
    commit: bool
    reason: str


def _finite(*xs) -> bool:
    return all(isinstance(x, (int, float)) and math.isfinite(x) for x in xs)


def gate(
    before: dict,
    after: dict,
    retention_ratio: float,
    bound: float = 1.10,
    diverged: bool = False,
    quality_failures: int = 0,
    max_quality_failures: int = 0,
    require_validation: bool = True,
    tolerance: float = 1e-6,
    quality_notes: tuple = (),
) -> GateDecision:
    """Commit the new adapter only if nothing got worse. ``before``/``after``: ``preference_metrics``.

    Rejects (first reason wins): divergence; non-finite numbers; retention ratio above ``bound``;
    more quality failures than allowed (``quality_notes`` go into the reason); no held-out pairs (unless
    ``require_validation=False``); held-out preference significantly worse (``heldout_harm``).
    """
    if diverged:
        return GateDecision(False, "training diverged (NaN/inf or exploding loss)")
    if not _finite(retention_ratio):
        return GateDecision(False, f"retention perplexity ratio is not finite ({retention_ratio})")
    if retention_ratio > bound:
        return GateDecision(False, f"general-text perplexity rose {retention_ratio:.3f}x (bound {bound:.2f}x): forgetting")
    if quality_failures > max_quality_failures:
        notes = "".join(f"; {note}" for note in quality_notes[:2])  # all of them are in the run's metrics
        notes += f"; {len(quality_notes) - 2} more" if len(quality_notes) > 2 else ""
        # a failure: one of the user's answers newly broken, or the template, below-base or probe check failed
        failures = f"{quality_failures} new failure" + ("s" if quality_failures != 1 else "")
        return GateDecision(False, f"the new adapter's answers are worse ({failures}, max {max_quality_failures}){notes}")
    n = min(before.get("n", 0), after.get("n", 0))
    if n == 0:
        if require_validation:
            return GateDecision(False, "no held-out pairs to validate on")
        return GateDecision(True, f"no held-out pairs; retention ratio {retention_ratio:.3f}")
    b_acc, b_m, a_acc, a_m = before["accuracy"], before["margin"], after["accuracy"], after["margin"]
    if not _finite(b_acc, b_m, a_acc, a_m):
        return GateDecision(False, "held-out preference metrics are not finite")
    harm = heldout_harm(before, after, tie=tolerance)
    if harm:
        return GateDecision(False, harm)
    return GateDecision(True, f"accuracy {b_acc:.3f} -> {a_acc:.3f}, margin {b_m:.4f} -> {a_m:.4f} on {n} held-out pairs, "
                              f"retention {retention_ratio:.3f}x")


def first_prompts(pairs, n: int) -> list[str]:
    """The first ``n`` distinct prompts of ``pairs``, in order."""
    return list(dict.fromkeys(p.prompt for p in pairs))[:n]


def gate_prompts(store, user_id: int, config) -> list[str]:
    """The user's prompts the commit gate answers with the old and the new adapter: held-out first,
    then those of the pairs not trained on yet (``config``: a ``LearningConfig``)."""
    pairs = wanted(store.pairs(user_id, split="val"), config) + wanted(store.pairs(user_id, split="train", unused_only=True), config)
    return first_prompts(pairs, config.quality_prompts)


def wanted(pairs, config) -> list:
    """The pairs of the sources ``config.pair_sources`` trains on (None: all)."""
    return [p for p in pairs if config.pair_sources is None or p.source in config.pair_sources]


__all__ = ["BASE_FLOOR", "GATE_TEMPLATE_MARGIN", "HARM_ALPHA", "MIN_HELDOUT_PAIRS", "PROBE_FLOOR", "AnswerFn", "CollapseFn", "GateChecks", "GateDecision", "QualityFn", "RelevanceFn", "ScoreFn", "first_prompts", "gate",
           "gate_prompts", "heldout_harm", "profile_fit_harm", "sign_test_p", "wanted"]
