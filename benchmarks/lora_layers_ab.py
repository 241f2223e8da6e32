"""Quality A/B for the speed choice of adapting the last 16 blocks instead of all 30.

    python benchmarks/lora_layers_ab.py             # both budgets, both layouts (~30 min on 2 cores)
    python benchmarks/lora_layers_ab.py --budget 30 # only the 30 s wall-clock budget the product once had

For each simulated persona (concise, bullets; asls_mlx.evaluation) a fresh user has one session of 8
held-in prompts with rule-based feedback (edits, regenerations, thumbs), profile-in-prompt off so only
the adapter acts. The session's pairs train an adapter with the LoRA on the last 16 blocks or on all
blocks, the gate bypassed, (a) for 10 steps (equal work: what the product does, its steps are decided by
the data) and (b) within a 30 s wall-clock budget (equal time: what the product did before). Reported: held-out satisfaction on 12 prompts before -> after (a
degenerate answer scores 0), degenerate answers, words, general-text perplexity ratio (retention).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
MARK = "AB_RESULT "


def worker(layers: int, budget: float) -> dict:
    import asls_mlx  # noqa: F401
    from asls_mlx import Assistant, AssistantConfig
    from asls_mlx.adaptation.lora import LoraConfig, attach_lora
    from asls_mlx.adaptation.trainer import TrainingArgs, train_on_pairs
    from asls_mlx.evaluation.personas import get_persona
    from asls_mlx.data_files import general_texts
    from asls_mlx.evaluation.runner import load_prompts, persona_prompts
    from asls_mlx.evaluation.simulate import simulate_session
    from asls_mlx.profiling import quality_issues

    out: dict = {"layers": layers, "budget_s": budget}
    texts = general_texts()
    for name in ("concise", "bullets"):
        persona = get_persona(name)
        heldin, heldout = persona_prompts(persona, load_prompts(), 0)
        heldout = heldout[:12]
        cfg = AssistantConfig(max_tokens=96, profile_in_prompt=False, self_labelled=False, train_after_session="none",
                              lora_layers=layers)
        with Assistant(user=f"ab-{name}", config=cfg) as a:
            model, tok = a.engine.model, a.engine.tokenizer
            attach_lora(model, LoraConfig(num_layers=layers))
            before = a.answer_many(heldout, max_tokens=96)
            simulate_session(a, persona, heldin[:8], 1, 0)
            a.end_session(train="none")
            pairs = a.store.pairs(a.user.id, split=None)
            t0 = time.perf_counter()
            r = train_on_pairs(model, tok, pairs, TrainingArgs(max_steps=10, max_epochs=None, time_limit_s=budget),
                               general_texts=texts)
            seconds = time.perf_counter() - t0
            after = a.answer_many(heldout, max_tokens=96)

            def sat(answers):
                return sum(persona.satisfies(p, x, 1) for p, x in zip(heldout, answers)) / len(heldout)

            out[name] = {
                "pairs": len(pairs), "steps": r.steps, "train_s": round(seconds, 1),
                "sat_before": round(sat(before), 3), "sat_after": round(sat(after), 3),
                "degenerate_after": sum(bool(quality_issues(p, x)) for p, x in zip(heldout, after)),
                "words": [round(sum(len(x.split()) for x in ans) / len(ans)) for ans in (before, after)],
                "retention": round(a.perplexity(texts) / a.perplexity(texts, adapter=False), 3),
            }
    return out


def table(results: list[dict]) -> str:
    lines = ["| budget | blocks adapted | persona | steps | train s | satisfaction before -> after | degenerate | words | retention |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        for name in ("concise", "bullets"):
            x = r[name]
            budget = "10 steps" if r["budget_s"] > 1e6 else f"{r['budget_s']:.0f} s"
            blocks = "all 30" if r["layers"] == -1 else f"last {r['layers']}"
            lines.append(f"| {budget} | {blocks} | {name} | {x['steps']} | {x['train_s']} | {x['sat_before']:.2f} -> "
                         f"{x['sat_after']:.2f} | {x['degenerate_after']} | {x['words'][0]} -> {x['words'][1]} | {x['retention']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", type=float, default=None, help="only this training budget in seconds")
    ap.add_argument("--worker", nargs=2, type=float, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(MARK + json.dumps(worker(int(args.worker[0]), args.worker[1])))
        return
    budgets = [args.budget] if args.budget else [1e9, 30.0]
    results = []
    for budget in budgets:
        for layers in (16, -1):
            with tempfile.TemporaryDirectory() as home:
                proc = subprocess.run([sys.executable, __file__, "--worker", str(layers), str(budget)],
                                      env=dict(os.environ, ASLS_HOME=home), capture_output=True, text=True)
            line = next((l for l in proc.stdout.splitlines() if l.startswith(MARK)), None)
            if line is None:
                raise SystemExit(f"worker failed:\n{proc.stderr[-2000:]}")
            results.append(json.loads(line[len(MARK):]))
            print(table(results[-1:]).splitlines()[-1], flush=True)
    from common import RESULTS, machine

    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "lora_layers_ab.json").write_text(json.dumps({"machine": machine(), "results": results}, indent=2))
    md = "# LoRA on the last 16 blocks vs all 30: personalization quality\n\n" + table(results) + "\n"
    (RESULTS / "lora_layers_ab.md").write_text(md)
    print("\n" + md)


if __name__ == "__main__":
    main()
