"""The chat first: a background adapter update gives the CPU back while an answer is being written, and (in
``idle`` mode) while the user is active.

Cooperative and across processes, through two kinds of small files beside the history:

- ``<home>/answering/<pid>.json`` (pid, time, user) is up while that process writes an answer, in any asls
  front end (the chat, the Python API, a notebook, ``asls serve``), and removed when the answer ends, also on
  an error. Any answer pauses every background update under the same home: they share the CPU whoever the
  user is. One file per process, so one process ending its answer never clears another's.
- ``<user dir>/activity.json`` (pid, time) is the last time the user sent a message or an answer ended. An
  update in ``idle`` mode waits until it is ``idle_s`` old.

A marker whose process has exited, or that is older than ``STALE_S`` (a stream abandoned without being
closed), is ignored, so a crash never stalls learning for good. The background worker asks a
:class:`YieldGate` between optimizer steps and between the update's phases; it cannot stop inside a step,
so an answer waits at most for the step in flight.
"""

from __future__ import annotations

import json
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from asls_mlx.paths import pid_alive, private_dir

STALE_S = 300.0  # an answer refreshes its marker every REFRESH_S; a marker this old was left behind
REFRESH_S = 30.0
# Under back-to-back answers (``asls serve`` with many users) the update would never run; after waiting this long
# for answers it takes one step (a few seconds of shared CPU) and then yields again. A chat answer is far shorter.
MAX_ANSWER_WAIT_S = 60.0
ANSWERING_DIR = "answering"
ACTIVITY_FILE = "activity.json"
ANSWERING = "answering"  # YieldGate.reason(): an answer is being written
USER_ACTIVE = "user active"  # YieldGate.reason(): idle mode, the user was active less than idle_s ago

_lock = threading.Lock()
_depth: dict[Path, int] = {}  # marker file -> answers this process writes now (streams may interleave)


def _write(path: Path, record: dict) -> None:
    """Atomic (temp file + rename), owner-only. No fsync: a marker need not outlive a power cut."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(record))
    os.replace(tmp, path)


def _read(path: Path) -> dict | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _fresh(record: dict | None, now: float, max_age_s: float = STALE_S) -> bool:
    """Written by a process that still runs, less than ``max_age_s`` ago."""
    if record is None or not pid_alive(record.get("pid")):
        return False
    try:
        return now - float(record.get("time")) <= max_age_s
    except (TypeError, ValueError):
        return False


class AnswerMarker:
    """The answering marker of this process; :meth:`refresh` keeps a long answer's marker from going stale."""

    def __init__(self, home: Path, user: str = ""):
        self.path = private_dir(Path(home) / ANSWERING_DIR) / f"{os.getpid()}.json"
        self.user = user
        self._written = 0.0

    def write(self) -> None:
        self._written = time.time()
        _write(self.path, {"pid": os.getpid(), "time": self._written, "user": self.user})

    def refresh(self) -> None:
        if time.time() - self._written > REFRESH_S and self.path in _depth:
            self.write()


@contextmanager
def answering(home: Path, user_dir: Path | None = None, user: str = "") -> Iterator[AnswerMarker]:
    """Hold the answering marker while the block writes an answer (nested or interleaved answers of one process
    share one file, removed when the last ends); the user's activity is noted at the start and at the end."""
    marker = AnswerMarker(home, user)
    with _lock:
        _depth[marker.path] = _depth.get(marker.path, 0) + 1
        if _depth[marker.path] == 1:
            marker.write()
    if user_dir is not None:
        note_activity(user_dir)
    try:
        yield marker
    finally:
        with _lock:
            _depth[marker.path] -= 1
            if _depth[marker.path] == 0:
                del _depth[marker.path]
                marker.path.unlink(missing_ok=True)
        if user_dir is not None:
            note_activity(user_dir)


def answering_now(home: Path, max_age_s: float = STALE_S) -> list[dict]:
    """The live answering markers under ``home`` (other processes' and this one's); stale ones are ignored."""
    folder, now = Path(home) / ANSWERING_DIR, time.time()
    try:
        names = [n for n in os.listdir(folder) if n.endswith(".json") and not n.startswith(".")]
    except OSError:
        return []
    records = [_read(folder / n) for n in names]
    return [r for r in records if _fresh(r, now, max_age_s)]


