"""Training you can see: every adapter update as a run (committed, rejected and why, failed, cancelled,
interrupted), the background trainer's status and cancel, and "train now" on the session so far.

    >>> from asls_mlx import training_runs
    >>> for run in training_runs("sam"):          # doctest: +SKIP
    ...     print(run.line())
    run 3 · committed v2 · 6 new pairs · 12 steps · held-out 0.50 → 0.75 (n=4) · retention ×1.004 · 38 s

A run a killed process left 'running' is marked 'interrupted' the next time anyone opens the user
(when no trainer holds the user's training lock).
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

from asls_mlx.adaptation.config import stop_note
from asls_mlx.background import PROGRESS_FILE
from asls_mlx.errors import ASLSError
from asls_mlx.locks import FileLock
from asls_mlx.paths import pid_alive
from asls_mlx.profiling import infer_session_signals, mine_pairs
from asls_mlx.session_update import process_ended_sessions, user_dir
from asls_mlx.store import Store, TrainingRun, User, open_store
from asls_mlx.users import require_user
from asls_mlx.yielding import ANSWERING, USER_ACTIVE

OUTCOMES = {"ok": "committed", "rejected": "rejected", "failed": "failed", "cancelled": "cancelled",
            "interrupted": "interrupted", "running": "running"}


@dataclass(frozen=True)
class RunSummary:
    """One adapter update. ``outcome``: committed | rejected | failed | cancelled | interrupted | running."""

    id: int
    outcome: str
    reason: str | None
    started_at: float
    ended_at: float | None
    adapter_version: int | None  # the version a committed run made
    parent_version: int | None  # the version it started from (None: the base model)
    new_pairs: int
    steps: int | None
    seconds: float | None  # steps + validation (not loading the model or mining)
    heldout_before: float | None  # held-out preference accuracy before -> after training
    heldout_after: float | None
    heldout_n: int  # held-out pairs it was measured on
    retention_ratio: float | None  # general-text perplexity, adapter / base model (the gate allows <= 1.10)
    planned_steps: int | None = None  # the steps the data called for
    stopped: str | None = None  # why the steps ended: max_steps | time_limit (the wall-clock safety net) | cancelled | ...

    @classmethod
    def of(cls, run: TrainingRun) -> RunSummary:
        m = run.metrics or {}
        before, after = m.get("val_before") or {}, m.get("val_after") or {}
        return cls(run.id, OUTCOMES.get(run.status, run.status), run.reason, run.started_at, run.ended_at,
                   run.adapter_version, run.parent_version, int(m.get("new_pairs") or len(run.pair_ids)),
                   m.get("steps"), m.get("seconds"), before.get("accuracy") if before.get("n") else None,
                   after.get("accuracy") if after.get("n") else None, int(after.get("n") or before.get("n") or 0),
                   m.get("retention_ratio"), m.get("planned_steps"), m.get("stopped"))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def heldout(self) -> str:
        """ "0.50 → 0.75 (n=4)", or "—" when it was not measured."""
        if self.heldout_before is None:
            return "—"
        after = "—" if self.heldout_after is None else f"{self.heldout_after:.2f}"
        return f"{self.heldout_before:.2f} → {after} (n={self.heldout_n})"

    def result(self) -> str:
        """ "committed v3", "rejected: held-out preference dropped ...", "interrupted" ..."""
        if self.outcome == "committed":
            return f"committed v{self.adapter_version}"
        return f"{self.outcome}: {self.reason}" if self.reason and self.reason != self.outcome else self.outcome

    def stop_note(self) -> str:
        """ "stopped by the wall-clock safety net after 3 of 10 steps", or "" when the data decided the steps."""
        return stop_note(self.stopped, self.steps or 0, self.planned_steps)

    def steps_text(self) -> str:
        """ "10", or "3 of 10 (time limit)" when the wall-clock safety net ended them; "" if none were recorded."""
        if self.steps is None:
            return ""
        return f"{self.steps} of {self.planned_steps or '?'} (time limit)" if self.stop_note() else str(self.steps)

    def line(self) -> str:
        parts = [f"run {self.id}", self.result(), f"{self.new_pairs} new pairs"]
        if self.steps is not None:
            parts.append(self.stop_note() or f"{self.steps} steps")
        if self.heldout_before is not None:
            parts.append(f"held-out {self.heldout()}")
        if self.retention_ratio is not None:
            parts.append(f"retention ×{self.retention_ratio:.3f}")
        if self.seconds is not None:
            parts.append(f"{self.seconds:.0f} s")
        return " · ".join(parts)


def close_interrupted_runs(store: Store, user: User) -> int:
    """Mark the user's runs left 'running' by a dead process as 'interrupted' (only if no trainer holds the
    training lock: a live run holds it). Returns how many were marked."""
    lock = FileLock(user_dir(store, user) / "train.lock")
    if not lock.acquire():
        return 0
    try:
        return store.close_interrupted_runs(user.id)
    finally:
        lock.release()


def training_runs(user: str | None = None) -> list[RunSummary]:
    """Every adapter update of ``user``, oldest first (a killed run shows as 'interrupted')."""
    name = require_user(user)
    with open_store() as store:
        u = store.get_user(name)
        close_interrupted_runs(store, u)
        return [RunSummary.of(r) for r in store.training_runs(u.id)]


@dataclass(frozen=True)
class TrainingStatus:
    """Whether an update of the user's adapter runs now, where, and how far it got."""

    running: bool
    where: str | None  # "background" (a worker process) | "foreground" (a chat or `asls train`) | None
    pid: int | None  # the background worker's process id
    phase: str | None  # "loading model", "mining self-labelled pairs", "training", ...
    step: int | None
    total: int | None
    loss: float | None
    last_run: RunSummary | None
    paused: str | None = None  # why the worker waits now: "answering" (an answer is being written) | "user active"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        if not self.running:
            last = f"; last run: {self.last_run.line()}" if self.last_run else "; no run yet"
            return "no training running" + last
        where = f"in the background (pid {self.pid})" if self.where == "background" else "in another asls process"
        step = f", step {self.step}/{self.total}" if self.total else ""
        loss = f", loss {self.loss:.3f}" if self.loss is not None and self.total else ""
        paused = {ANSWERING: ", paused while answering", USER_ACTIVE: ", paused until you are idle"}.get(self.paused, "")
        return f"training {where}: {self.phase or 'running'}{step}{loss}{paused}"


