"""The gate's answer check: the new adapter's greedy answers to the user's own prompts and to fixed probe questions,
judged against the old weights' and the base model's answers to the same prompts (``answer_check``).

The answers are decoded in one batch where the caller can give each row its own adapter weights
(``GateChecks.answers_with``), else set after set with the weights swapped in. An answer is judged by the quality
guard (``profiling.quality``, ``GateChecks.quality_issues``) and by its relevance (the base model's PMI,
``GateChecks.relevance``, computed once per answer); the counts are net of answers that got better, and a few
flips on a handful of prompts are noise (``BASE_FLOOR``, ``PROBE_FLOOR``, ``RELEVANCE_MARGIN``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

from asls_mlx.adaptation.gate import (
    BASE_FLOOR, MIN_TEMPLATE_PROMPTS, PROBE_FLOOR, RELEVANCE_MARGIN, AnswerFn, GateChecks, RelevanceFn,
)
from asls_mlx.adaptation.relevance import irrelevant


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
                 old_weights: dict | None = None) -> AnswerCheck:
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
    ``old_weights``: the old adapter's weights, for ``checks.answers_with``: then the new, old and base ({}: no
    adapter) answers are decoded in one batch instead of one set after another with the weights swapped in.
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
                  checks, {"old": swap_to_old, "base": swap_to_base}, old_weights)
    new, known = got["new"], {**known, **got["old"]}
    base = {**got["base"], **given} if chain else known
    if probes and not base_probes and checks.base_probe_answers is not None:  # keep them for the next update
        checks.base_probe_answers(probes, lambda qs: [base[q] for q in qs])
    after, before = [new[q] for q in prompts], [known[q] for q in prompts]
    _judge_relevance_once(checks, prompts, after, before, [base[q] for q in prompts] if chain else before)
    notes: list[str] = []
    failures = _net_worse(prompts, before, after, checks, notes, "the old adapter")
    if template := _collapses(after, before, checks):
        failures += 1
        notes.append(f"template collapse: the new adapter's {len(after)} answers open {template} far more often than "
                     f"the old one's")
    if chain:
        failures += _below_base(prompts, [base[q] for q in prompts], after, checks, notes)
    failures += _probe_failures(probes, [base[q] for q in probes], [new[q] for q in probes], checks, notes)
    if checks.profile_score is None:
        return AnswerCheck(failures, None, None, notes, answers_before=known, answers_base=base, answers_after=new)
    fit = [(checks.profile_score(q, b), checks.profile_score(q, a)) for q, b, a in zip(prompts, before, after)]
    return AnswerCheck(failures, sum(f[0] for f in fit) / len(fit), sum(f[1] for f in fit) / len(fit), notes, fit,
                       known, base, new)


def _decode(want: dict[str, list[str]], checks: GateChecks, swaps: dict, old_weights: dict | None) -> dict:
    """{whose: {prompt: answer}} for the prompts ``want`` answered by the new weights, the old and the base
    model's: in one batch with ``checks.answers_with`` and ``old_weights``, else set after set with the weights
    swapped in (new first)."""
    if checks.answers_with is not None and old_weights is not None:
        weights = {"new": None, "old": old_weights, "base": {}}
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
    if template := _collapses(after, base, checks):
        notes.append(f"template collapse: the new adapter's {len(after)} answers open {template} far more often than "
                     f"the base model's")
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
    if template := _collapses(after, base, checks):
        notes.append(f"template collapse: the new adapter's answers to the {len(probes)} probe questions open "
                     f"{template} far more often than the base model's")
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


def _collapses(after: list[str], reference: list[str], checks: GateChecks) -> str:
    """How ``after`` opens, quoted ('"the answer is"'), when it opens with one template far more often than
    ``reference`` (judged on MIN_TEMPLATE_PROMPTS answers or more); else "". The reason names the opening: a user
    who asked for one ("In short: ...") can see whether the gate took it for a template."""
    if not checks.template_collapse or len(after) < MIN_TEMPLATE_PROMPTS:
        return ""
    template = checks.template_collapse(after, reference)
    return f'"{template}"' if template else ""


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


__all__ = ["AnswerCheck", "answer_check", "remembered_pmi"]
