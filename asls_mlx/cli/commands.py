"""Subcommand bodies. They call the public API and draw through `ui`; no rich here."""

from __future__ import annotations

import argparse

from asls_mlx.cli.ui import ChatUI


def doctor(args: argparse.Namespace) -> int:
    from asls_mlx import diagnostics

    ui = ChatUI()
    report = diagnostics.run(compare_reference=not args.quick)
    ui.table("asls doctor", ["check", "result"], [list(r) for r in report.rows])
    for problem in report.problems:
        ui.error(problem)
    return 1 if report.problems else 0


def models(args: argparse.Namespace) -> int:
    from asls_mlx.engine import list_models
    from asls_mlx.engine.models import default_model_dir

    ui = ChatUI()
    if args.convert_default:
        ui.status(f"default model ready: {default_model_dir(progress=ui.status)}")
    rows = [[m.name, m.kind, m.size_mb or "", m.path] for m in list_models()]
    ui.table("models", ["name", "kind", "MB", "path"], rows)
    return 0


def chat(args: argparse.Namespace) -> int:
    from asls_mlx.cli.chat import run_chat

    return run_chat(args)
