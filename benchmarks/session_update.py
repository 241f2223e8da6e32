"""The whole per-session update of a 10-turn chat session, phase by phase, on the embedded model.

    python benchmarks/session_update.py                  # before, now, later (below)
    python benchmarks/session_update.py --only now later # the current defaults, first and later updates
    python benchmarks/session_update.py --only second    # a user's second session's update (gate answers kept)

A scripted user has a 10-turn session through the public API (edits answers down, regenerates and
likes, dislikes, asks for shorter answers). Then, timed: mining (``end_session``: profile and
feedback pairs; then self-labelled pairs: sampled answers ranked by the profile) and the adapter update (``session_update.train_and_gate``: prepare, reference log-probs,
training steps, validation gate, commit). Each configuration runs in its own process with its own
empty ASLS_HOME; the chat turns themselves are not part of the update and are not counted.
The goal (issue 8): mine + train + validate + commit <= 30 s. "now" is the first update on a machine
(the base model's retention targets and perplexity computed and kept, ``adaptation.base_cache``);
"later" is any later update, each in a fresh process as the background trainer runs them, reading them.
"second" is the same user's second session: its update reads the gate answers the first one kept
(``adaptation.gate_memory``).
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

PROMPTS = [
    "Tell me about the moon.", "How do I boil an egg?", "What is a black hole?", "Give me tips for sleeping better.",
    "Explain what a mortgage is.", "Tell me about honey bees.", "What is photosynthesis?", "How do vaccines work?",
    "Tell me about chess.",
]
# the user's second session (the "second" configuration: its update is timed, the first session's is not)
SECOND_PROMPTS = [
    "Tell me about the ocean.", "How do I make tea?", "What is a volcano?", "Give me tips for studying.",
    "Explain what a budget is.", "Tell me about ants.", "What is gravity?", "How do batteries work?",
    "Tell me about jazz.",
]
CONFIGS = {
    "before": {"env": {"ASLS_FAST_KERNELS": "off"}, "lora_layers": -1, "base_cache": "cold"},
    "now": {"env": {}, "lora_layers": 16, "base_cache": "cold"},
    "later": {"env": {}, "lora_layers": 16, "base_cache": "warm"},
    "second": {"env": {}, "lora_layers": 16, "base_cache": "warm", "sessions": 2},
}
PHASES = ["mine", "self_labelled", "prepare", "reference", "steps", "validate", "validate_heldout", "validate_retention",
          "commit"]


def shorten(text: str) -> str:
    first = text.split(". ")[0].split()[:20]
    return " ".join(first).rstrip(".") + "."


def session(a, prompts: list[str]) -> None:
    """A scripted 10-turn session: edits answers down, regenerates and likes, dislikes, asks for shorter answers."""
    for i, prompt in enumerate(prompts):
        reply = a.chat(prompt)
        if i % 2 == 0:
            a.edit(shorten(reply.text))
        elif i in (1, 5):
            a.regenerate()
            a.good()
        else:
            a.bad()
    a.chat("Please keep your answers shorter.")  # turn 10: an explicit correction


def worker(lora_layers: int, model: str | None, base_cache: str, sessions: int = 1) -> dict:
    import shutil

    import asls_mlx  # noqa: F401
    from asls_mlx import Assistant, AssistantConfig
    from asls_mlx.session_update import Learner, base_model_cache, mine_self_labelled, train_and_gate, training_lock

    config = AssistantConfig(max_tokens=96, train_after_session="none", lora_layers=lora_layers)
    with Assistant(user="bench", model=model, config=config) as a:
        cache = base_model_cache(a.engine.model_id)
        if base_cache == "cold":
            shutil.rmtree(cache.directory, ignore_errors=True)
        elif not cache.directory.is_dir():
            raise SystemExit("no base cache yet: run the 'now' configuration first")
        if sessions == 2:  # the first session and its update, not timed
            session(a, PROMPTS)
            a.end_session(train="wait")
        session(a, SECOND_PROMPTS if sessions == 2 else PROMPTS)
        # what end_session(train="wait") and the background worker do, with the phases timed apart
        t0 = time.perf_counter()
        summary = a.end_session(train="none")
        mine = time.perf_counter() - t0
        learner, ended = Learner(a.store, a.user, a.engine, a.config), [summary.session_id]
        with training_lock(a.store, a.user):
            t0 = time.perf_counter()
            added, answers_before = mine_self_labelled(learner, ended)
            summary.pairs_mined += added
            self_labelled = time.perf_counter() - t0
            t1 = time.perf_counter()
            report = train_and_gate(learner, ended, answers_before)
            update = time.perf_counter() - t1
    from common import peak_rss_mb

    return {
        "pairs_mined": summary.pairs_mined,
        "steps": report.steps,
        "committed": report.committed,
        "reason": report.reason,
        "phases": {"mine": mine, "self_labelled": self_labelled, **report.timings},
        "update_s": update,
        "whole_s": mine + self_labelled + update,
        "peak_rss_mb": peak_rss_mb(),
    }


def run_config(name: str, model: str | None) -> dict:
    cfg = CONFIGS[name]
    with tempfile.TemporaryDirectory() as home:
        env = dict(os.environ, ASLS_HOME=home, **cfg["env"])
        cmd = [sys.executable, __file__, "--worker", str(cfg["lora_layers"]), "--base-cache", cfg["base_cache"],
               "--sessions", str(cfg.get("sessions", 1))]
        cmd += ["--model", model] if model else []
        out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{name} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def render(results: dict) -> str:
    names = list(results)
    two = len(names) == 2
    lines = ["| phase (s) | " + " | ".join(names) + (f" | {names[1]} / {names[0]} |" if two else " |"),
             "|---" * (len(names) + 1 + two) + "|"]

    def row(label, vals, ratio=True):
        r = f" | {vals[1] / vals[0]:.2f}" if two and ratio and vals[0] else (" |" if two else "")
        lines.append(f"| {label} | " + " | ".join(f"{v:.1f}" if isinstance(v, float) else str(v) for v in vals) + r + " |")

    for phase in PHASES:
        row(phase, [results[n]["phases"].get(phase, 0.0) for n in names])
    row("whole update (goal <= 30 s)", [results[n]["whole_s"] for n in names])
    row("seconds per training step", [results[n]["phases"]["steps"] / max(results[n]["steps"], 1) for n in names])
    for key in ("pairs_mined", "steps", "committed", "reason"):
        row(key, [results[n][key] for n in names], ratio=False)
    row("peak_rss_mb", [float(round(results[n]["peak_rss_mb"])) for n in names])
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="+", choices=list(CONFIGS))
    ap.add_argument("--model", default=None, help="model directory (default: the embedded model)")
    ap.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--base-cache", default="cold", help=argparse.SUPPRESS)
    ap.add_argument("--sessions", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker is not None:
        print(json.dumps(worker(args.worker, args.model, args.base_cache, args.sessions)))
        return

    import asls_mlx  # noqa: F401
    from common import machine, RESULTS

    names = args.only or list(CONFIGS)
    results = {}
    for name in names:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        results[name] = run_config(name, args.model)
    table = render(results)
    print(table)
    RESULTS.mkdir(exist_ok=True)
    meta = {"machine": machine(), "configs": {n: CONFIGS[n] for n in names}, "results": results}
    (RESULTS / "session_update.json").write_text(json.dumps(meta, indent=2))
    (RESULTS / "session_update.md").write_text(
        "# Whole per-session update, 10-turn session, embedded model\n\n"
        f"Machine: {meta['machine']}. before = MLX native kernels + LoRA on all 30 blocks; now = CPU kernels "
        "(engine.cpu) + LoRA on the last 16 blocks with the frozen-block cache. Both columns share the rest of "
        "today's code (held-out checks from the frozen-block cache, no policy pass for an identity adapter, the base "
        "perplexity computed once). Training runs at most 3 passes over the session's pairs (or the 30 s budget), so "
        "compare seconds per step; the chat turns are not counted. now = the first update on a machine; later = a "
        "later one (a fresh process reading the base model's retention targets and perplexity kept by the first).\n\n"
        + table + "\n"
    )
    print(f"\nwrote {RESULTS / 'session_update.json'}")


if __name__ == "__main__":
    main()
