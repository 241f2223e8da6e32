"""One stored adapter update replayed under other optimizers and step sizes: how far the adapter moves, what the
user's held-out answers gain, and how many of the commit gate's probes it loses.

    python benchmarks/update_replay.py --home EVAL_OUT/part0/home --user eval-concise-asls-s2
        [--run ID] [--variants adamw:1,adamw:0.5,adamw_bc:2,sgd:0.5] [--set task_anchors=true ...]
        [--max-tokens 96] [--out NAME]

``--home`` is an evaluation's home (``asls eval --out DIR`` keeps it under ``DIR/part0/home``); ``--user`` one of
its simulated users, named ``eval-<persona>-<arm>-s<seed>``; ``--run`` one of that user's training runs (default:
the first). Each variant starts from the run's starting weights (its parent version, or a fresh adapter), trains on
the run's pairs with the run's steps and learning rate, and is judged like the gate judges: greedy answers to the
gate's probe questions (``session_update.gate_probes``, task probes too) at the gate's budget, and the persona's
satisfaction on its first 12 held-out prompts at ``--max-tokens`` (the quick eval's 96 by default), with the
user's stored profile in the system prompt. A variant is ``optimizer:multiplier`` of the run's learning rate:
``adamw`` (the product's: MLX's AdamW, no bias correction), ``adamw_bc`` (with bias correction), or
``sgd:LR`` (plain SGD at that learning rate; the gradient norm is clipped to 1 as in every step).
``--set`` changes learning settings as ``eval_recipe.py --set`` does (the retention term's texts follow them as
in the product: ``session_update.training_texts``). Prints a table and writes ``benchmarks/results/<out>.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import asls_mlx  # noqa: F401,E402  (BLAS before mlx)
import mlx.core as mx  # noqa: E402
import mlx.optimizers as optim  # noqa: E402

from common import machine, report  # noqa: E402
from eval_recipe import parse_settings  # noqa: E402

HELDOUT = 12


def make_optimizer(variant: str, lr: float):
    name, _, value = variant.partition(":")
    x = float(value or 1.0)
    if name == "adamw":
        return optim.AdamW(learning_rate=lr * x, weight_decay=0.0)
    if name == "adamw_bc":
        return optim.AdamW(learning_rate=lr * x, weight_decay=0.0, bias_correction=True)
    if name == "sgd":
        return optim.SGD(learning_rate=x)
    sys.exit(f"unknown variant {variant!r}: use adamw:X, adamw_bc:X (X times the run's learning rate) or sgd:LR")


def judge(engine, system: str, probes: dict, persona, heldout: list[str], max_tokens: int) -> dict:
    from asls_mlx.engine import SamplingOptions
    from asls_mlx.engine.sampling import greedy_answers
    from asls_mlx.session_update import GATE_OPTIONS, gate_quality_issues

    questions, issues = list(probes), gate_quality_issues(engine.tokenizer)
    answers = greedy_answers(engine, questions, system, options=GATE_OPTIONS)
    bad = {q for q, a in zip(questions, answers) if issues(q, a) or not probes[q](a)}
    held = greedy_answers(engine, heldout, system, options=SamplingOptions(max_tokens=max_tokens, temperature=0.0))
    return {"bad_probes": bad, "satisfied": sum(persona.satisfied(p, a) for p, a in zip(heldout, held)),
            "words": sum(len(a.split()) for a in held) / len(held), "sample": held[:2]}


def replay(variant: str, engine, config, pairs, run, start: dict) -> dict:
    from asls_mlx.adaptation.lora import lora_parameters, set_lora_weights
    from asls_mlx.adaptation.train_data import prepare, training_examples
    from asls_mlx.adaptation.trainer import make_loss, train
    from asls_mlx.data_files import general_texts
    from asls_mlx.session_update import training_texts

    model, tokenizer = engine.model, engine.tokenizer
    set_lora_weights(model, start)
    args = config.learning_config().training_args(max_steps=int(run.metrics["steps"]), lr=float(run.metrics["lr"]))
    general = general_texts()
    texts = training_texts(engine, config, general) or general
    data = prepare(model, tokenizer, training_examples(tokenizer, pairs, (), args), args, texts)
    result = train(model, make_optimizer(variant, args.lr), data.batches(0), args, loss=make_loss(args))
    after = lora_parameters(model)
    moved = sum(float(mx.sum((after[k] - start[k]) ** 2).item()) for k in after) ** 0.5
    return {"steps": result.steps, "losses": [round(float(x), 4) for x in result.losses], "moved": moved}


def stored_run(home: Path, name: str, run_id: int | None):
    """(store, user, the training run, its pairs, the persona, its first held-out prompts) of an eval's user."""
    from asls_mlx.data_files import load_prompts
    from asls_mlx.evaluation.personas import PERSONAS
    from asls_mlx.evaluation.runner import persona_prompts
    from asls_mlx.store import Store

    store = Store(home / "asls.db")
    user = store.get_user(name)
    runs = store.training_runs(user.id)
    run = next((r for r in runs if r.id == run_id), None) if run_id else (runs[0] if runs else None)
    if run is None or "steps" not in run.metrics:
        sys.exit(f"{name} has no training run {run_id or ''} that trained (runs: {[r.id for r in runs]})")
    _, persona_name, _, seed = name.split("-")
    persona = PERSONAS[persona_name]
    heldout = persona_prompts(persona, load_prompts(), int(seed.lstrip("s")))[1][:HELDOUT]
    pairs = [p for p in store.pairs(user.id, split="train") if p.id in set(run.pair_ids)]
    return store, user, run, pairs, persona, heldout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", type=Path, required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--run", type=int, default=None)
    ap.add_argument("--variants", default="adamw:1,adamw:0.5,adamw_bc:2,adamw_bc:4,sgd:0.5")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="a learning setting for every variant (as eval_recipe.py --set)")
    ap.add_argument("--max-tokens", type=int, default=96)
    ap.add_argument("--out", default="update_replay")
    a = ap.parse_args()

    from asls_mlx.adaptation.config import LearningConfig
    from asls_mlx.adaptation.lora import attach_lora, lora_parameters
    from asls_mlx.adaptation.update import activate_version
    from asls_mlx.adaptation.versions import AdapterRepo
    from asls_mlx.config import AssistantConfig
    from asls_mlx.engine import ChatEngine
    from asls_mlx.engine.models import load_model
    from asls_mlx.profiling import load_profile
    from asls_mlx.session_update import gate_probes

    assistant_fields, learning_fields = parse_settings(a.set)
    config = AssistantConfig(**assistant_fields, learning=LearningConfig(**learning_fields))
    store, user, run, pairs, persona, heldout = stored_run(a.home, a.user, a.run)
    engine = ChatEngine(*load_model())
    attach_lora(engine.model, config.learning_config().lora)
    if run.parent_version:
        activate_version(engine.model, AdapterRepo(a.home / "users" / str(user.id) / "adapters"), run.parent_version)
    start = dict(lora_parameters(engine.model))
    system, probes = config.system_text(load_profile(store, user)), gate_probes(tasks=True)
    before = judge(engine, system, probes, persona, heldout, a.max_tokens)
    rows, found = [("before: satisfied / probes failed", f"{before['satisfied']}/{HELDOUT} / "
                    f"{len(before['bad_probes'])}/{len(probes)}", "")], {}
    for variant in a.variants.split(","):
        t0 = time.perf_counter()
        trained = replay(variant, engine, config, pairs, run, start)
        after = judge(engine, system, probes, persona, heldout, a.max_tokens)
        lost = sorted(after["bad_probes"] - before["bad_probes"])
        found[variant] = trained | {"satisfied": after["satisfied"], "words": after["words"], "lost_probes": lost,
                                    "fixed_probes": len(before["bad_probes"] - after["bad_probes"]),
                                    "sample": after["sample"], "seconds": time.perf_counter() - t0}
        rows.append((f"{variant}: |dW| / satisfied / probes lost", f"{trained['moved']:.2f} / "
                     f"{after['satisfied']}/{HELDOUT} / {len(lost)}", "lost 0-1 (gate: 2 rejects)"))
        print(f"{variant}: {found[variant]}", flush=True)
    report(a.out, rows, {"machine": machine(), "home": str(a.home), "user": a.user, "run": run.id,
                         "pairs": [p.id for p in pairs], "settings": a.set, "system": system, "heldout": heldout,
                         "before": before | {"bad_probes": sorted(before["bad_probes"])}, "variants": found})


if __name__ == "__main__":
    main()
