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
from dataclasses import dataclass, field, replace
from typing import Callable

from asls_mlx.adaptation.harm import HARM_ALPHA, MIN_HELDOUT_PAIRS, heldout_harm, profile_fit_harm, sign_test_p
from asls_mlx.adaptation.relevance import irrelevant

AnswerFn = Callable[[list[str]], list[str]]  # greedy answers to prompts with the model's current weights
ScoreFn = Callable[[str, str], float]  # (prompt, answer) -> how well it fits the user's profile, 0..1
QualityFn = Callable[[str, str], list]  # (prompt, answer) -> what is wrong with the answer (empty: nothing)
RelevanceFn = Callable[[list[str], list[str]], list[float]]  # (prompts, answers) -> each answer's PMI per token
CollapseFn = Callable[[list[str], list[str]], bool]  # (new answers, old answers) -> do the new ones collapse to a template?
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
    ``template_collapse``: whether the new adapter's answers open with one template far more often than
    the old one's (each answer alone may pass the quality guard; together they show a learnt template).
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


class AnswerCheck(tuple):
    """``answer_check``'s result: unpacks as (failures, fit_before, fit_after); ``notes`` names the failures
    that are not one answer's (template collapse), for the gate's reason; ``fits``: each prompt's
    (profile fit before, after); ``answers_before``: the old weights' answers it judged against, given or
    generated, so a second check against the same old weights need not decode them again; ``answers_base``: the
    same for the base model's; ``answers_after``: the new weights' (kept with the version if it is committed)."""

    notes: tuple = ()
    fits: tuple = ()
    answers_before: dict = {}
    answers_base: dict = {}
    answers_after: dict = {}

    def __new__(cls, failures: int, fit_before: float | None, fit_after: float | None, notes=(), fits=(),
                answers_before: dict | None = None, answers_base: dict | None = None,
                answers_after: dict | None = None):
        result = super().__new__(cls, (failures, fit_before, fit_after))
        result.notes, result.fits, result.answers_before = tuple(notes), tuple(fits), dict(answers_before or {})
        result.answers_base, result.answers_after = dict(answers_base or {}), dict(answers_after or {})
        return result


def answer_check(prompts: list[str], checks: GateChecks, swap_to_old: Callable[[], Callable[[], None]],
                 swap_to_base: Callable[[], Callable[[], None]] | None = None,
                 loras: tuple[dict, dict] | None = None) -> AnswerCheck:
    """Answer the user's own prompts greedily with the new adapter, then with the old one.

    ``swap_to_old()`` puts the old adapter's weights in and returns the function that puts the new ones
    back. Returns (failures, mean profile fit before, after): failures are the answers that fail the
    quality guard or the relevance check now but did not before, less those that failed before and pass now,
    plus one when the new answers collapse to a template and the old ones did not (``checks.template_collapse``,
    judged only on MIN_TEMPLATE_PROMPTS or more prompts), plus one when the new answers are worse than the base
    model's by BASE_FLOOR answers or more or collapse to a template against the base model's (``swap_to_base``,
    given when the old adapter is not the base model: measured against the active version only, a chain of
    adapters can drift a little at a time), plus one when the new adapter answers the probe questions
    (``checks.probes``) worse than the base model (``_probe_failures``). The probes ride in the same batches.
    ``loras``: the old and the base model's adapter weights, for ``checks.answers_with``: then the new, old and
    base answers are decoded in one batch instead of one set after another with the weights swapped in.
    """
    if not prompts or checks.answer_fn is None:
        return AnswerCheck(0, None, None)
    # the new answers are judged against the old adapter's and again against the base model's: their PMI once
    checks = replace(checks, relevance=remembered_pmi(checks.relevance))
    probes = [q for q in checks.probes if q not in prompts]
    chain = swap_to_base is not None  # else the old weights are the base model's: they answer the probes too
    base_probes = _kept_base_probe_answers(probes, checks)
    known = {**({} if chain else base_probes), **(checks.answers_before or {})}
    given = {**(checks.answers_base or {}), **base_probes}
    got = _decode({"new": prompts + probes,
                   "old": [q for q in prompts + ([] if chain else probes) if q not in known],
                   "base": [q for q in prompts + probes if q not in given] if chain else []},
                  checks, {"old": swap_to_old, "base": swap_to_base}, loras)
    new, known = got["new"], {**known, **got["old"]}
    base = {**got["base"], **given} if chain else known
    if probes and not base_probes and checks.base_probe_answers is not None:  # keep them for the next update
        checks.base_probe_answers(probes, lambda qs: [base[q] for q in qs])
    after, before = [new[q] for q in prompts], [known[q] for q in prompts]
    _judge_relevance_once(checks, prompts, after, before, [base[q] for q in prompts] if chain else before)
    notes: list[str] = []
    failures = _net_worse(prompts, before, after, checks, notes, "the old adapter")
    if _collapses(after, before, checks):
        failures += 1
        notes.append(f"template collapse: the new adapter's {len(after)} answers open alike far more often than the old one's")
    if chain:
        failures += _below_base(prompts, [base[q] for q in prompts], after, checks, notes)
    failures += _probe_failures(probes, [base[q] for q in probes], [new[q] for q in probes], checks, notes)
    if checks.profile_score is None:
        return AnswerCheck(failures, None, None, notes, answers_before=known, answers_base=base, answers_after=new)
    fit = [(checks.profile_score(q, b), checks.profile_score(q, a)) for q, b, a in zip(prompts, before, after)]
    return AnswerCheck(failures, sum(f[0] for f in fit) / len(fit), sum(f[1] for f in fit) / len(fit), notes, fit,
                       known, base, new)


