"""Correctness kept, over a set of questions: the share answered right, per category, and against the base
model's. The questions and the checker are ``asls_mlx.correctness`` (see its doc for each rule); the names
are re-exported here for the evaluation's readers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from asls_mlx.correctness import (CATEGORIES, DEFAULT_SYSTEM, MAX_TOKENS, VERDICTS, CorrectnessItem, is_correct, judge,
                                  load_correctness_set, load_gate_probes, tokens)


def _check_lengths(items: Sequence[CorrectnessItem], *answer_lists: Sequence[str]) -> None:
    for answers in answer_lists:
        if len(answers) != len(items):
            raise ValueError(f"{len(answers)} answers for {len(items)} questions")


def correctness_rate(items: Sequence[CorrectnessItem], answers: Sequence[str]) -> float:
    """Share of ``answers`` (one per item, in order) judged correct; nan for no items."""
    _check_lengths(items, answers)
    if not items:
        return float("nan")
    return sum(is_correct(it, a) for it, a in zip(items, answers)) / len(items)


def accuracy_by_category(items: Sequence[CorrectnessItem], answers: Sequence[str]) -> dict[str, float]:
    """``correctness_rate`` per category present in ``items``, in ``CATEGORIES`` order."""
    _check_lengths(items, answers)
    out = {}
    for cat in CATEGORIES:
        pairs = [(it, a) for it, a in zip(items, answers) if it.category == cat]
        if pairs:
            out[cat] = correctness_rate([p[0] for p in pairs], [p[1] for p in pairs])
    return out


def base_accuracy_kept(base_answers: Sequence[str], adapted_answers: Sequence[str],
                       items: Sequence[CorrectnessItem]) -> float:
    """Adapted accuracy / base accuracy on the same items (1.0: all kept; the issue's bar is 0.97).
    nan when the base model gets nothing right: there is no accuracy to keep, so no ratio."""
    _check_lengths(items, base_answers, adapted_answers)
    base = correctness_rate(items, base_answers)
    if not base or math.isnan(base):
        return float("nan")
    return correctness_rate(items, adapted_answers) / base


def correctness_flips(items: Sequence[CorrectnessItem], base_answers: Sequence[str],
                      adapted_answers: Sequence[str]) -> tuple[int, int]:
    """(turned wrong, turned right): the items the base model answers right and the adapted model wrong, and the
    reverse. Accuracy kept is their net; the two counts tell a loss from churn (a one-sided sign test on them)."""
    _check_lengths(items, base_answers, adapted_answers)
    verdicts = [(is_correct(it, b), is_correct(it, a)) for it, b, a in zip(items, base_answers, adapted_answers)]
    return sum(b and not a for b, a in verdicts), sum(a and not b for b, a in verdicts)


def answer_correctness_set(engine, items: Sequence[CorrectnessItem], system: str = DEFAULT_SYSTEM,
                           max_tokens: int = MAX_TOKENS) -> list[str]:
    """Greedy answers of ``engine`` (a ``ChatEngine``, adapter as loaded) to every question, batched:
    how the baseline in the module doc was measured."""
    from asls_mlx.engine.sampling import greedy_answers

    return greedy_answers(engine, [it.question for it in items], system, max_tokens=max_tokens)


__all__ = ["CATEGORIES", "DEFAULT_SYSTEM", "MAX_TOKENS", "VERDICTS", "CorrectnessItem", "accuracy_by_category",
           "answer_correctness_set", "base_accuracy_kept", "correctness_flips", "correctness_rate", "is_correct", "judge",
           "load_correctness_set", "load_gate_probes", "tokens"]
