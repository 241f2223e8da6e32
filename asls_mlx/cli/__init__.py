"""The `asls` command. Each subcommand is a small function over the public Python API.

Exit codes (also in `asls --help` and docs/cli.md): 0 done; 1 a problem the message on stderr names (bad
input, no such user, an update that was not committed, doctor found a problem); 2 the command line itself
is wrong (unknown command or option, a missing argument); 130 interrupted (Ctrl-C)."""

from __future__ import annotations

import argparse
import sys

from asls_mlx import ASLSError, __version__

EXIT_CODES = """exit codes:
  0    done
  1    a problem the message on stderr names (bad input, no such user, an update that was not
       committed, a problem `asls doctor` found)
  2    the command line is wrong (unknown command or option, missing or malformed argument)
  130  interrupted (Ctrl-C)

Output is plain, unwrapped text when piped; --json (profile, history, adapters, users, doctor,
train --status, import --from) prints one JSON document whose keys docs/cli.md lists."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line on stderr and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


class _IntermixedParser(_Parser):
    """Positionals after options too: `asls adapters export --format peft DIR`."""

    _inside = False

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        if self._inside:  # parse_known_intermixed_args calls back here
            return super().parse_known_args(args, namespace)
        self._inside = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._inside = False


def _user(p: argparse.ArgumentParser) -> None:
    p.add_argument("--user", default=None, help="user name (default: 'default'; `asls users` lists them)")


def _json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON document (keys: docs/cli.md)")


def _model(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help="mlx-lm model directory, converted model name or hub id (default: embedded SmolLM2-135M)")


def build_parser() -> argparse.ArgumentParser:
    from asls_mlx.cli import commands as c

    parser = _Parser(prog="asls", description="A personal assistant that learns you, on your machine.",
                     epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"asls {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def add(name: str, func, help: str, user: bool = True, model: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, epilog=EXIT_CODES,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        if user:
            _user(p)
        if model:
            _model(p)
        p.set_defaults(func=func)
        return p

    _chat_arguments(add("chat", _chat, "chat in the terminal (the default command)"))

    _learning_commands(add)
    _reading_commands(add)

    p = add("export", c.export, "write all your data (messages, feedback, profile, pairs, adapters list) to a JSONL file", model=False)
    p.add_argument("path", help="output file (.jsonl)")
    p = add("import", c.import_, "import a bundle written by `asls export`, or your history from ChatGPT or llm "
            "(all or nothing)", model=False)
    p.add_argument("path", help="an asls bundle (.jsonl), ChatGPT's conversations.json (or its export .zip), llm's logs.db")
    p.add_argument("--from", dest="source", choices=["asls", "chatgpt", "llm"], default="asls",
                   help="what the file is (default asls); chatgpt and llm conversations become sessions of --user, "
                        "profiled and mined like your own")
    p.add_argument("--rename", default=None, help="store an asls bundle under this user name")
    _json(p)

    p = add("forget", c.forget, "delete a session, a time range or everything — and adapters trained on it", model=False)
    what = _forget_learned(p.add_mutually_exclusive_group(required=True))
    what.add_argument("--session", type=int, help="session id (see `asls history`)")
    what.add_argument("--since", help="start of a time range, ISO date/time (e.g. 2026-11-01)")
    what.add_argument("--all", action="store_true", help="everything about this user")
    p.add_argument("--until", help="end of the time range (with --since)")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    p = add("models", c.models, "list the default and converted models", user=False)
    p.add_argument("--convert-default", action="store_true", help="fetch and convert the embedded default model now")
    p.add_argument("--export-hf", metavar="DIR", default=None, help="write the model (--model, default: embedded) in Hugging Face's layout")

    p = add("doctor", c.doctor, "check the installation: MLX, device, BLAS and its speed, paths", user=False, model=False)
    p.add_argument("--quick", action="store_true", help="skip measuring the reference BLAS")
    _json(p)

    _serve_arguments(add("serve", _serve, "an OpenAI-compatible local server that learns each user (the request's `user` field)", user=False))
    p = add("eval", c.evaluate, "simulated users and the paper's ablations: does personalization work?", user=False)
    _eval_arguments(p)
    return parser


def _chat_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-tokens", type=int, default=256, help="longest answer in tokens")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train", choices=["background", "idle", "wait", "next_start", "none"], default=None,
                   help="when a session ends: train in the background (default; it pauses while an answer is "
                        "written), in the background once you are idle (--idle-seconds; it pauses when you type), "
                        "wait for it, on next start, or never")
    p.add_argument("--idle-seconds", type=_positive, default=60.0, metavar="S",
                   help="--train idle: start (and resume) learning once you have not typed for this long (default 60)")
    p.add_argument("--no-profile", action="store_true", help="do not put the profile in the system prompt")


def _learning_commands(add) -> None:
    """`asls train` and `asls adapters`."""
    from asls_mlx.cli import learning as lc

    p = add("train", lc.train, "learn now from what is not learned yet (the latest session included), showing each phase")
    p.add_argument("--time-limit", "--budget", type=_positive, default=None, metavar="S", dest="time_limit",
                   help="a safety net: no optimizer step starts S seconds after training began (default 600). The "
                        "steps are decided by the new pairs, not by time, so a busy machine trains the same steps "
                        "(--budget is its old name)")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--status", action="store_true", help="show the background training run (phase, step, loss) and the last run")
    how.add_argument("--cancel", action="store_true", help="stop the background training run; the previous adapter stays")
    _json(p)

    p = add("adapters", lc.adapters, "list adapter versions and training runs, roll back, export for PEFT/vLLM, "
            "or fuse into an mlx-lm model")
    p.add_argument("--runs", action="store_true", help="list every training run: committed, rejected and why, "
                   "failed, cancelled, interrupted, with held-out accuracy, retention and steps")
    _json(p)
    _adapters_arguments(p)


def _reading_commands(add) -> None:
    """`asls profile`, `history` and `users`."""
    from asls_mlx.cli import commands as c

    p = add("profile", c.profile, "show the learned profile", model=False)
    p.add_argument("--evidence", action="store_true", help="each feature with its confidence and what you said or did that put it there")
    _json(p)
    p = add("history", c.history, "show recent messages", model=False)
    p.add_argument("--limit", type=int, default=20)
    _json(p)
    p = add("users", c.users, "list the users (sessions, messages, pairs, adapters, last use), or delete one",
            user=False, model=False)
    p.add_argument("--delete", metavar="NAME", default=None, help="delete this user with all their data and adapters")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    _json(p)


def _adapters_arguments(p: argparse.ArgumentParser) -> None:
    p.__class__ = _IntermixedParser
    p.add_argument("action", nargs="?", choices=["list", "rollback", "export", "fuse"], default="list")
    p.add_argument("version", nargs="?", default=None, metavar="VERSION|DIR",
                   help="rollback: the version to go back to (0 = base model); export, fuse: the output folder")
    p.add_argument("--format", choices=["peft"], default="peft", help="export: Hugging Face PEFT LoRA (vLLM, LoRAX, PEFT)")
    p.add_argument("--version", type=int, default=None, dest="export_version", metavar="N",
                   help="export, fuse: this version (default: the active one)")


def _serve_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    p.add_argument("--port", type=int, default=8080, help="port (0: a free one, printed at start)")
    p.add_argument("--api-key", default=None, help="clients must send it as 'Authorization: Bearer KEY' (required off loopback)")
    p.add_argument("--idle-minutes", type=float, default=30.0, help="a user's session ends after this long without a request")
    p.add_argument("--time-limit", "--train-budget", type=_seconds, default=None, metavar="S", dest="time_limit",
                   help="wall-clock safety net of each update's training (default 600 s; --train-budget is its old name)")
    p.add_argument("--quiet", action="store_true", help="do not log each request")


def _forget_learned(what):
    """`asls forget --feature NAME` / `--pair N`: one thing the profile learned, or one preference pair."""
    what.add_argument("--feature", metavar="NAME", help="one profile feature (e.g. headings, length, a topic); it leaves training too")
    what.add_argument("--pair", type=int, metavar="N", help="one preference pair (see `asls profile --evidence`); it leaves training")
    return what


def _eval_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="a smoke test of the whole loop: 2 personas, 1 seed")
    p.add_argument("--out", default="eval-results", help="output directory for results.json, results.md and plots")
    p.add_argument("--arms", default=None, help="comma-separated arms (default: all; quick: base,profile_prompt,asls)")
    p.add_argument("--personas", default=None, help="comma-separated personas")
    p.add_argument("--seeds", type=_seed_list, default=None, metavar="S,S,...",
                   help="seeds of the simulated users and of sampling; each persona x arm runs once per seed "
                        "(default: 0,1,2; quick: 0)")
    p.add_argument("--seed", type=int, default=None, help="one seed (the same as --seeds S)")
    p.add_argument("--jobs", type=_positive_int, default=None, metavar="N",
                   help="persona x seed parts run at once, each in its own process (default: one per core, as memory "
                        "allows; 1: all in this process)")
    p.add_argument("--max-tokens", type=_positive_int, default=None, metavar="N",
                   help="answer budget of the simulated chats and the held-out answers (default: quick 96, standard "
                        "160; the chat's own is 256): an answer the budget cuts off cannot end as a user wants")
    p.add_argument("--time-limit", "--train-budget", type=_seconds, default=None, metavar="S", dest="time_limit",
                   help="wall-clock safety net of each training update (default 600 s); the steps depend on the data "
                        "only, not on how busy the machine is (--train-budget is its old name)")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"give a whole number of 1 or more, not {text!r}")
    return value


def _seed_list(text: str) -> list[int]:
    try:
        seeds = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds are whole numbers separated by commas, not {text!r}") from None
    if not seeds:
        raise argparse.ArgumentTypeError("give at least one seed")
    return seeds


def _seconds(text: str, most: float = float("inf")) -> float:
    """A positive number of seconds below ``most`` (none by default: 1e6 is in effect no safety net)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value < most:
        bound = "a positive number of seconds" if most == float("inf") else f"between 0 and {most:g} seconds"
        raise argparse.ArgumentTypeError(f"must be {bound}, not {text}")
    return value


def _positive(text: str) -> float:
    """Seconds within a day (an idle wait, the chat's own training limit)."""
    return _seconds(text, 86400)


def _chat(args: argparse.Namespace) -> int:
    from asls_mlx.cli.chat import run_chat  # the chat imports the commands it offers as /slash commands

    return run_chat(args)


def _serve(args: argparse.Namespace) -> int:
    from asls_mlx.serve import main as serve_main  # loads http.server and the model only for this command

    return serve_main(args)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version"):
        argv = ["chat", *argv]
    try:
        args = parser.parse_args(argv)
        return int(args.func(args) or 0)
    except ASLSError as e:
        print(f"asls: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("asls: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except OSError as e:  # a path the OS refuses (too long, unreadable, disk full): the user's to fix
        print(f"asls: error: {e.strerror or e}{f': {e.filename}' if e.filename else ''}"[:300], file=sys.stderr)
        return 1
