"""The quick eval's asls arm with learning settings changed: a training recipe measured against the default.

    python benchmarks/eval_recipe.py --set self_labelled_temperature=0.6 [--set loss=sft] [--seeds 0,1,2] [--baseline-seeds 2]
                                     [--baseline-from DIR [--baseline-arm ARM]] [--out benchmarks/results/eval-recipe]
    python benchmarks/eval_recipe.py --compare DIR [--baseline-from DIR] [--rescore]   # print the comparison again

Adds an arm ``asls+<settings>`` (the ``asls`` arm with those ``AssistantConfig`` or ``LearningConfig``
fields) and runs it with the ``asls eval --quick`` settings; ``--baseline-seeds`` also runs the unchanged
``asls`` arm on those seeds (for seeds whose default run is already on record elsewhere, leave them out and name
that eval's directory with ``--baseline-from``, and with ``--baseline-arm`` the recipe arm there that is today's
default). Same users, prompts and feedback draws as ``asls eval --quick --seeds ...``: runs of one
seed differ only by the recipe: the recipe arm's users are named as the default arm's, so the product splits
their pairs into train and validation alike (runs recorded before 2026-11-27 named them by the whole arm, and
their first updates already differed by that split). Prints each arm's satisfaction, correctness kept and commit rate,
and the recipe's paired difference to ``asls`` (same persona, seed and held-out prompt), with 95% intervals.
``--rescore`` first scores the stored held-out answers again with today's quality checks
(``asls_mlx.evaluation.rescore``), so runs made before a check existed compare with runs made after.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

import asls_mlx  # noqa: F401  (BLAS before mlx)
from asls_mlx.adaptation.config import LearningConfig
from asls_mlx.config import AssistantConfig
from asls_mlx.evaluation import runner
from asls_mlx.evaluation.rescore import rescore
from asls_mlx.evaluation.results import EvalResult


def parse_settings(items: list[str]) -> tuple[dict, dict]:
    """``["resume_moments=false", "self_labelled_temperature=0.6"]`` -> typed (``AssistantConfig`` fields,
    ``LearningConfig`` fields). A name both have (``max_steps``, ``loss``, ...) is the assistant's: its
    value overrides the learning one's (``AssistantConfig.learning_config``)."""
    assistant = {f.name: f.type for f in fields(AssistantConfig) if f.name != "learning"}
    types = {f.name: f.type for f in fields(LearningConfig)} | assistant
    out = {}
    for item in items:
        name, _, raw = item.partition("=")
        if name not in types:
            sys.exit(f"unknown setting {name!r}; choose from the AssistantConfig and LearningConfig fields: "
                     f"{', '.join(sorted(types))}")
        kind = str(types[name])
        try:
            if "bool" in kind:
                out[name] = raw.strip().lower() in ("1", "true", "yes")
            elif "int" in kind:
                out[name] = int(raw)
            elif "float" in kind:
                out[name] = float(raw)
            elif kind == "str":
                out[name] = raw.strip()
            else:
                sys.exit(f"{name} is a {kind}: only number, text and true/false settings can be set here")
        except ValueError:
            sys.exit(f"{name}={raw!r}: {name} takes a {kind}")
    return ({k: v for k, v in out.items() if k in assistant}, {k: v for k, v in out.items() if k not in assistant})


def with_baseline(result: EvalResult, baseline_dir: Path | None, baseline_arm: str = "asls") -> EvalResult:
    """``result`` plus the ``baseline_arm`` runs of ``baseline_dir``, as ``asls`` runs, for the seeds ``result``
    has no ``asls`` run of (``baseline_arm``: an earlier recipe arm that has since become the default)."""
    if baseline_dir is None:
        return result
    have = {(r["persona"], r["seed"]) for r in result.runs if r["arm"] == "asls"}
    extra = [dict(r, arm="asls") for r in EvalResult.load(baseline_dir).runs
             if r["arm"] == baseline_arm and (r["persona"], r["seed"]) not in have
             and any(x["seed"] == r["seed"] for x in result.runs)]
    return EvalResult(config=result.config, runs=result.runs + extra, seconds=result.seconds)


def compare(result: EvalResult) -> None:
    """Each arm's summary, and every recipe arm's paired difference to ``asls``."""
    summary = {row["arm"]: row for row in result.arm_summary()}
    print("\n| arm | satisfaction | style | open | kept vs base | commits |\n|---|---|---|---|---|---|")
    ci = lambda c: "–" if not c else f"{c[0]:.2f} [{c[1]:.2f}, {c[2]:.2f}]"  # noqa: E731
    for arm, row in summary.items():
        print(f"| {arm} | {ci(row.get('satisfaction_ci'))} | {ci(row.get('satisfaction_ci_style'))} | "
              f"{ci(row.get('satisfaction_ci_open'))} | {row['correctness_kept']:.2f} | "
              + (f"{row['commit_rate']:.0%} of {row['updates_decided']} |" if row["updates_decided"] else "– |"))
    for arm in summary:
        if arm.startswith("asls+") and "asls" in summary:
            for group in (None, "style", "open"):
                print(f"{arm} - asls ({group or 'all'}): {ci(result.paired_delta(arm, 'asls', group))}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", action="append", help="AssistantConfig or LearningConfig field=value (repeatable)")
    ap.add_argument("--compare", type=Path, help="only print the comparison of this earlier run's directory")
    ap.add_argument("--baseline-from", type=Path, help="an eval directory holding asls runs of the other seeds")
    ap.add_argument("--baseline-arm", default="asls", help="the arm of --baseline-from that is today's default")
    ap.add_argument("--rescore", action="store_true", help="score the stored answers with today's quality checks")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--baseline-seeds", default="", help="seeds on which the unchanged asls arm runs too")
    ap.add_argument("--personas", default="concise,follow_up")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/eval-recipe"))
    a = ap.parse_args()
    judged = rescore if a.rescore else (lambda result: result)
    if a.compare:
        compare(judged(with_baseline(EvalResult.load(a.compare), a.baseline_from, a.baseline_arm)))
        return
    if not a.set:
        ap.error("--set is required (or --compare DIR)")
    assistant, learning = parse_settings(a.set)
    arm = "asls+" + ",".join(f"{k}={v}" for k, v in (assistant | learning).items())
    runner.ARMS[arm] = dict(runner.ARMS["asls"], **assistant, learning=LearningConfig(**learning))
    personas = a.personas.split(",")
    plan = [([arm], [int(s) for s in a.seeds.split(",")])]
    if a.baseline_seeds:
        plan.append((["asls"], [int(s) for s in a.baseline_seeds.split(",")]))
    runs: list = []
    seconds = 0.0
    for i, (arms, seeds) in enumerate(plan):
        part = runner.run_eval(arms=arms, personas=personas, quick=True, seeds=seeds, out_dir=a.out / f"part{i}",
                               progress=lambda msg: print(msg, flush=True))
        runs += [r for r in part.runs if i == 0 or r["arm"] != "base"]
        seconds += part.seconds
        combined = EvalResult(config=dict(part.config, arms=["base", arm, "asls"], seeds=sorted({r["seed"] for r in runs})),
                              runs=runs, seconds=seconds)
        combined.save(a.out)
    compare(judged(with_baseline(combined, a.baseline_from, a.baseline_arm)))


if __name__ == "__main__":
    main()
