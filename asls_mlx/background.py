"""The background trainer: `python -m asls_mlx.background --user NAME ...`, started by the assistant.

It runs in its own process (its own copy of the model), so a crash or kill here cannot corrupt the chat:
adapter versions are committed atomically and the store row that activates a version is written last.
The chat picks the new version up at its next turn. SIGTERM stops it between steps; the previous adapter
stays active.

The chat comes first: the worker runs at a low OS priority and pauses between steps and phases while any
asls process writes an answer, and in ``idle`` mode until the user has not typed for ``train_idle_s``
(:mod:`asls_mlx.yielding`); its progress record says so (``paused``), and :func:`learning_words` puts it
the way the chat's footer shows it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from asls_mlx.blas import set_thread_budget, side_by_side_threads, thread_env
from asls_mlx.errors import ASLSError
from asls_mlx.paths import atomic_write_text, pid_alive
from asls_mlx.yielding import ANSWERING, USER_ACTIVE, YieldGate, answering, note_activity, set_pause_hook

PROGRESS_FILE = "train_progress.json"
NICENESS = 10  # the worker's OS priority, lowered by this much: the chat's process wins the cores
WAITING_FOR_IDLE = "waiting until you are idle"  # the idle worker's phase before it has started


def write_progress(path: Path, **fields) -> None:
    atomic_write_text(path, json.dumps(dict(fields, pid=os.getpid(), time=time.time())))


def worker_threads() -> int:
    """The trainer's BLAS threads: its share of the cores beside the chat (1 on 2 cores). Two processes that
    each run two OpenBLAS threads on 2 cores fight: a decode fell from ~30 to 1.7 tok/s beside such a
    trainer; beside a one-thread trainer, idle OpenBLAS threads sleeping at once (``blas.QUICK_SLEEP``), it
    kept 18-22 (docs/performance.md, "Processes side by side")."""
    return side_by_side_threads(2)


class ProgressRecord:
    """The worker's progress file, rewritten whole on each change: phase, step, and whether it is paused."""

    def __init__(self, path: Path, **fields):
        self.path, self.fields = path, dict(state="running", step=0, total=0, paused=None, **fields)

    def update(self, **fields) -> None:
        self.fields.update(fields)
        write_progress(self.path, **self.fields)

    def phase(self, message: str) -> None:
        self.update(step=0, total=0, loss=None, message=message)

    def step(self, p) -> None:
        self.update(step=p.step, total=p.total, loss=p.loss, message="validating" if p.step >= p.total else "training")


def learning_words(status: dict, paused: str | None) -> str | None:
    """A background update the way the chat's footer shows it: "learning… 40%", "learning… 40%, paused while
    answering", "learning starts when you have been idle 60 s", ...; None when none runs. ``status``: the
    worker's progress record (``BackgroundTrainer.status``); ``paused``: why it waits (``yielding``'s reasons)."""
    if not status.get("running"):
        return None
    idle = f"{float(status.get('idle_s') or 0):.0f} s"
    if status.get("message") == WAITING_FOR_IDLE and paused in (USER_ACTIVE, ANSWERING):
        return f"learning starts when you have been idle {idle}"
    total, step = status.get("total") or 0, status.get("step") or 0
    where = f"{min(100, int(100 * step / total))}%" if total else (status.get("message") or "starting")
    if paused == ANSWERING:
        return f"learning… {where}, paused while answering"
    if paused == USER_ACTIVE:
        return f"learning… {where}, paused until you have been idle {idle}"
    return f"learning… {where}"


def _trainer_env() -> dict:
    """The worker's environment: its BLAS thread budget (read when its OpenBLAS libraries load)."""
    return thread_env(worker_threads())


