"""Subcommand bodies. They call the public API (``asls_mlx.__all__``, ``asls_mlx.evaluation``,
``asls_mlx.diagnostics``) and draw through `ui`; no rich here."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

from asls_mlx import ASLSError
from asls_mlx.cli.ui import ChatUI


def _assistant(args: argparse.Namespace, exclusive: bool = False, **config):
    from asls_mlx import Assistant, AssistantConfig

    ui = ChatUI()
    return Assistant(user=args.user, model=getattr(args, "model", None), config=AssistantConfig(**config),
                     progress=ui.status, exclusive=exclusive)


def doctor(args: argparse.Namespace) -> int:
    from asls_mlx import diagnostics

    ui = ChatUI()
    report = diagnostics.run(compare_reference=not args.quick)
    ui.table("asls doctor", ["check", "result"], [list(r) for r in report.rows])
    for problem in report.problems:
        ui.error(problem)
    return 1 if report.problems else 0


def models(args: argparse.Namespace) -> int:
    from asls_mlx import default_model_dir, list_models

    ui = ChatUI()
    if args.convert_default:
        ui.status(f"default model ready: {default_model_dir(progress=ui.status)}")
    rows = [[m.name, m.kind, m.size_mb or "", m.path] for m in list_models()]
    ui.table("models", ["name", "kind", "MB", "path"], rows)
    return 0


def train(args: argparse.Namespace) -> int:
    ui = ChatUI()
    a = _assistant(args, exclusive=True, train_budget_s=args.budget)
    try:
        report = train_with_progress(a, ui)
    finally:
        a.close()
    return 0 if report is None or report.committed or report.steps == 0 else 1


def train_with_progress(a, ui: ChatUI):
    """Train now (blocking) with a progress bar; print the outcome. Used by `asls train` and `/train`."""
    waiting = a.pairs_waiting()
    if waiting == 0:
        ui.status("nothing to train on: no new pairs since the last adapter (chat, give feedback, end a session)")
        return None
    with ui.progress(f"training on {waiting} new pairs", total=None) as bar:
        def on_step(p):
            bar.update(completed=p.step, total=p.total, info=f"loss {p.loss:.3f}")

        report = a.train(wait=True, progress=on_step)
    (ui.banner if report.committed else ui.notice)(report.summary())
    return report


def profile(args: argparse.Namespace) -> int:
    ui = ChatUI()
    a = _assistant(args)
    try:
        show_profile(a, ui)
    finally:
        a.close()
    return 0


def show_profile(a, ui: ChatUI) -> None:
    p = a.profile
    text = p.render()
    ui.markdown(f"**Profile of {a.user.name}**\n\n{text or '_nothing learned yet: chat and react to answers_'}")
    changes = a.profile_changes()
    if changes:
        ui.markdown("**Last session changed:** " + "; ".join(changes))
    ui.status(f"drift score {p.drift:.2f}; {a.pairs_waiting()} pairs waiting for training")


def history(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise ASLSError("--limit must be at least 1")
    ui = ChatUI()
    a = _assistant(args)
    try:
        show_history(a, ui, args.limit)
    finally:
        a.close()
    return 0


def show_history(a, ui: ChatUI, limit: int = 20) -> None:
    rows = [[m.session_id, dt.datetime.fromtimestamp(m.created_at).strftime("%Y-%m-%d %H:%M"), m.role, _clip(m.text)] for m in a.history(limit)]
    if not rows:
        ui.status("no history yet")
        return
    ui.table(f"history of {a.user.name}", ["session", "time", "role", "text"], rows)


def _clip(text: str, n: int = 70) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def export(args: argparse.Namespace) -> int:
    a = _assistant(args)
    try:
        path = a.export(Path(args.path))
    finally:
        a.close()
    ChatUI().status(f"exported {a.user.name} to {path}")
    return 0


def import_(args: argparse.Namespace) -> int:
    from asls_mlx import import_user

    path = Path(args.path)
    if not path.is_file():
        raise ASLSError(f"no such file: {path}")
    name = import_user(path, rename=args.rename)
    ChatUI().status(f"imported user {name}")
    return 0


def forget(args: argparse.Namespace) -> int:
    if args.until and not args.since:
        raise ASLSError("--until needs --since")
    what = f"session {args.session}" if args.session is not None else ("everything" if args.all else f"messages since {args.since}")
    if not args.yes:
        if not sys.stdin.isatty():
            raise ASLSError(f"forget {what}: add --yes to confirm (no terminal to ask)")
        if input(f"forget {what} of this user, and adapters trained on it? [y/N] ").strip().lower() not in ("y", "yes"):
            return 1
    a = _assistant(args, exclusive=True)
    try:
        summary = a.forget(session_id=args.session, since=_when(args.since), until=_when(args.until), everything=args.all)
    finally:
        a.close()
    ChatUI().status(
        f"forgot {summary.sessions} sessions, {summary.messages} messages, {summary.pairs} pairs; "
        f"removed adapter versions: {', '.join(f'v{v}' for v in summary.tainted_versions) or 'none'}"
    )
    return 0


def _when(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return dt.datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise ASLSError(f"cannot read the date {text!r}; use ISO format like 2026-11-01 or 2026-11-01T14:30") from None


def adapters(args: argparse.Namespace) -> int:
    ui = ChatUI()
    a = _assistant(args, exclusive=args.action == "rollback")
    try:
        if args.action == "rollback":
            version = a.rollback(args.version)
            ui.status(f"active adapter: {'v' + str(version) if version else 'none (base model)'}")
        show_adapters(a, ui)
    finally:
        a.close()
    return 0


def show_adapters(a, ui: ChatUI) -> None:
    rows = []
    for v in a.adapters():
        m = v.metrics or {}
        before, after = m.get("val_before") or {}, m.get("val_after") or {}
        pref = f"{before.get('accuracy', 0):.2f} → {after.get('accuracy', 0):.2f}" if before.get("n") else "—"
        created = dt.datetime.fromtimestamp(v.created_at).strftime("%Y-%m-%d %H:%M")
        rows.append([f"v{v.version}", v.status, created, m.get("new_pairs", ""), m.get("steps", ""), pref, _fmt(m.get("retention_ratio"))])
    if not rows:
        ui.status("no adapters yet: the base model answers (chat, react, end a session)")
        return
    ui.table(f"adapters of {a.user.name}", ["version", "status", "created", "pairs", "steps", "held-out pref.", "retention ppl ×"], rows)


def _fmt(x) -> str:
    return f"{x:.3f}" if isinstance(x, float) else ""


def evaluate(args: argparse.Namespace) -> int:
    from asls_mlx import evaluation

    ui = ChatUI()
    arms = args.arms.split(",") if args.arms else None
    personas = args.personas.split(",") if args.personas else None
    with ui.progress("evaluating", total=None) as bar:
        result = evaluation.main_eval(quick=args.quick, out=Path(args.out), arms=arms, personas=personas,
                                      model=args.model, seed=args.seed, train_budget_s=args.train_budget,
                                      progress=lambda msg: bar.update(info=str(msg)[:80]))
    ui.markdown(result.markdown())
    ui.status(f"results in {args.out}/")
    return 0
