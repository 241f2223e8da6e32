"""The `asls` command. Each subcommand is a small function over the public Python API."""

from __future__ import annotations

import argparse
import sys

from asls_mlx.errors import ASLSError


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line on stderr and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--user", default=None, help="user name (default: the default user)")
    p.add_argument("--model", default=None, help="mlx-lm model directory, converted model name or hub id (default: embedded SmolLM2-135M)")


def build_parser() -> argparse.ArgumentParser:
    from asls_mlx.cli import commands

    parser = _Parser(prog="asls", description="A personal assistant that learns you, on your machine.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("chat", help="chat in the terminal (default)")
    _common(p)
    p.add_argument("--max-tokens", type=int, default=256, help="longest answer in tokens")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--seed", type=int, default=None)
    p.set_defaults(func=commands.chat)

    p = sub.add_parser("doctor", help="check the installation: MLX, device, BLAS speed, paths")
    p.add_argument("--quick", action="store_true", help="skip measuring the reference BLAS")
    p.set_defaults(func=commands.doctor)

    p = sub.add_parser("models", help="list the default and converted models")
    p.add_argument("--convert-default", action="store_true", help="fetch and convert the embedded default model now")
    p.set_defaults(func=commands.models)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["chat", *(argv or [])])
    try:
        return int(args.func(args) or 0)
    except ASLSError as e:
        print(f"asls: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("asls: interrupted", file=sys.stderr)
        return 130