class BackgroundTrainer:
    """Starts and watches the training process of one user (its data directory is ``user_dir``)."""

    def __init__(self, user_dir: Path):
        self.dir = Path(user_dir)
        self._proc: subprocess.Popen | None = None
        self.sessions: list[int] = []  # the sessions the running worker learns from
        self._idle_s: float | None = None  # idle mode: the worker waits for the user to be idle this long

    def start(self, user: str, model: str, config: dict, session_ids: list[int]) -> None:
        if self._proc is not None and self._proc.poll() is None:
            raise ASLSError("background training is already running")
        self.sessions = list(session_ids)
        self._idle_s = config.get("train_idle_s") if config.get("train_after_session") == "idle" else None
        cmd = [sys.executable, "-m", "asls_mlx.background", "--user", user, "--model", model,
               "--config", json.dumps(config), "--sessions", ",".join(map(str, session_ids))]
        log = os.open(self.dir / "train.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            # Its own session: it finishes even when the chat that started it has quit.
            self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                                          env=_trainer_env())
        finally:
            os.close(log)

    def status(self) -> dict:
        """{running, state, step, total, loss, message}, also for a trainer started by an earlier chat."""
        try:
            status = json.loads((self.dir / PROGRESS_FILE).read_text())
        except (OSError, ValueError):
            status = {}
        mine = self._proc is not None and self._proc.poll() is None
        if mine and status.get("pid") != self._proc.pid:  # it has not written yet: the file is an earlier run's
            status = {"state": "running", "step": 0, "total": 0, "idle_s": self._idle_s,
                      "message": WAITING_FOR_IDLE if self._idle_s is not None else "starting"}
        status["running"] = mine or (status.get("state") == "running" and pid_alive(status.get("pid")))
        return status

    def waiting_for_idle(self) -> bool:
        """This process's worker runs in idle mode and has not started its update yet."""
        status = self.status()
        return self._idle_s is not None and self._proc is not None and status.get("running") \
            and status.get("message") == WAITING_FOR_IDLE

    def wait(self, timeout: float | None = None) -> None:
        if self._proc is not None:
            self._proc.wait(timeout)
            self._proc = None

    def cancel(self) -> None:
        """SIGTERM: the trainer stops between steps and commits nothing."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            self._proc.wait(30)
        self._proc = None


class BackgroundTraining:
    """The assistant's side of the background worker (a mixin of ``Assistant``): start it, read and word its
    progress, wait for it, cancel it, and hold the markers that make it give way while this process answers.
    Uses the assistant's ``dir``, ``store``, ``user``, ``config``, ``_worker``, ``_model_source`` and ``sync_adapter``."""

    def _start_worker(self, session_ids: list[int], mode: str = "background") -> None:
        """``mode``: "background" starts at once; "idle" once the user has not typed for ``train_idle_s``. A
        worker of this process still waiting for the user to be idle is replaced by one that learns its
        sessions too (it has done nothing yet)."""
        if mode == "idle" and self._worker.waiting_for_idle():
            session_ids = self._worker.sessions + [s for s in session_ids if s not in self._worker.sessions]
            self._worker.cancel()
        config = dict(self.config.to_dict(), train_after_session=mode)
        self._worker.start(self.user.name, self._model_source or "default", config, session_ids)

    def training_status(self) -> dict:
        """Background training progress: {running, state, step, total, loss, message, paused}."""
        return self._worker.status()

    def learning_status(self) -> str | None:
        """The background update as the chat shows it: "learning… 40%", "learning… 40%, paused while answering",
        "learning starts when you have been idle 60 s"; None when none runs. The pause is the one the worker
        takes at its next step boundary (an answer being written anywhere, or the user active in idle mode)."""
        status = self.training_status()
        if not status.get("running"):
            return None
        gate = YieldGate(self.store.path.parent, self.dir, status.get("idle_s"))
        return learning_words(status, gate.reason())

    def note_activity(self) -> None:
        """The user did something (typed a line): an update in ``idle`` mode waits ``train_idle_s`` from now.
        Sending a message and the end of an answer count without this call."""
        note_activity(self.dir)

    def _answering(self):
        """Held while this process writes an answer: background updates pause at their next step."""
        return answering(self.store.path.parent, self.dir, self.user.name)

    def wait_for_training(self, timeout: float | None = None) -> str | None:
        """Block until background training ends, then hot-swap its adapter. Returns the notice."""
        self._worker.wait(timeout)
        return self.sync_adapter()

    def cancel_training(self) -> None:
        """Stop background training (between steps); the previous adapter stays active."""
        self._worker.cancel()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="asls-background")
    parser.add_argument("--user", required=True)
    parser.add_argument("--model", default="default")
    parser.add_argument("--config", default="{}")
    parser.add_argument("--sessions", default="")
    args = parser.parse_args(argv)
    _lower_priority()

    import asls_mlx  # noqa: F401  (BLAS first)

    set_thread_budget(worker_threads())  # also when started by hand, without the environment _trainer_env sets
    from asls_mlx.config import AssistantConfig
    from asls_mlx.session_update import TrainingBusy, training_lock, user_dir
    from asls_mlx.store import open_store

    stop = {"requested": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(requested=True))
    config = AssistantConfig.from_dict(json.loads(args.config))
    sessions = [int(s) for s in args.sessions.split(",") if s]
    store = open_store()
    user = store.get_or_create_user(args.user)
    folder = user_dir(store, user)
    idle_s = config.train_idle_s if config.train_after_session == "idle" else None
    record = ProgressRecord(folder / PROGRESS_FILE, idle_s=idle_s)
    gate = YieldGate(store.path.parent, folder, idle_s, should_stop=lambda: stop["requested"],
                     on_change=lambda reason: record.update(paused=reason), answers=config.yield_to_chat)
    try:
        with training_lock(store, user):
            report = _update(store, user, args.model, config, sessions, record, gate, lambda: stop["requested"])
        if report is None:
            record.update(state="cancelled", message="cancelled before it started", paused=None)
            return 0
        record.update(state="done", committed=report.committed, version=report.version, message=report.summary(),
                      paused=None, paused_s=round(gate.paused_s, 1))
        return 0
    except TrainingBusy:
        print("asls-background: training already running for this user", file=sys.stderr)
        return 0
    except ASLSError as e:
        record.update(state="failed", message=str(e), paused=None)
        print(f"asls-background: {e}", file=sys.stderr)
        return 1
    finally:
        store.close()


