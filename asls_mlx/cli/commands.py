"""Subcommand bodies. They call the public API (``asls_mlx.__all__``, ``asls_mlx.evaluation``,
``asls_mlx.diagnostics``) and draw through `ui`; no rich here. Training and adapters: `learning.py`.

Commands that only read (profile, history, export, adapters, forget) check the user exists first
(``require_user``): asking about a name never used is an error, not a new user."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from dataclasses import asdict
from pathlib import Path

from asls_mlx import ASLSError
from asls_mlx.cli import learned
from asls_mlx.cli.ui import ChatUI


def _assistant(args: argparse.Namespace, exclusive: bool = False, ui: ChatUI | None = None, **config):
    from asls_mlx import Assistant, AssistantConfig

    return Assistant(user=args.user, model=getattr(args, "model", None), config=AssistantConfig(**config),
                     progress=(ui or ChatUI()).status, exclusive=exclusive)


def _existing(args: argparse.Namespace, exclusive: bool = False, ui: ChatUI | None = None, **config):
    """The assistant of a user that must exist already (read commands)."""
    from asls_mlx import require_user

    args.user = require_user(args.user)
    return _assistant(args, exclusive, ui, **config)


def _time(ts: float | None) -> str:
    return "" if ts is None else dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


def doctor(args: argparse.Namespace) -> int:
    from asls_mlx import diagnostics

    ui = ChatUI()
    report = diagnostics.run(compare_reference=not args.quick)
    if args.json:
        ui.json("doctor", {"ok": not report.problems, "problems": list(report.problems),
                           "checks": [{"check": k, "result": v} for k, v in report.rows]})
        return 1 if report.problems else 0
    ui.table("asls doctor", ["check", "result"], [list(r) for r in report.rows])
    for problem in report.problems:
        ui.error(problem)
    return 1 if report.problems else 0


def models(args: argparse.Namespace) -> int:
    from asls_mlx import default_model_dir, list_models

    ui = ChatUI()
    if args.convert_default:
        ui.status(f"default model ready: {default_model_dir(progress=ui.status)}")
    if args.export_hf:
        from asls_mlx import export_hf_model

        ui.status(f"Hugging Face model written to {export_hf_model(args.export_hf, model=args.model)}")
        return 0
    rows = [[m.name, m.kind, m.size_mb or "", m.path] for m in list_models()]
    ui.table("models", ["name", "kind", "MB", "path"], rows)
    return 0


def users(args: argparse.Namespace) -> int:
    from asls_mlx import delete_user, list_users, require_user

    ui = ChatUI()
    if args.delete is not None:
        name = require_user(args.delete)
        _confirm(args, f"delete user {name!r} with all their history, profile, pairs and adapters")
        gone = delete_user(name)
        ui.status(f"deleted user {gone.name}: {gone.sessions} sessions, {gone.messages} messages, "
                  f"{gone.pairs} pairs, {gone.adapters} adapters")
        return 0
    found = list_users()
    if args.json:
        ui.json("users", {"users": [u.to_dict() for u in found]})
        return 0
    if not found:
        ui.status("no users yet: `asls chat` makes the 'default' user, `asls chat --user NAME` another")
        return 0
    rows = [[u.name, u.sessions, u.messages, u.pairs, u.adapters, f"v{u.active_adapter}" if u.active_adapter else "base",
             _time(u.last_used)] for u in found]
    ui.table("users", ["user", "sessions", "messages", "pairs", "adapters", "active", "last used"], rows)
    return 0


def _confirm(args: argparse.Namespace, what: str) -> None:
    if args.yes:
        return
    if not sys.stdin.isatty():
        raise ASLSError(f"{what}: add --yes to confirm (no terminal to ask)")
    if input(f"{what}? [y/N] ").strip().lower() not in ("y", "yes"):
        raise ASLSError("cancelled; nothing was changed")


def profile(args: argparse.Namespace) -> int:
    ui = ChatUI()
    a = _existing(args)
    try:
        if args.json:
            p = a.profile
            doc = {"user": a.user.name, "profile": p.to_dict(), "rendered": p.render(),
                   "last_changes": a.profile_changes(), "pairs_waiting": a.pairs_waiting()}
            if args.evidence:
                doc["learned"] = [asdict(f) for f in a.learned()]
            ui.json("profile", doc)
        elif args.evidence:
            learned.show_learned(a, ui)
        else:
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
    a = _existing(args)
    try:
        if args.json:
            ui.json("history", {"user": a.user.name, "messages": [
                {"id": m.id, "session": m.session_id, "role": m.role, "text": m.text, "created_at": m.created_at,
                 "edited": m.edited_content is not None} for m in a.history(args.limit)]})
        else:
            show_history(a, ui, args.limit)
    finally:
        a.close()
    return 0


def show_history(a, ui: ChatUI, limit: int = 20) -> None:
    rows = [[m.session_id, _time(m.created_at), m.role, m.text if ui.plain else _clip(m.text)] for m in a.history(limit)]
    if not rows:
        ui.status("no history yet")
        return
    ui.table(f"history of {a.user.name}", ["session", "time", "role", "text"], rows)


def _clip(text: str, n: int = 70) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def export(args: argparse.Namespace) -> int:
    target = Path(args.path)
    if not target.parent.is_dir():
        raise ASLSError(f"cannot export to {target}: the folder {target.parent} does not exist; create it first")
    if target.is_dir():
        raise ASLSError(f"cannot export to {target}: it is a folder; give a file name like {target / 'me.jsonl'}")
    a = _existing(args)
    try:
        path = a.export(target)
    finally:
        a.close()
    ChatUI().status(f"exported {a.user.name} to {path}")
    return 0


def import_(args: argparse.Namespace) -> int:
    from asls_mlx import import_history, import_user

    path = Path(args.path)
    if not path.is_file():
        raise ASLSError(f"no such file: {path}")
    ui = ChatUI()
    if args.source == "asls":
        if args.user is not None:
            raise ASLSError("an asls bundle names its user; use --rename NAME to store it under another name")
        ui.status(f"imported user {import_user(path, rename=args.rename)}")
        return 0
    if args.rename is not None:
        raise ASLSError(f"--rename is for asls bundles; with --from {args.source} use --user NAME")
    if args.json:  # the document alone on stdout
        ui.json("import", import_history(path, args.source, user=args.user).to_dict())
        return 0
    with ui.progress(f"reading {path.name}", total=None, unit="conversation") as bar:
        summary = import_history(path, args.source, user=args.user,
                                 progress=lambda done, total: bar.update(done, total, description="profiling and mining"))
    ui.banner(summary.line())
    if summary.profile_changes:
        ui.status("profile: " + "; ".join(summary.profile_changes))
    if summary.pairs_mined - summary.held_out > 0:
        ui.status(f"`asls train --user {summary.user}` learns from them now (or the next chat session does)")
    return 0


def forget(args: argparse.Namespace) -> int:
    if args.feature is not None or args.pair is not None:  # one feature or pair: small and targeted, no question
        a = _existing(args, exclusive=True)
        try:
            learned.forget_feature(a, ChatUI(), args.feature) if args.feature is not None else learned.forget_pair(a, ChatUI(), args.pair)
        finally:
            a.close()
        return 0
    if args.until and not args.since:
        raise ASLSError("--until needs --since")
    since, until = _when(args.since), _when(args.until)
    if since is not None and until is not None and until <= since:
        raise ASLSError(f"--until {args.until} is not after --since {args.since}; swap them")
    from asls_mlx import require_user

    args.user = require_user(args.user)
    what = f"session {args.session}" if args.session is not None else ("everything" if args.all else f"messages since {args.since}")
    _confirm(args, f"forget {what} of {args.user}, and adapters trained on it")
    a = _assistant(args, exclusive=True)
    try:
        summary = a.forget(session_id=args.session, since=since, until=until, everything=args.all)
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


def evaluate(args: argparse.Namespace) -> int:
    from asls_mlx import evaluation

    ui = ChatUI()
    arms = args.arms.split(",") if args.arms else None
    personas = args.personas.split(",") if args.personas else None
    with ui.progress("evaluating", total=None) as bar:
        result = evaluation.main_eval(quick=args.quick, out=Path(args.out), arms=arms, personas=personas,
                                      model=args.model, seed=args.seed, seeds=args.seeds, train_budget_s=args.time_limit,
                                      jobs=args.jobs, max_tokens=args.max_tokens,
                                      progress=lambda msg: bar.update(info=str(msg)[:80]))
    ui.markdown(result.markdown())
    ui.status(f"results in {args.out}/")
    return 0