def training_status(user: str | None = None) -> TrainingStatus:
    """What the user's trainer is doing now (also one started by a chat that has since quit)."""
    name = require_user(user)
    with open_store() as store:
        u = store.get_user(name)
        folder = user_dir(store, u)
        close_interrupted_runs(store, u)
        runs = store.training_runs(u.id)
    last = RunSummary.of(runs[-1]) if runs else None
    worker = _worker(folder)
    lock = FileLock(folder / "train.lock")
    busy = not lock.acquire()
    lock.release()
    if worker is not None:
        return TrainingStatus(True, "background", worker.get("pid"), worker.get("message"), worker.get("step"),
                              worker.get("total"), worker.get("loss"), last, worker.get("paused"))
    return TrainingStatus(busy, "foreground" if busy else None, None, None, None, None, None, last)


def _worker(folder) -> dict | None:
    """The background worker's progress record, if that worker is alive and holds the training lock."""
    try:
        record = json.loads((folder / PROGRESS_FILE).read_text())
        holder = int((folder / "train.lock").read_text() or 0)
    except (OSError, ValueError):
        return None
    if record.get("state") != "running" or record.get("pid") != holder or not pid_alive(holder):
        return None
    lock = FileLock(folder / "train.lock")
    if lock.acquire():  # nobody holds it: the worker has exited (a zombie keeps its pid until reaped)
        lock.release()
        return None
    return record


