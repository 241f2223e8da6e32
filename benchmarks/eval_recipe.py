"""The quick eval's asls arm with learning settings changed: a training recipe measured against the default.

    python benchmarks/eval_recipe.py --set resume_moments=false [--seeds 0,1,2] [--baseline-seeds 2]
                                     [--out benchmarks/results/eval-recipe]

Adds an arm ``asls+<settings>`` (the ``asls`` arm with those ``LearningConfig`` fields) and runs it with the
``asls eval --quick`` settings; ``--baseline-seeds`` also runs the unchanged ``asls`` arm on those seeds (for
seeds whose default run is already on record elsewhere, leave them out). Same users, prompts and feedback
draws as ``asls eval --quick --seeds ...``: runs of one seed differ only by the recipe.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

import asls_mlx  # noqa: F401  (BLAS before mlx)
from asls_mlx.adaptation.config import LearningConfig
from asls_mlx.evaluation import runner
from asls_mlx.evaluation.results import EvalResult


def parse_settings(items: list[str]) -> dict:
    """``["resume_moments=false", "base_lr=1e-4"]`` -> typed ``LearningConfig`` fields."""
    types = {f.name: f.type for f in fields(LearningConfig)}
    out = {}
    for item in items:
        name, _, raw = item.partition("=")
        if name not in types:
            sys.exit(f"unknown LearningConfig field {name!r}; choose from: {', '.join(types)}")
        kind = str(types[name])
        if "bool" in kind:
            out[name] = raw.strip().lower() in ("1", "true", "yes")
        elif "int" in kind:
            out[name] = int(raw)
        else:
            out[name] = float(raw)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", action="append", required=True, help="LearningConfig field=value (repeatable)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--baseline-seeds", default="", help="seeds on which the unchanged asls arm runs too")
    ap.add_argument("--personas", default="concise,follow_up")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/eval-recipe"))
    a = ap.parse_args()
    settings = parse_settings(a.set)
    arm = "asls+" + ",".join(f"{k}={v}" for k, v in settings.items())
    runner.ARMS[arm] = dict(runner.ARMS["asls"], learning=LearningConfig(**settings))
    personas = a.personas.split(",")
    plan = [([arm], [int(s) for s in a.seeds.split(",")])]
    if a.baseline_seeds:
        plan.append((["asls"], [int(s) for s in a.baseline_seeds.split(",")]))
    runs: list = []
    for i, (arms, seeds) in enumerate(plan):
        part = runner.run_eval(arms=arms, personas=personas, quick=True, seeds=seeds, out_dir=a.out / f"part{i}",
                               progress=lambda msg: print(msg, flush=True))
        runs += [r for r in part.runs if i == 0 or r["arm"] != "base"]
        EvalResult(config=dict(part.config, arms=["base", arm, "asls"], seeds=sorted({r["seed"] for r in runs})),
                   runs=runs).save(a.out)


if __name__ == "__main__":
    main()