def _decode(want: dict[str, list[str]], checks: GateChecks, swaps: dict, loras: tuple[dict, dict] | None) -> dict:
    """{whose: {prompt: answer}} for the prompts ``want`` answered by the new weights, the old and the base
    model's: in one batch with ``checks.answers_with`` and ``loras``, else set after set with the weights
    swapped in (new first)."""
    if checks.answers_with is not None and loras is not None:
        weights = {"new": None, "old": loras[0], "base": loras[1]}
        rows = [(whose, q) for whose, qs in want.items() for q in qs]
        got: dict = {whose: {} for whose in want}
        for (whose, q), answer in zip(rows, checks.answers_with([q for _, q in rows], [weights[w] for w, _ in rows])):
            got[whose][q] = answer
        return got
    got = {"new": dict(zip(want["new"], checks.answer_fn(want["new"])))}
    for whose in ("old", "base"):
        got[whose] = dict(zip(want[whose], _answers_with(swaps[whose], checks.answer_fn, want[whose]))) if want[whose] else {}
    return got


def _judge_relevance_once(checks: GateChecks, prompts: list[str], after: list[str], *others: list[str]) -> None:
    """Compute, in one call, the PMI of every answer the checks against the old and the base model's answers will
    read (the changed ones: ``_relevance_moves``); they then find it remembered."""
    if checks.relevance is None:
        return
    pairs = dict.fromkeys((q, x) for other in others for q, a, b in zip(prompts, after, other) if a != b for x in (a, b))
    if pairs:
        checks.relevance([q for q, _ in pairs], [x for _, x in pairs])


def _below_base(prompts: list[str], base: list[str], after: list[str], checks: GateChecks, notes: list) -> int:
    """1 when the new answers fail BASE_FLOOR or more answers more than the base model's, or collapse to a
    template against them; else 0."""
    base_notes: list[str] = []
    below = _net_worse(prompts, base, after, checks, base_notes, "the base model")
    if below >= BASE_FLOOR:
        notes.append(f"worse than the base model: {below} more of {len(prompts)} answers fail than the base "
                     f"model's to the same prompts" + "".join(f"; {n}" for n in base_notes[:1]))
        return 1
    if _collapses(after, base, checks):
        notes.append(f"template collapse: the new adapter's {len(after)} answers open alike far more often than the base model's")
        return 1
    return 0


def _probe_failures(probes: list[str], base: list[str], after: list[str], checks: GateChecks, notes: list) -> int:
    """1 when the new adapter gets PROBE_FLOOR or more probe questions wrong that the base model gets right (net of
    the reverse, as ``_net_worse`` counts; an answer with a quality issue counts as wrong), or its probe answers
    collapse to a template against the base model's; else 0."""
    if not probes:
        return 0
    issues = checks.quality_issues or (lambda q, a: [])

    def probe_issues(q: str, a: str) -> list:
        return list(issues(q, a)) + ([] if checks.probes[q](a) else ["wrong"])

    found: list[str] = []
    lost = _net_worse(probes, base, after, replace(checks, quality_issues=probe_issues, relevance=None), found,
                      "the base model")
    if lost >= PROBE_FLOOR:
        notes.append(f"forgets what the base model knew: {lost} more of {len(probes)} probe questions answered wrong "
                     f"than by the base model; {found[0]}")
        notes.extend(found[1:])  # the run's metrics keep every lost probe: a wrong check shows among them
        return 1
    if _collapses(after, base, checks):
        notes.append(f"template collapse: the new adapter's answers to the {len(probes)} probe questions open alike "
                     f"far more often than the base model's")
        return 1
    return 0


def remembered_pmi(relevance: RelevanceFn | None, known: dict | None = None) -> RelevanceFn | None:
    """``relevance`` computing each (prompt, answer)'s PMI once (an answer's PMI does not depend on the others'),
    into ``known`` ((prompt, answer) -> PMI; a new dict when not given)."""
    if relevance is None:
        return None
    known = {} if known is None else known

    def pmi(prompts: list[str], answers: list[str]) -> list[float]:
        todo = list(dict.fromkeys(pair for pair in zip(prompts, answers) if pair not in known))
        if todo:
            known.update(zip(todo, relevance([q for q, _ in todo], [a for _, a in todo])))
        return [known[pair] for pair in zip(prompts, answers)]

    return pmi


