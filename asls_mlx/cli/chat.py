"""The terminal chat: streamed answers, feedback commands, and the learning loop between sessions."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from asls_mlx import ASLSError
from asls_mlx.cli import commands, learned, learning
from asls_mlx.cli.ui import ChatUI

HELP = """\
**Talk normally** — end a line with `\\` to continue on the next one. Ctrl-C stops an answer.

| command | what it does |
|---|---|
| `/good`, `/bad` | thumbs up / down on the last answer |
| `/regen` | a new answer to your last message (the old one is remembered as worse) |
| `/edit [text]` | your corrected version of the last answer (`$EDITOR` or typed here) |
| `/profile` | what asls has learned about you, and what changed |
| `/learned` | each thing it learned, how sure it is, and what you said that taught it; the newest pairs |
| `/train` | learn now from this session so far (and anything not learned yet), with each phase shown |
| `/adapters`, `/rollback [v]` | adapter versions and the latest training runs (committed, rejected and why); go back to one (0 = base model) |
| `/history` | recent messages |
| `/forget` | forget this session (and adapters trained on it) |
| `/forget feature X`, `/forget pair N` | remove one thing it learned, or one pair; neither is trained on again |
| `/new` | end this session (learn from it) and start another |
| `/help`, `/quit` | this help; end the session and leave |
"""


class ChatSession:
    def __init__(self, args: argparse.Namespace, ui: ChatUI):
        from asls_mlx import Assistant, AssistantConfig

        self.ui = ui
        self.mode = args.train or "background"
        config = AssistantConfig(max_tokens=args.max_tokens, temperature=args.temperature, seed=args.seed,
                                 train_after_session=self.mode, profile_in_prompt=not args.no_profile,
                                 train_idle_s=getattr(args, "idle_seconds", 60.0))
        with ui.console.status("loading model"):
            self.a = Assistant(user=args.user, model=args.model, config=config, progress=ui.status)
            self.a.engine  # load now, not at the first question
        if self.mode == "next_start" and self.a.pairs_waiting():
            learning.train_with_progress(self.a, ui)

    def status_line(self) -> str:
        a = self.a
        parts = [a.user.name, a.engine.model_id, f"adapter v{a.adapter_version}" if a.adapter_version else "base model",
                 f"{a.pairs_waiting()} pairs waiting"]
        learning = a.learning_status()  # "learning… 40%", "learning… 40%, paused while answering", ...
        if learning:
            parts.append(learning)
        return " · ".join(parts)

    def answer(self, stream) -> None:
        ui = self.ui
        for notice in self._drain_notices():
            ui.banner(notice)
        ui.start_answer()
        last, noted = None, 0.0
        try:
            for chunk in stream:
                if last is None:
                    for notice in self._drain_notices():  # an adapter swapped in just before this answer
                        ui.banner(notice)
                if time.monotonic() - noted >= 1.0:  # the background update, under the answer (it waits for it)
                    ui.set_note(self.a.learning_status())
                    noted = time.monotonic()
                ui.stream_text(chunk.text)
                last = chunk
        except KeyboardInterrupt:
            stream.close()
            ui.end_answer("(interrupted — the partial answer is kept)")
            return
        footer = self.status_line()
        if last is not None:
            footer += f" · {last.generation_tps:.1f} tok/s"
            if last.truncated:
                footer += " · early turns left out to fit the context window"
            if last.finish_reason == "length":  # else a reply that stops mid-sentence looks like the whole answer
                footer += f" · cut off at {self.a.config.max_tokens} tokens (asls chat --max-tokens N)"
        ui.end_answer(footer)

    def _mined(self, session_id: int | None) -> str:
        """ "3 preference pairs mined from this session (1 is held out: ...)" — the session's pairs, also
        those /train mined before it ended."""
        from asls_mlx import pair_counts

        c = pair_counts(self.a.store, self.a.user, [session_id])
        text = f"{c.mined} preference pair{'' if c.mined == 1 else 's'} mined from this session"
        if c.held_out:
            who = "it is" if c.mined == 1 else "all are" if c.held_out == c.mined else f"{c.held_out} of them are"
            text += (f" ({who} held out: they check that an "
                     "adapter got better, they do not train it)")
        return text

    def _drain_notices(self) -> list[str]:
        notices, self.a.notices[:] = list(self.a.notices), []
        return notices

    def end(self) -> None:
        a, ui = self.a, self.ui
        if a.session_id is None:
            return
        summary = a.end_session(train=self.mode)
        if summary.changes:
            ui.status("profile: " + "; ".join(summary.changes))
        ui.status(self._mined(summary.session_id))
        if summary.training is not None:
            (ui.banner if summary.training.committed else ui.notice)(summary.training.summary())
        elif summary.background and self.mode == "idle":
            ui.status(f"the adapter trains in the background once you have not typed for {a.config.train_idle_s:.0f} s "
                      "or have left the chat (it pauses when you type); the next answer uses it when it is ready")
        elif summary.background:
            ui.status("training the adapter in the background (it pauses while I answer); the next answer will use "
                      "it when it is ready")

    # -- commands ---------------------------------------------------------------------------------
    def command(self, line: str) -> bool:
        """Run a /command; False means leave the chat."""
        name, _, rest = line.partition(" ")
        a, ui = self.a, self.ui
        if name in ("/quit", "/exit", "/q"):
            return False
        if name == "/help":
            ui.markdown(HELP)
        elif name == "/good":
            a.good()
            ui.status("noted: good answer")
        elif name == "/bad":
            a.bad()
            ui.status("noted: bad answer (try /regen or /edit)")
        elif name in ("/regen", "/regenerate"):
            a.last_answer()  # no answer yet: the error shows before the answer area opens
            self.answer(a.stream_regenerate())
        elif name == "/edit":
            last = a.last_answer()
            text = rest.strip() or self._edited_text(last)
            if text:
                a.edit(text)
                ui.status("noted: your version replaces the answer")
        elif name == "/profile":
            commands.show_profile(a, ui)
        elif name == "/train":
            learning.train_with_progress(a, ui)
        elif name == "/adapters":
            learning.show_adapters(a, ui, runs=5)
        elif name == "/rollback":
            version = _int(rest) if rest.strip() else None
            v = a.rollback(version)
            ui.status(f"active adapter: {'v' + str(v) if v else 'none (base model)'}")
        elif name == "/history":
            commands.show_history(a, ui)
        elif name == "/learned":
            learned.show_learned(a, ui)
        elif name == "/forget" and learned.forget_command(a, ui, rest):
            pass
        elif name == "/forget":
            if a.session_id is None:
                ui.status("nothing in this session to forget")
            else:
                s = a.forget(session_id=a.session_id)
                ui.status(f"forgot this session ({s.messages} messages, {s.pairs} pairs)")
        elif name == "/new":
            self.end()
            ui.status("new session")
        else:
            ui.error(f"unknown command {name}; /help lists them")
        return True

    def _edited_text(self, last: str) -> str:
        editor = os.environ.get("EDITOR")
        if editor and sys.stdin.isatty():
            with tempfile.NamedTemporaryFile("w+", suffix=".md", delete=False) as f:
                f.write(last)
            try:
                subprocess.run([*editor.split(), f.name], check=False)
                return Path(f.name).read_text().strip()
            finally:
                os.unlink(f.name)
        self.ui.status("type your version of the answer (end a line with \\ to continue):")
        return self.ui.prompt("edit").strip()


def _int(text: str) -> int:
    try:
        return int(text.strip().lstrip("v"))
    except ValueError:
        raise ASLSError(f"not a version number: {text.strip()!r}") from None


def run_chat(args: argparse.Namespace) -> int:
    ui = ChatUI()
    if args.max_tokens < 1:
        raise ASLSError("--max-tokens must be at least 1")
    if not 0 <= args.temperature <= 5:
        raise ASLSError("--temperature must be between 0 and 5")
    session = ChatSession(args, ui)
    a = session.a
    ui.banner(f"asls — {session.status_line()}. /help for commands, /quit to leave.")
    interrupts = 0
    try:
        while True:
            try:
                line = ui.prompt().strip()
                interrupts = 0
            except KeyboardInterrupt:
                interrupts += 1
                if interrupts >= 2:
                    break
                ui.notice("(Ctrl-C again or /quit to leave)")
                continue
            except EOFError:
                break
            if not line:
                continue
            a.note_activity()  # an update in idle mode waits until you have not typed for a while
            try:
                if line.startswith("/"):
                    if not session.command(line):
                        break
                else:
                    session.answer(a.stream(line))
            except ASLSError as e:
                ui.error(str(e))
        session.end()
    finally:
        a.close()
    ui.status("bye")
    return 0