def note_activity(user_dir: Path) -> None:
    """The user did something now (sent a message, an answer ended): an ``idle`` update waits from here."""
    _write(Path(user_dir) / ACTIVITY_FILE, {"pid": os.getpid(), "time": time.time()})


def seconds_idle(user_dir: Path) -> float | None:
    """Seconds since the user's last activity; None when there is none, or the process that noted it has exited
    (the chat was closed: the user is away)."""
    record = _read(Path(user_dir) / ACTIVITY_FILE)
    if record is None or not pid_alive(record.get("pid")):
        return None
    try:
        return max(0.0, time.time() - float(record.get("time")))
    except (TypeError, ValueError):
        return None


_pause_hook: Callable[[], float] | None = None  # this process's (the background worker's): its gate's wait


def set_pause_hook(hook: Callable[[], float] | None) -> None:
    """Install (None: remove) the process's pause hook. The background worker installs its gate's ``wait``, so
    long loops with no step boundary of their own (batched decoding: the self-labelled samples, the gate's
    answers) give way between tokens through :func:`pause_point`; everywhere else it is a no-op."""
    global _pause_hook
    _pause_hook = hook


def pause_point() -> float:
    """Wait here while the process's pause hook says so; the seconds waited (0.0 without a hook)."""
    return _pause_hook() if _pause_hook is not None else 0.0


class YieldGate:
    """When a background update must wait: while any process under ``home`` writes an answer (unless ``answers``
    is False), and (``idle_s`` given: the ``idle`` mode) until the user has been idle for ``idle_s`` seconds.

    ``wait()`` is the update's pause hook: called between steps and phases, it blocks while :meth:`reason`
    says so (``should_stop()`` ends the wait) and returns the seconds it waited. ``on_change(reason)`` hears
    each change (None: resumed), so the worker can show "paused while answering".
    """

    def __init__(self, home: Path, user_dir: Path, idle_s: float | None = None,
                 should_stop: Callable[[], bool] | None = None, on_change: Callable[[str | None], None] | None = None,
                 poll_s: float = 0.2, answers: bool = True, max_answer_wait_s: float = MAX_ANSWER_WAIT_S):
        self.home, self.user_dir, self.idle_s, self.poll_s = Path(home), Path(user_dir), idle_s, poll_s
        self.answers, self.max_answer_wait_s = answers, max_answer_wait_s
        self._should_stop = should_stop or (lambda: False)
        self._on_change = on_change or (lambda _reason: None)
        self.paused_s = 0.0  # all the time this gate has made the update wait

    def reason(self) -> str | None:
        """Why the update must wait now (ANSWERING, USER_ACTIVE), or None."""
        if self.answers and answering_now(self.home):
            return ANSWERING
        if self.idle_s is not None:
            idle = seconds_idle(self.user_dir)
            if idle is not None and idle < self.idle_s:
                return USER_ACTIVE
        return None

    def wait(self) -> float:
        """Block while the update must wait; the seconds waited (0.0 at once when it need not). Answers hold it
        ``max_answer_wait_s`` at most in one wait, so that a stream of answers slows the update but never starves it."""
        reason = self.reason()
        if reason is None:
            return 0.0
        started, shown = time.monotonic(), None
        while reason is not None and not self._should_stop():
            if reason == ANSWERING and time.monotonic() - started >= self.max_answer_wait_s:
                break
            if reason != shown:
                self._on_change(reason)
                shown = reason
            time.sleep(self.poll_s)
            reason = self.reason()
        self._on_change(None)
        waited = time.monotonic() - started
        self.paused_s += waited
        return waited


__all__ = ["ANSWERING", "ANSWERING_DIR", "ACTIVITY_FILE", "AnswerMarker", "MAX_ANSWER_WAIT_S", "STALE_S", "USER_ACTIVE", "YieldGate",
           "answering", "answering_now", "note_activity", "pause_point", "seconds_idle", "set_pause_hook"]