def _collapses(after: list[str], reference: list[str], checks: GateChecks) -> bool:
    """Whether ``after`` opens with one template far more often than ``reference`` (judged on MIN_TEMPLATE_PROMPTS
    answers or more)."""
    return bool(checks.template_collapse) and len(after) >= MIN_TEMPLATE_PROMPTS and checks.template_collapse(after, reference)


class _NotKept(Exception):
    pass


def _kept_base_probe_answers(probes: list[str], checks: GateChecks) -> dict:
    """The base model's answers to ``probes`` kept by ``checks.base_probe_answers``; {} when none are kept (they are
    then decoded in the gate's batch)."""
    if not probes or checks.base_probe_answers is None:
        return {}

    def not_kept(questions: list[str]) -> list[str]:
        raise _NotKept

    try:
        return dict(zip(probes, checks.base_probe_answers(probes, not_kept)))
    except _NotKept:
        return {}


def _answers_with(swap: Callable[[], Callable[[], None]], answer_fn: AnswerFn, prompts: list[str]) -> list[str]:
    """``answer_fn(prompts)`` with other weights swapped in (``swap()`` returns the function that swaps back)."""
    restore = swap()
    try:
        return answer_fn(prompts)
    finally:
        restore()


def _net_worse(prompts: list[str], before: list[str], after: list[str], checks: GateChecks, notes: list,
               whose: str) -> int:
    """How many more answers fail the quality guard or the relevance check in ``after`` than in ``before``
    (newly broken less newly mended); each newly failing answer is named in ``notes``."""
    issues = checks.quality_issues or (lambda q, a: [])
    worse: set[int] = set()
    fixed: set[int] = set()
    for i, (q, b, a) in enumerate(zip(prompts, before, after)):
        if issues(q, a) and not issues(q, b):
            worse.add(i)
            notes.append(f"{', '.join(issues(q, a))}: {_quote(q)} -> {_quote(a)}")
        elif issues(q, b) and not issues(q, a):
            fixed.add(i)
    if checks.relevance:
        _relevance_moves(prompts, before, after, checks.relevance, notes, worse, fixed)
    fixed -= worse
    # On a handful of prompts one answer of a small model flips (a loop, a near-threshold PMI) with any change of
    # weights, either way; they cancel.
    if fixed and worse:
        notes.append(f"{len(fixed)} answer(s) {whose} got wrong are now fine")
    return max(0, len(worse) - len(fixed))


def _relevance_moves(prompts: list[str], before: list[str], after: list[str], relevance: RelevanceFn,
                     notes: list, worse: set, fixed: set) -> None:
    """Add to ``worse`` the new answers that are clearly not about their prompt while the old answer clearly was
    (PMI below the threshold by ``RELEVANCE_MARGIN``, and above it by as much: near the threshold a flag flips by
    chance, as on a small or noisy model), and to ``fixed`` the reverse. Only answers that changed are judged, old and
    new in one call (their prompts are read once)."""
    changed = [i for i, (b, a) in enumerate(zip(before, after)) if a != b]
    if not changed:
        return
    qs = [prompts[i] for i in changed]
    pmi = relevance(qs + qs, [after[i] for i in changed] + [before[i] for i in changed])
    for i, a, b in zip(changed, pmi[: len(qs)], pmi[len(qs):]):
        if irrelevant(a + RELEVANCE_MARGIN) and not irrelevant(b - RELEVANCE_MARGIN):
            worse.add(i)
            notes.append(f"not about its prompt (PMI {a:.2f}, was {b:.2f}): {_quote(prompts[i])} -> {_quote(after[i])}")
        elif irrelevant(b + RELEVANCE_MARGIN) and not irrelevant(a - RELEVANCE_MARGIN):
            fixed.add(i)


def _quote(text: str, n: int = 60) -> str:
    """A short quote of a prompt or answer for a gate note (the run record keeps why, not whole answers)."""
    text = " ".join(str(text).split())
    return '"' + (text if len(text) <= n else text[: n - 1] + "…") + '"'


__all__ = ["BASE_FLOOR", "GATE_TEMPLATE_MARGIN", "HARM_ALPHA", "MIN_HELDOUT_PAIRS", "PROBE_FLOOR", "AnswerCheck", "AnswerFn", "CollapseFn", "GateChecks", "GateDecision", "QualityFn", "RelevanceFn", "ScoreFn", "answer_check", "first_prompts", "gate", "remembered_pmi",
           "gate_prompts", "heldout_harm", "profile_fit_harm", "sign_test_p", "wanted"]
