"""Everything that draws on the terminal (rich). The chat loop and commands call these verbs only.

On a terminal: colours, tables, markdown, live progress bars. Piped or redirected (``plain``): plain lines,
never wrapped, tables as tab-separated columns, and progress as one line per phase and every tenth of the
steps, so a log or a script sees what happens as it happens."""

from __future__ import annotations

import json
import re
import sys
import time
from contextlib import contextmanager
from typing import Any, Iterator

from rich.console import Console, Group
from rich.live import Live
from rich.markdown import Markdown
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

JSON_VERSION = 1  # the "version" of every --json document (docs/cli.md); bumped only when a key changes meaning


class ChatUI:
    """Prompting, streaming answers as markdown, status lines and notices."""

    def __init__(self, console: Console | None = None, plain: bool | None = None):
        self.console = console or Console(highlight=False)
        self.plain = (not self.console.is_terminal) if plain is None else plain
        self._live: Live | None = None
        self._answer = ""
        self._note: str | None = None

    def _line(self, text: str) -> None:
        self.console.file.write(text + "\n")
        self.console.file.flush()

    def _say(self, text: str, style: str) -> None:
        if self.plain:
            self._line(text)
        else:
            self.console.print(Text(text, style=style))

    def banner(self, text: str) -> None:
        self._say(text, "bold cyan")

    def status(self, text: str) -> None:
        self._say(text, "dim")

    def notice(self, text: str) -> None:
        self._say(text, "yellow")

    def error(self, text: str) -> None:
        self._say(f"error: {text}", "bold red")

    def info(self, renderable) -> None:
        self.console.print(renderable)

    def json(self, kind: str, data: dict[str, Any]) -> None:
        """One JSON document: {"version": 1, "kind": ..., **data} (docs/cli.md lists each kind's keys)."""
        self._line(json.dumps({"version": JSON_VERSION, "kind": kind, **data}, ensure_ascii=False, indent=2,
                              sort_keys=True, allow_nan=False))

    def prompt(self, label: str = "you") -> str:
        """Read one message. A line ending in a backslash continues on the next line (multi-line input)."""
        lines = [self._input(f"[bold green]{label}>[/] ")]
        while lines[-1].endswith("\\"):
            lines[-1] = lines[-1][:-1]
            lines.append(self._input("[green]...[/] "))
        return "\n".join(lines)

    def _input(self, label: str) -> str:
        line = self.console.input(label)
        if self.plain and not sys.stdin.isatty():  # piped in: echo it, so the transcript reads as a conversation
            self._line(line)
        return line

    def start_answer(self, note: str | None = None) -> None:
        """Open the answer area; ``note`` (e.g. "learning… 40%, paused while answering") shows under the
        answer while it streams, on a terminal only (a piped log gets the footer at the end)."""
        self._answer, self._note = "", note
        if self.plain:
            return
        self._live = Live(self._answer_view(), console=self.console, refresh_per_second=8, vertical_overflow="visible")
        self._live.start()

    def set_note(self, note: str | None) -> None:
        if note != self._note:
            self._note = note
            if self._live is not None:
                self._live.update(self._answer_view(), refresh=True)  # at most once a second: show it now

    def _answer_view(self):
        if not self._note:
            return Markdown(self._answer)
        return Group(Markdown(self._answer), Text(self._note, style="dim"))

    def stream_text(self, text: str) -> None:
        self._answer += text
        if self._live is not None:
            self._live.update(self._answer_view())
        elif self.plain:
            self.console.file.write(text)
            self.console.file.flush()

    def end_answer(self, footer: str | None = None) -> None:
        if self._live is not None:
            self._live.update(Markdown(self._answer))  # the note goes: the footer says where learning is now
            self._live.stop()
            self._live = None
        elif self.plain:
            self._line("")
        if footer:
            self.status(footer)

    def table(self, title: str, columns: list[str], rows: list[list[object]]) -> None:
        if self.plain:
            self._line(title)
            for r in [columns, *rows]:
                self._line("\t".join(" ".join(str(x).split()) for x in r))
            return
        table = Table(title=title, title_justify="left")
        for c in columns:
            table.add_column(c)
        for r in rows:
            table.add_row(*(str(x) for x in r))
        self.console.print(table)

    def markdown(self, text: str) -> None:
        if self.plain:  # markdown's emphasis markers are noise in a log; the rest reads as it is
            self._line(re.sub(r"(?<!\w)_(\S.*?)_(?!\w)", r"\1", text.replace("**", "")))
        else:
            self.console.print(Markdown(text))

    @contextmanager
    def progress(self, description: str, total: int | None = None, unit: str = "step") -> Iterator["ProgressBar | PlainProgress"]:
        if self.plain:
            bar = PlainProgress(self._line, description, unit)
            yield bar
            bar.finish()
            return
        columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"), TimeElapsedColumn()]
        with Progress(*columns, console=self.console, transient=False) as p:
            task = p.add_task(description, total=total, info="")
            yield ProgressBar(p, task)


class ProgressBar:
    def __init__(self, progress: Progress, task):
        self._p, self._task = progress, task

    def update(self, completed: float | None = None, total: float | None = None, info: str = "", description: str | None = None) -> None:
        kwargs = {"info": info}
        if completed is not None:
            kwargs["completed"] = completed
        if total is not None:
            kwargs["total"] = total
        if description is not None:
            kwargs["description"] = description
        self._p.update(self._task, **kwargs)


class PlainProgress:
    """Progress as lines: each new phase, then a step line at every tenth of the steps (and the last)."""

    def __init__(self, write, description: str, unit: str = "step"):
        self._write, self._t0, self._unit = write, time.monotonic(), unit
        self._description, self._shown_tenth, self._shown_step, self._total = description, -1, None, None
        self._write(f"{description} …")

    def update(self, completed: float | None = None, total: float | None = None, info: str = "", description: str | None = None) -> None:
        if description is not None and description != self._description:
            self._description, self._shown_tenth = description, -1
            self._write(f"{description} … ({self._elapsed()})")
        self._total = total if total is not None else self._total
        if completed is None or not self._total:
            return
        tenth = int(10 * completed / self._total)
        if tenth > self._shown_tenth and completed != self._shown_step:  # (the total may shrink to the steps run)
            self._shown_tenth, self._shown_step = tenth, completed
            self._write(f"  {self._unit} {int(completed)}/{int(self._total)}{f' · {info}' if info else ''} ({self._elapsed()})")

    def finish(self) -> None:
        self._write(f"done ({self._elapsed()})")

    def _elapsed(self) -> str:
        return f"{time.monotonic() - self._t0:.0f} s"
