"""Evaluation metrics: edit cost, satisfaction, quality pass rate, retention, sessions to recover.

Every metric applies the quality guard (``profiling.quality``): a degenerate answer scores 0
satisfaction and costs a full rewrite (edit cost 1.0); it never counts as a success.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from asls_mlx.profiling.features import word_count
from asls_mlx.profiling.quality import is_acceptable

_TOKEN = re.compile(r"\w+|[^\w\s]")


def edit_tokens(text: str) -> list[str]:
    """Word and punctuation tokens: the unit the edit distance counts (a newline-only change is free)."""
    return _TOKEN.findall(text or "")


def levenshtein(a: list, b: list) -> int:
    """Edit distance (insert, delete, substitute; each costs 1) between two sequences."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def edit_cost(answer: str, edited: str) -> float:
    """Normalised token-level Levenshtein distance in [0, 1] between an answer and the user's edit of it.

    0 when the user accepts the answer as is. This is the PRELUDE/CIPHER user-edit cost (Gao et al.,
    NeurIPS 2024), normalised by the longer text so answers of any length compare.
    """
    a, b = edit_tokens(answer), edit_tokens(edited)
    if not a and not b:
        return 0.0
    return levenshtein(a, b) / max(len(a), len(b))


def turn_edit_cost(persona, prompt: str, answer: str, session: int | None = None) -> float:
    """What this answer costs the persona to fix: 0 if satisfied, 1 if degenerate, else edit distance."""
    if not is_acceptable(prompt, answer):
        return 1.0
    return edit_cost(answer, persona.edit(prompt, answer, session))


def mean(xs) -> float:
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else float("nan")


@dataclass(frozen=True)
class HeldoutScore:
    """Greedy answers to held-out prompts scored for one persona.

    satisfaction: mean persona score over the prompts its rules apply to (0 for degenerate answers).
    success_rate: share of those answers that fully satisfy (score 1 and quality guard passed).
    quality_pass: share of all answers that pass the quality guard.
    edit_cost: mean ``turn_edit_cost``.
    words: mean answer length in words.
    n: number of scored prompts.
    """

    satisfaction: float
    success_rate: float
    quality_pass: float
    edit_cost: float
    words: float
    n: int

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def score_heldout(persona, prompts: list[str], answers: list[str], session: int | None = None) -> HeldoutScore:
    """Score answers (one per prompt) for ``persona`` under the preferences active in ``session``."""
    rows = list(zip(prompts, answers))
    applicable = [(p, a) for p, a in rows if persona.applies(p, session)] or rows
    sats = [persona.satisfies(p, a, session) for p, a in applicable]
    return HeldoutScore(
        satisfaction=mean(sats),
        success_rate=mean([1.0 if s >= 1.0 else 0.0 for s in sats]),
        quality_pass=mean([1.0 if is_acceptable(p, a) else 0.0 for p, a in rows]),
        edit_cost=mean([turn_edit_cost(persona, p, a, session) for p, a in applicable]),
        words=mean([word_count(a) for _, a in rows]),
        n=len(applicable),
    )


def retention_ratio(ppl_adapted: float, ppl_base: float) -> float:
    """Perplexity of general text with the adapter / without it (1.0: nothing forgotten; 1.03: +3%)."""
    if not ppl_base or ppl_base != ppl_base:
        return float("nan")
    return ppl_adapted / ppl_base


def sessions_to_recover(curve: list[float], drift_at: int, threshold: float | None = None) -> int | None:
    """Sessions after a preference switch until held-out satisfaction (new preference) recovers.

    curve: satisfaction after session s at index s (index 0 = before session 1), scored under the
        preference active in that session.
    drift_at: the first session (1-based) of the new preference.
    threshold: the level that counts as recovered; default: the best level reached before the switch
        minus 0.1 (at least 0.5), i.e. "as satisfied as before the drift".
    Returns k (1 = recovered right after the first session with the new preference) or None if never.
    """
    if threshold is None:
        before = [x for x in curve[1:drift_at] if x == x]
        threshold = max(0.5, (max(before) if before else 0.5) - 0.1)
    for s in range(drift_at, len(curve)):
        if curve[s] >= threshold:
            return s - drift_at + 1
    return None
