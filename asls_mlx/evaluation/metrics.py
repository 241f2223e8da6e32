"""Evaluation metrics: edit cost, satisfaction, quality pass rate, template share, profile leaks,
retention, sessions to recover.

Satisfaction counts only helpful answers: every metric applies the quality guard
(``profiling.quality.quality_issues``: empty, looping, refusing, off-topic, hollow, evasive, content or items
dropped, no label picked, input copied as a summary, an e-mail without its body, the task offered or announced
instead of done, a text no shorter than the one to shorten, a citation with no surname first, profile leak), and on
held-out answers Python code that fails its prompt's test cases (``code_check``) or a SQL query that gives the wrong
rows on its prompt's database (``sql_check``) and an answer that is not the right one its prompt's answer key holds
(``answer_key``: a fact, a classification's label, a shell command), itself, whatever
the persona checks, so an answer in the user's style that stops doing the task ("The answer is:" and nothing else,
the profile text echoed) scores 0 satisfaction and costs a full rewrite (edit cost 1.0); it never counts as a success.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from asls_mlx.evaluation.answer_key import ANSWER_ISSUE, wrong_answer
from asls_mlx.evaluation.code_check import CODE_ISSUE, wrong_code
from asls_mlx.evaluation.sql_check import wrong_sql
from asls_mlx.profiling.features import word_count
from asls_mlx.profiling.quality import quality_issues

from asls_mlx.profiling.quality import collapsed_opening, opening, template_share

LEAK_ISSUE = "profile_leak"
IRRELEVANT_ISSUE = "irrelevant"  # the base model's PMI says the answer is not about its prompt
TEMPLATE_ISSUE = "template"  # opens with the template the arm's answers collapsed to
TEMPLATE_MARGIN = 0.10  # the issue's rule: the most common opening's share may exceed the base model's by 10 points

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


def is_helpful(prompt: str, answer: str) -> bool:
    """No quality issue: the only answers that may count as satisfying."""
    return not quality_issues(prompt, answer)


def helpful_satisfaction(persona, prompt: str, answer: str, session: int | None = None) -> float:
    """The persona's score, 0 when the answer has any quality issue (the persona's own guard may be
    older than the quality checks, so the metric does not rely on it)."""
    return persona.satisfies(prompt, answer, session) if is_helpful(prompt, answer) else 0.0


def answers_template_share(answers: list[str]) -> float:
    """Share of answers opening with the most common first three words."""
    return template_share(answers)


def template_opening(answers: list[str], base_share: float | None, margin: float = TEMPLATE_MARGIN) -> str | None:
    """The opening these answers collapsed to (``quality.collapsed_opening``), when the base model's share on the
    same prompts is known; else None. Every answer with it then counts as a failure (a learnt template, not an
    answer)."""
    if base_share is None or base_share != base_share:
        return None
    return collapsed_opening(answers, base_share, margin)


def turn_edit_cost(persona, prompt: str, answer: str, session: int | None = None) -> float:
    """What this answer costs the persona to fix: 0 if satisfied, 1 if degenerate, else edit distance."""
    if not is_helpful(prompt, answer):
        return 1.0
    return edit_cost(answer, persona.edit(prompt, answer, session))


def mean(xs) -> float:
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else float("nan")


@dataclass(frozen=True)
class HeldoutScore:
    """Greedy answers to held-out prompts scored for one persona.

    satisfaction: mean persona score over the prompts its rules apply to (0 for any quality issue).
    success_rate: share of those answers that fully satisfy (score 1 and quality guard passed).
    quality_pass: share of all answers that pass the quality guard.
    edit_cost: mean ``turn_edit_cost``.
    words: mean answer length in words.
    n: number of scored prompts.
    template_share: share of all answers opening with the most common first three words.
    leak_rate: share of all answers with the ``profile_leak`` issue (talk about the user or the profile).
    issues: how many answers have each quality issue (``irrelevant`` and ``template`` included when judged).
    irrelevant_rate: share of all answers the relevance check flagged (nan when not judged).
    per_prompt: each scored prompt's satisfaction, in order (the unit of the confidence intervals).
    """

    satisfaction: float
    success_rate: float
    quality_pass: float
    edit_cost: float
    words: float
    n: int
    template_share: float = float("nan")
    leak_rate: float = 0.0
    issues: dict = field(default_factory=dict)
    irrelevant_rate: float = float("nan")
    per_prompt: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def score_heldout(persona, prompts: list[str], answers: list[str], session: int | None = None,
                  irrelevant: list[bool] | None = None, base_template_share: float | None = None) -> HeldoutScore:
    """Score answers (one per prompt) for ``persona`` under the preferences active in ``session``.

    irrelevant: per answer, whether the relevance check (the base model's PMI) flagged it; a flagged answer
    has the ``irrelevant`` issue. An answer whose Python code fails its prompt's test cases, or whose SQL gives the
    wrong rows on its prompt's database, has the ``wrong_code`` issue (``code_check``, ``sql_check``); one that
    is not the right answer its prompt's answer key holds (a fact, a label, a command), ``wrong_answer``.
    base_template_share: the base model's template share on these prompts; when
    the answers collapse to a template (``template_opening``), each answer with it has the ``template`` issue.
    An answer with any issue scores 0 satisfaction and edit cost 1.
    """
    rows = list(zip(prompts, answers))
    template = template_opening(list(answers), base_template_share)
    found = [quality_issues(p, a) for p, a in rows]
    for i, (p, a) in enumerate(rows):
        if irrelevant is not None and irrelevant[i]:
            found[i] = found[i] + [IRRELEVANT_ISSUE]
        if template is not None and " ".join(opening(a)) == template:
            found[i] = found[i] + [TEMPLATE_ISSUE]
        if wrong_code(p, a) or wrong_sql(p, a):
            found[i] = found[i] + [CODE_ISSUE]
        if wrong_answer(p, a):
            found[i] = found[i] + [ANSWER_ISSUE]
    issues: dict[str, int] = {}
    for name in (i for f in found for i in f):
        issues[name] = issues.get(name, 0) + 1
    scored = [(p, a, f) for (p, a), f in zip(rows, found) if persona.applies(p, session)] or [
        (p, a, f) for (p, a), f in zip(rows, found)]
    sats = [0.0 if f else persona.satisfies(p, a, session) for p, a, f in scored]
    costs = [1.0 if f else edit_cost(a, persona.edit(p, a, session)) for p, a, f in scored]
    return HeldoutScore(
        satisfaction=mean(sats),
        success_rate=mean([1.0 if s >= 1.0 else 0.0 for s in sats]),
        quality_pass=mean([0.0 if f else 1.0 for f in found]),
        edit_cost=mean(costs),
        words=mean([word_count(a) for _, a in rows]),
        n=len(scored),
        template_share=answers_template_share(list(answers)),
        leak_rate=mean([1.0 if LEAK_ISSUE in f else 0.0 for f in found]),
        issues=issues,
        irrelevant_rate=mean([1.0 if x else 0.0 for x in irrelevant]) if irrelevant is not None else float("nan"),
        per_prompt=sats,
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