def _update(store, user, model_name: str, config, sessions: list[int], record: ProgressRecord, gate: YieldGate,
            should_stop):
    """Load the model (in idle mode: once the user is idle), then the learning pipeline, giving way to the chat."""
    from asls_mlx.adaptation.versions import AdapterRepo
    from asls_mlx.engine import ChatEngine, load_model
    from asls_mlx.session_update import Learner, activate_active_adapter, learn_from_sessions, user_dir

    if gate.idle_s is not None:
        record.phase(WAITING_FOR_IDLE)
    gate.wait()
    if should_stop():  # cancelled while it waited (a new session replaced it): it has done nothing
        return None
    record.phase("loading model")
    model, tokenizer, model_id = load_model(None if model_name == "default" else model_name, progress=lambda m: None)
    engine = ChatEngine(model, tokenizer, model_id)
    activate_active_adapter(engine, store, user, AdapterRepo(user_dir(store, user) / "adapters"))
    set_pause_hook(gate.wait)  # batched decoding (mining, the gate's answers) gives way between tokens too
    try:
        update = learn_from_sessions(Learner(store, user, engine, config), sessions, progress=record.step,
                                     should_stop=should_stop, on_phase=record.phase, pause=gate.wait)
    finally:
        set_pause_hook(None)
    return update.report


def _lower_priority() -> None:
    """Run below the chat: on a busy machine the scheduler gives the answer the cores first."""
    try:
        os.nice(NICENESS)
    except OSError:  # not allowed here (some containers): the pauses still give way
        pass

if __name__ == "__main__":
    sys.exit(main())
