"""The background trainer: `python -m asls_mlx.background --user NAME ...`, started by the assistant.

It runs in its own process (its own copy of the model), so the chat stays responsive and a crash or
kill here cannot corrupt the chat: adapter versions are committed atomically and the store row that
activates a version is written last. The chat picks the new version up at its next turn. SIGTERM
stops it between steps; the previous adapter stays active.
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

PROGRESS_FILE = "train_progress.json"


def write_progress(path: Path, **fields) -> None:
    atomic_write_text(path, json.dumps(dict(fields, pid=os.getpid(), time=time.time())))


def worker_threads() -> int:
    """The trainer's BLAS threads: its share of the cores beside the chat (1 on 2 cores). Two processes that
    each run two OpenBLAS threads on 2 cores fight: a decode fell from ~30 to 1.7 tok/s beside such a
    trainer; beside a one-thread trainer, idle OpenBLAS threads sleeping at once (``blas.QUICK_SLEEP``), it
    kept 18-22 (docs/performance.md, "Processes side by side")."""
    return side_by_side_threads(2)


def _trainer_env() -> dict:
    """The worker's environment: its BLAS thread budget (read when its OpenBLAS libraries load)."""
    return thread_env(worker_threads())


class BackgroundTrainer:
    """Starts and watches the training process of one user (its data directory is ``user_dir``)."""

    def __init__(self, user_dir: Path):
        self.dir = Path(user_dir)
        self._proc: subprocess.Popen | None = None

    def start(self, user: str, model: str, config: dict, session_ids: list[int]) -> None:
        if self._proc is not None and self._proc.poll() is None:
            raise ASLSError("background training is already running")
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
        status["running"] = mine or (status.get("state") == "running" and pid_alive(status.get("pid")))
        return status

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="asls-background")
    parser.add_argument("--user", required=True)
    parser.add_argument("--model", default="default")
    parser.add_argument("--config", default="{}")
    parser.add_argument("--sessions", default="")
    args = parser.parse_args(argv)

    import asls_mlx  # noqa: F401  (BLAS first)

    set_thread_budget(worker_threads())  # also when started by hand, without the environment _trainer_env sets
    from asls_mlx.adaptation.versions import AdapterRepo
    from asls_mlx.config import AssistantConfig
    from asls_mlx.engine import ChatEngine, load_model
    from asls_mlx.session_update import Learner, TrainingBusy, activate_active_adapter, learn_from_sessions, training_lock, user_dir
    from asls_mlx.store import open_store

    stop = {"requested": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(requested=True))
    config = AssistantConfig.from_dict(json.loads(args.config))
    sessions = [int(s) for s in args.sessions.split(",") if s]
    store = open_store()
    user = store.get_or_create_user(args.user)
    progress_file = user_dir(store, user) / PROGRESS_FILE
    progress = lambda **fields: write_progress(progress_file, **fields)  # noqa: E731
    try:
        with training_lock(store, user):
            progress(state="running", step=0, total=0, message="loading model")
            model, tokenizer, model_id = load_model(None if args.model == "default" else args.model, progress=lambda m: None)
            engine = ChatEngine(model, tokenizer, model_id)
            activate_active_adapter(engine, store, user, AdapterRepo(user_dir(store, user) / "adapters"))
            update = learn_from_sessions(
                Learner(store, user, engine, config), sessions,
                progress=lambda p: progress(state="running", step=p.step, total=p.total, loss=p.loss, message="training"),
                should_stop=lambda: stop["requested"],
                on_phase=lambda phase: progress(state="running", step=0, total=0, message=phase),
            )
        report = update.report
        progress(state="done", committed=report.committed, version=report.version, message=report.summary())
        return 0
    except TrainingBusy:
        print("asls-background: training already running for this user", file=sys.stderr)
        return 0
    except ASLSError as e:
        progress(state="failed", message=str(e))
        print(f"asls-background: {e}", file=sys.stderr)
        return 1
    finally:
        store.close()

if __name__ == "__main__":
    sys.exit(main())