def cancel_training(user: str | None = None, wait_s: float = 30.0) -> str:
    """Stop the user's background trainer between two steps; the adapter it started from stays active.
    Returns what happened, in words."""
    name = require_user(user)
    with open_store() as store:
        folder = user_dir(store, store.get_user(name))
    worker = _worker(folder)
    if worker is None:
        if training_status(name).running:
            raise ASLSError("training runs in a chat or `asls train` process, not in the background: "
                            "press Ctrl-C there to stop it")
        return "no training running"
    os.kill(int(worker["pid"]), signal.SIGTERM)  # the worker stops between steps and commits nothing
    deadline, lock = time.monotonic() + wait_s, FileLock(folder / "train.lock")
    while not lock.acquire():  # an exited worker holds no lock (a zombie still has a pid)
        if time.monotonic() > deadline:
            return f"asked the trainer (pid {worker['pid']}) to stop; it stops after its current step"
        time.sleep(0.2)
    lock.release()
    return "training cancelled; the previous adapter stays active"


@dataclass
class TrainOutcome:
    """What "train now" did: pairs found, where they went, and the update (None: nothing to train on)."""

    waiting: int  # training pairs no adapter has used yet
    held_out: int  # pairs of the sessions read now that went to the held-out split (they check, not train)
    report: Any = None  # adaptation's UpdateReport


@dataclass(frozen=True)
class PairCounts:
    waiting: int  # training pairs no adapter has used yet (all sessions)
    mined: int  # pairs of the sessions asked about (both splits)
    held_out: int  # of those, held out to check adapters (they never train one)


def pair_counts(store: Store, user: User, session_ids: list[int] | None = None) -> PairCounts:
    """The user's pairs waiting for training, and the pairs of ``session_ids`` (all sessions when None)."""
    waiting = len(store.pairs(user.id, split="train", unused_only=True))
    mined = [p for p in store.pairs(user.id, split=None) if session_ids is None or p.session_id in session_ids]
    return PairCounts(waiting, len(mined), sum(p.split == "val" for p in mined))


def train_now(assistant, progress: Callable | None = None, on_phase: Callable[[str], None] | None = None) -> TrainOutcome:
    """Learn now from everything not learned yet, the session in progress included (so far).

    Sessions left unprocessed (a chat that was killed) are read like an ended session; the current
    session's feedback becomes pairs without ending it (pairs already stored are not stored twice when it
    ends). Then one gated update runs here, on the assistant's model, with its progress and phases."""
    a, note = assistant, on_phase or (lambda _phase: None)
    note("reading the conversation so far")
    ended = process_ended_sessions(a.store, a.user, a.config.seed, current=a.session_id,
                                   length_pairs=a.config.length_pairs)
    current = [a.session_id] if a.session_id is not None else []
    for sid in current:
        infer_session_signals(a.store, sid)
        mine_pairs(a.store, a.user, sid, generate=None, seed=a.config.seed, length_pairs=a.config.length_pairs)
    counts = pair_counts(a.store, a.user, ended.session_ids + current)
    waiting, held_out = counts.waiting, counts.held_out
    if waiting == 0:
        return TrainOutcome(waiting, held_out)
    note("loading model")
    a.engine  # noqa: B018 - load it now, so the phases say where the time goes
    report = a.train(wait=True, progress=progress, session_ids=ended.session_ids, on_phase=note)
    return TrainOutcome(waiting, held_out, report)


def last_update_overhead_s(user: str | None = None) -> float | None:
    """Seconds the last finished update spent outside its optimizer steps (reference log-probs, held-out
    metrics, retention, the gate's answers): what the update takes beside its optimizer steps."""
    name = require_user(user)
    with open_store() as store:
        runs = store.training_runs(store.get_user(name).id)
    for run in reversed(runs):
        timings = (run.metrics or {}).get("timings") or {}
        if timings:
            return float(sum(v for k, v in timings.items() if k != "steps" and isinstance(v, (int, float))))
    return None


__all__ = ["OUTCOMES", "PairCounts", "RunSummary", "TrainOutcome", "TrainingStatus", "cancel_training", "close_interrupted_runs",
           "last_update_overhead_s", "pair_counts", "train_now", "training_runs", "training_status"]
