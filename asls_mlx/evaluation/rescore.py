"""Score an earlier eval's held-out answers again under today's quality checks.

When the checks learn a new failure (``content_dropped``), a stored run's answers can be judged by them
without running the users again: the answers, and each answer's relevance (PMI, from the base model), are in
``results.json``. Only the held-out scores change: the simulated users of that run reacted to the old checks
while they chatted, so a new run is still the measurement; this shows how much of an old figure the new check
takes away.
"""

from __future__ import annotations

from asls_mlx.evaluation.personas import get_persona
from asls_mlx.evaluation.results import EvalResult
from asls_mlx.evaluation.runner import heldout_record


def _base_answers(result: EvalResult, persona: str, seed) -> dict[str, str]:
    """The base model's answers to a persona's held-out prompts: the base arm's, or any arm's session 0."""
    runs = [r for r in result.runs if r["persona"] == persona and r.get("seed") == seed]
    runs.sort(key=lambda r: r["arm"] != "base")
    return {p: a for r in runs[:1] for p, a in zip(r["heldout_prompts"], r["sessions"][0]["answers"])}


def rescore(result: EvalResult) -> EvalResult:
    """A copy of ``result`` whose held-out scores (``sessions[i]["heldout"]``) are computed again from the
    stored answers with the current quality checks, the stored relevance and the base model's answers
    (``runner.heldout_record``, as the run itself scored them)."""
    runs = []
    for run in result.runs:
        persona, prompts = get_persona(run["persona"]), run["heldout_prompts"]
        base = _base_answers(result, run["persona"], run.get("seed"))
        known = [base.get(p) for p in prompts]
        sessions = [dict(s, heldout=heldout_record(persona, prompts, s["answers"], s["session"],
                                                   s["heldout"].get("pmi"), known)) for s in run["sessions"]]
        runs.append(dict(run, sessions=sessions))
    return EvalResult(config=result.config, runs=runs, seconds=result.seconds)
