"""Calibrate the relevance check (``adaptation.relevance``) on the embedded model's own answers.

    python benchmarks/relevance_calibration.py [--limit N] [--out benchmarks/results/relevance_calibration.json]

The base model answers the built-in prompts and the correctness questions greedily (as the chat would,
with the default system prompt). Then the PMI per answer token of three kinds of (prompt, answer):
own (the model's answer to that prompt: should pass), swapped (the answer to another prompt of the same
set: should be flagged) and content-free (a template with nothing in it: should be flagged). Prints, for a
grid of thresholds, the share of each kind flagged, and the chosen threshold: the highest that flags at most 5%
of own answers; the goal is >= 95% of swapped and all content-free answers flagged at it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import asls_mlx  # noqa: F401,E402  (BLAS before mlx)
from asls_mlx.adaptation.relevance import PMI_THRESHOLD, answer_pmi  # noqa: E402
from asls_mlx.data_files import load_prompts  # noqa: E402
from asls_mlx.engine import ChatEngine, load_model  # noqa: E402
from asls_mlx.engine.sampling import greedy_answers  # noqa: E402
from asls_mlx.evaluation.correctness import load_correctness_set  # noqa: E402
from asls_mlx.profiling.quality import quality_issues  # noqa: E402

SYSTEM = "You are a helpful assistant."
CONTENT_FREE = [
    "The answer is:", "Sure! Here is the answer.", "I can help with that.", "The corrected version is:",
    "Here you go:", "Great question!", "Let me know if you have any other questions.", "The answer is: Please.",
]
GRID = [-0.2, -0.1, 0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]


def flagged_share(values: list[float], threshold: float) -> float:
    return sum(not v > threshold for v in values) / len(values)


def either_share(examples: list[dict], threshold: float) -> float:
    """Content-free answers flagged by the PMI or by the text checks (hollow, too short...): what the eval
    and the gate count, since both apply both."""
    cf = [e for e in examples if e["kind"] == "content_free"]
    return sum(not e["pmi"] > threshold or bool(quality_issues(e["prompt"], e["answer"])) for e in cf) / len(cf)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=None, help="use only the first N prompts of each set")
    ap.add_argument("--max-tokens", type=int, default=96)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "relevance_calibration.json")
    args = ap.parse_args()
    model, tokenizer, model_id = load_model(None)
    engine = ChatEngine(model, tokenizer, model_id)
    sets = {"prompts": [r["prompt"] for r in load_prompts()],
            "correctness": [it.question for it in load_correctness_set()]}
    kinds: dict[str, list[float]] = {"own": [], "swapped": [], "content_free": []}
    examples = []
    t0 = time.perf_counter()
    for name, prompts in sets.items():
        prompts = prompts[: args.limit] if args.limit else prompts
        answers = greedy_answers(engine, prompts, SYSTEM, max_tokens=args.max_tokens)
        shift = len(prompts) // 2  # answers of the other half: another subject, same kind of request
        swapped = [answers[(i + shift) % len(answers)] for i in range(len(answers))]
        empty = [CONTENT_FREE[i % len(CONTENT_FREE)] for i in range(len(prompts))]
        for kind, these in (("own", answers), ("swapped", swapped), ("content_free", empty)):
            values = answer_pmi(model, tokenizer, prompts, these, SYSTEM)
            kinds[kind] += values
            examples += [{"set": name, "kind": kind, "prompt": p, "answer": a, "pmi": v}
                         for p, a, v in zip(prompts, these, values)]
        print(f"{name}: {len(prompts)} prompts ({time.perf_counter() - t0:.0f} s)", flush=True)
    rows = [{"threshold": t, **{k: flagged_share(v, t) for k, v in kinds.items()},
             "content_free_either": either_share(examples, t)} for t in sorted(set(GRID + [PMI_THRESHOLD]))]
    own_sorted = sorted(kinds["own"])
    chosen = max(t for t in sorted(set(GRID + [PMI_THRESHOLD])) if flagged_share(kinds["own"], t) <= 0.05)
    print(f"\n{'threshold':>10} {'own flagged':>12} {'swapped flagged':>16} {'content-free flagged':>21} "
          f"{'(+ text checks)':>16}")
    for r in rows:
        print(f"{r['threshold']:>10.2f} {r['own']:>12.1%} {r['swapped']:>16.1%} {r['content_free']:>21.1%} "
              f"{r['content_free_either']:>16.1%}")
    print(f"\nown PMI/token: 5th percentile {own_sorted[len(own_sorted) // 20]:.3f}, median "
          f"{own_sorted[len(own_sorted) // 2]:.3f}; highest grid threshold flagging <= 5% of own answers: {chosen}; "
          f"in use: {PMI_THRESHOLD}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"model": model_id, "max_tokens": args.max_tokens, "threshold_in_use": PMI_THRESHOLD,
                                    "chosen": chosen, "grid": rows, "n": {k: len(v) for k, v in kinds.items()},
                                    "seconds": time.perf_counter() - t0, "examples": examples}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
