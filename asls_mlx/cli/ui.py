"""Everything that draws on the terminal (rich). The chat loop and commands call these verbs only."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.live import Live
from rich.markdown import Markdown
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text


class ChatUI:
    """Prompting, streaming answers as markdown, status lines and notices."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console(highlight=False)
        self._live: Live | None = None
        self._answer = ""

    def banner(self, text: str) -> None:
        self.console.print(Text(text, style="bold cyan"))

    def status(self, text: str) -> None:
        self.console.print(Text(text, style="dim"))

    def notice(self, text: str) -> None:
        self.console.print(Text(text, style="yellow"))

    def error(self, text: str) -> None:
        self.console.print(Text(f"error: {text}", style="bold red"))

    def info(self, renderable) -> None:
        self.console.print(renderable)

    def prompt(self, label: str = "you") -> str:
        """Read one message. A line ending in a backslash continues on the next line (multi-line input)."""
        lines = [self.console.input(f"[bold green]{label}>[/] ")]
        while lines[-1].endswith("\\"):
            lines[-1] = lines[-1][:-1]
            lines.append(self.console.input("[green]...[/] "))
        return "\n".join(lines)

    def start_answer(self) -> None:
        self._answer = ""
        self._live = Live(Markdown(""), console=self.console, refresh_per_second=8, vertical_overflow="visible")
        self._live.start()

    def stream_text(self, text: str) -> None:
        self._answer += text
        if self._live is not None:
            self._live.update(Markdown(self._answer))

    def end_answer(self, footer: str | None = None) -> None:
        if self._live is not None:
            self._live.update(Markdown(self._answer))
            self._live.stop()
            self._live = None
        if footer:
            self.status(footer)

    def table(self, title: str, columns: list[str], rows: list[list[object]]) -> None:
        table = Table(title=title, title_justify="left")
        for c in columns:
            table.add_column(c)
        for r in rows:
            table.add_row(*(str(x) for x in r))
        self.console.print(table)

    def markdown(self, text: str) -> None:
        self.console.print(Markdown(text))

    @contextmanager
    def progress(self, description: str, total: int | None = None) -> Iterator["ProgressBar"]:
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
