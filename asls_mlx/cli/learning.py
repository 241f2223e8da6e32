"""`asls train` (now, --status, --cancel), `asls adapters` (versions, --runs, rollback) and the chat's
/train and /adapters. Public API only; drawing through `ui`."""

from __future__ import annotations

import argparse
import time

from asls_mlx import ASLSError
from asls_mlx.cli.commands import _assistant, _existing, _time
from asls_mlx.cli.ui import ChatUI

VALIDATING = "validating: held-out pairs, retention, answers old vs new"
# the pipeline's phase names, said the way a user reads them
PHASES = {"training": "preparing: reference log-probs, held-out metrics before training"}


def train(args: argparse.Namespace) -> int:
    from asls_mlx import AssistantConfig, cancel_training, last_update_overhead_s, require_user, training_status

    ui = ChatUI()
    args.user = require_user(args.user)
    if args.status:
        status = training_status(args.user)
        if args.json:
            ui.json("training_status", status.to_dict())
        else:
            ui.status(status.line())
        return 0
    if args.cancel:
        ui.status(cancel_training(args.user))
        return 0
    overhead = last_update_overhead_s(args.user)
    limit = {} if args.time_limit is None else {"train_time_limit_s": args.time_limit}
    config = AssistantConfig(**limit)
    most = min(config.max_steps, config.learning.max_steps_cap)
    ui.status(f"optimizer steps: as many as the new pairs call for (at most {most}), stopped only by a "
              f"{config.time_limit_s:.0f} s safety net (--time-limit); the rest of the update (loading the model, "
              "mining, reference log-probs, validation) "
              + (f"took {overhead:.0f} s last time" if overhead is not None else "adds about a minute on a 2-core CPU"))
    a = _assistant(args, exclusive=True, ui=ui, **limit)
    try:
        report = train_with_progress(a, ui)
    finally:
        a.close()
    return 0 if report is None or report.committed else 1


def train_with_progress(a, ui: ChatUI):
    """Learn now from what is not learned yet (the session so far included), showing each phase and the
    steps; print the outcome. Used by `asls train` and /train. Returns the update's report (None: nothing
    to train on)."""
    from asls_mlx import train_now

    started = time.monotonic()
    with ui.progress(f"updating the adapter of {a.user.name}", total=None) as bar:
        def on_step(p):
            bar.update(completed=p.step, total=p.total, info=f"loss {p.loss:.3f}", description="training")
            if p.step >= p.total:
                bar.update(description=VALIDATING)

        outcome = train_now(a, progress=on_step, on_phase=lambda phase: bar.update(description=PHASES.get(phase, phase)))
    if outcome.report is None:
        why = (f"the {outcome.held_out} pairs mined so far are held out to check adapters, not to train them"
               if outcome.held_out else "no new pairs since the last adapter")
        ui.status(f"nothing to train on yet: {why}. React to answers (/good, /bad, /regen, /edit, or say what "
                  "you want, e.g. 'shorter please') and train again")
        return None
    report = outcome.report
    (ui.banner if report.committed else ui.notice)(f"{report.summary()} ({time.monotonic() - started:.0f} s in all)")
    return report


def adapters(args: argparse.Namespace) -> int:
    ui = ChatUI()
    if args.action in ("export", "fuse"):
        return export_adapter(args, ui)
    if args.version is not None and not args.version.isdigit():
        raise ASLSError(f"the version to roll back to is a number (0 = base model), not {args.version!r}")
    a = _existing(args, exclusive=args.action == "rollback", ui=ui)
    try:
        if args.action == "rollback":
            version = a.rollback(None if args.version is None else int(args.version))
            ui.status(f"active adapter: {'v' + str(version) if version else 'none (base model)'}")
        if args.json:
            from asls_mlx import training_runs

            ui.json("adapters", {"user": a.user.name, "active": a.adapter_version,
                                 "versions": [_version_dict(v) for v in a.adapters()],
                                 "runs": [r.to_dict() for r in training_runs(a.user.name)]})
        elif args.runs:
            show_runs(a, ui)
        else:
            show_adapters(a, ui)
    finally:
        a.close()
    return 0


def export_adapter(args: argparse.Namespace, ui: ChatUI) -> int:
    """`asls adapters export --format peft DIR` and `asls adapters fuse DIR`."""
    import asls_mlx

    if not args.version:
        raise ASLSError(f"`asls adapters {args.action}` needs the output folder, e.g. `asls adapters {args.action} my-adapter`")
    if args.action == "export":
        out = asls_mlx.export_adapter(args.version, user=args.user, version=args.export_version, format=args.format, model=args.model)
        ui.status(f"PEFT LoRA adapter written to {out} (its base: `asls models --export-hf DIR` for the embedded model)")
    else:
        out = asls_mlx.fuse_adapter(args.version, user=args.user, version=args.export_version, model=args.model)
        ui.status(f"fused mlx-lm model written to {out} (e.g. `mlx_lm.generate --model {out}`)")
    return 0


def _version_dict(v) -> dict:
    m = v.metrics or {}
    before, after = m.get("val_before") or {}, m.get("val_after") or {}
    return {"version": v.version, "status": v.status, "created_at": v.created_at, "parent_version": v.parent_version,
            "new_pairs": m.get("new_pairs"), "steps": m.get("steps"),
            "heldout_before": before.get("accuracy") if before.get("n") else None,
            "heldout_after": after.get("accuracy") if after.get("n") else None,
            "heldout_n": int(after.get("n") or before.get("n") or 0), "retention_ratio": m.get("retention_ratio")}


def show_adapters(a, ui: ChatUI, runs: int = 0) -> None:
    """The adapter versions, then (``runs`` > 0) that many of the latest training runs."""
    rows = []
    for v in a.adapters():
        d = _version_dict(v)
        pref = f"{d['heldout_before']:.2f} → {d['heldout_after']:.2f} (n={d['heldout_n']})" if d["heldout_after"] is not None else "—"
        rows.append([f"v{v.version}", v.status, _time(v.created_at), d["new_pairs"] or "", d["steps"] or "", pref,
                     _fmt(d["retention_ratio"])])
    if rows:
        ui.table(f"adapters of {a.user.name}", ["version", "status", "created", "pairs", "steps", "held-out pref.",
                                                "retention ppl ×"], rows)
    else:
        ui.status("no adapters yet: the base model answers (chat, react, end a session)")
    if runs:
        show_runs(a, ui, last=runs)


def show_runs(a, ui: ChatUI, last: int | None = None) -> None:
    """Training runs: committed, rejected and why, failed, cancelled, interrupted; with the gate's numbers."""
    from asls_mlx import training_runs

    found = training_runs(a.user.name)
    if not found:
        ui.status("no training runs yet")
        return
    shown = found[-last:] if last else found
    rows = [[r.id, _time(r.started_at), r.result(), r.new_pairs, r.steps_text(), r.heldout(),
             _fmt(r.retention_ratio), "" if r.seconds is None else f"{r.seconds:.0f}"] for r in shown]
    title = f"training runs of {a.user.name}" + (f" (last {len(shown)} of {len(found)}: `asls adapters --runs`)"
                                                  if len(shown) < len(found) else "")
    ui.table(title, ["run", "started", "result", "pairs", "steps", "held-out pref. (n)", "retention ×", "s"], rows)


def _fmt(x) -> str:
    return f"{x:.3f}" if isinstance(x, float) else ""
