"""Record a real short `asls chat` on the embedded model and save it as the README's SVG picture.

    python docs/sample_session.py        # writes docs/sample-session.svg

The chat is the real command (`asls chat`, training in the background as by default) with a fresh data
home; only the terminal is replaced: the typed lines come from SCRIPT (echoed as a user sees them), each
answer is drawn once in its final form (a terminal redraws it as tokens arrive), and rich records
everything the chat prints. The background training it starts is stopped afterwards: the picture ends
where the user leaves.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.markdown import Markdown

SCRIPT = [
    "Give me three tips for sleeping better.",
    "/good",
    "What is the capital of France? One sentence, please.",
    "/quit",
]
OUT = Path(__file__).resolve().parent / "sample-session.svg"


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="asls-sample-"))  # a newcomer: no history yet
    os.environ["ASLS_HOME"] = str(home)
    from asls_mlx import cli
    from asls_mlx.cli import chat, commands, ui

    console = Console(record=True, width=100, force_terminal=False, highlight=False)
    lines = iter(SCRIPT)

    class RecordedUI(ui.ChatUI):
        def __init__(self, _console: Console | None = None):
            super().__init__(console, plain=False)  # draw as on a terminal, into the recording

        def prompt(self, label: str = "you") -> str:
            line = next(lines, None)
            if line is None:
                raise EOFError
            self.console.print(f"[bold green]{label}>[/] {line}")
            return line

        def start_answer(self) -> None:
            self._answer = ""

        def stream_text(self, text: str) -> None:
            self._answer += text

        def end_answer(self, footer: str | None = None) -> None:
            self.console.print(Markdown(self._answer))
            if footer:
                self.status(footer)

    chat.ChatUI = commands.ChatUI = RecordedUI
    console.print("[bold]$ asls chat[/]")
    code = cli.main(["chat", "--max-tokens", "160"])
    console.save_svg(str(OUT), title="asls chat")
    print(f"exit code {code}; wrote {OUT}", file=sys.stderr)
    for task in Path("/proc/self/task").glob("*/children"):  # the background trainer this run started
        for pid in task.read_text().split():
            if b"asls_mlx.background" in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(int(pid), signal.SIGTERM)


if __name__ == "__main__":
    main()
