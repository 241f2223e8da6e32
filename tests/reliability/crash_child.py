"""A fork server for the crash-safety test: imports asls_mlx + MLX once, then forks one worker per trial.

Protocol (one line each way, on stdin/stdout):
    parent -> server: ``run <json>``  with {"home", "model", "user", "log", "seed", "kill_at"}
    server -> parent: ``pid <pid>``
The worker chats, edits, mines pairs, trains and commits adapters with the Assistant API in a loop until
it is killed. It appends what is durably committed to ``log`` (flushed after each commit):
    ready                        the assistant is open
    phase <name>                 entering chat | mine | train | commit
    msg <user_id> <answer_id>    both messages committed
    edit <answer_id>             the edit committed
    adapter <version>            the adapter version committed and active
``kill_at`` names a point where the worker SIGKILLs itself (targeted crash points); None = only the
parent's random kill.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys

import asls_mlx  # noqa: F401  (BLAS first)
import mlx.core as mx  # noqa: F401
import mlx_lm  # noqa: F401
from asls_mlx import session_update as session_update_mod
from asls_mlx.adaptation import update as update_mod
from asls_mlx.adaptation import versions as versions_mod
from asls_mlx.adaptation.config import LearningConfig
from asls_mlx.assistant import Assistant, AssistantConfig
from asls_mlx.store.db import Store

PROMPTS = [
    ("What is the capital of France?", "Paris."),
    ("Name a fruit that is red", "An apple."),
    ("How do I boil an egg?", "Boil it nine minutes."),
    ("Give me a name for a cat", "Milo."),
    ("What colour is the sky?", "Blue."),
    ("Say hello", "Hello!"),
]


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def worker(job: dict) -> None:
    os.environ["ASLS_HOME"] = job["home"]
    log = open(job["log"], "a", buffering=1)
    kill_at = job.get("kill_at")

    def note(line: str) -> None:
        log.write(line + "\n")
        log.flush()

    # Phase markers (and targeted kill points) by wrapping the layers' entry points.
    real_process = session_update_mod.process_session

    def process_session(*a, **k):
        note("phase mine")
        if kill_at == "mine":
            real_add = Store.add_pairs

            def add_pairs(self, *aa, **kk):  # die inside the pairs transaction
                with self.transaction():
                    self.execute("UPDATE sessions SET processed = processed")
                    _die()
                return real_add(self, *aa, **kk)

            Store.add_pairs = add_pairs
        return real_process(*a, **k)

    session_update_mod.process_session = process_session
    real_train = update_mod.train_on_pairs

    def train(*a, **k):
        note("phase train")
        if kill_at == "train":
            cb = k.get("callback")

            def callback(p):
                if cb:
                    cb(p)
                _die()

            k["callback"] = callback
        return real_train(*a, **k)

    update_mod.train_on_pairs = train
    real_commit = versions_mod.AdapterRepo.commit

    def commit(self, *a, **k):
        note("phase commit")
        return real_commit(self, *a, **k)

    versions_mod.AdapterRepo.commit = commit

    real_replace = os.replace

    def replace(src, dst, *a, **k):
        name = os.path.basename(str(dst))
        if kill_at == "weights_written" and name.startswith(".v") and ".build-" in name:
            _die()  # save_adapter wrote and fsynced the files, before renaming its temp dir
        if kill_at == "before_version_rename" and re.fullmatch(r"v\d+", name):
            _die()
        out = real_replace(src, dst, *a, **k)
        if kill_at == "after_version_rename" and re.fullmatch(r"v\d+", name):
            _die()
        return out

    os.replace = replace
    if kill_at in ("before_store_row", "after_store_row"):
        real_add_version = Store.add_adapter_version
        real_mark = Store.mark_pairs_used

        def add_adapter_version(self, *a, **k):
            if kill_at == "before_store_row":
                _die()
            return real_add_version(self, *a, **k)

        def mark_pairs_used(self, *a, **k):
            _die()  # after the adapter row committed, before pairs/run are updated

        Store.add_adapter_version = add_adapter_version
        if kill_at == "after_store_row":
            Store.mark_pairs_used = mark_pairs_used
    if kill_at == "edit":
        real_insert = Store._insert_feedback

        def _insert_feedback(*a, **k):
            _die()  # inside the edit's transaction, after the UPDATE

        Store._insert_feedback = staticmethod(_insert_feedback)

    # The answer-level gate is off (quality_prompts=0): after a few commits a random tiny model trained on the
    # same short edits answers every prompt alike, the gate rightly rejects every later update, and a trial
    # that never commits cannot reach the commit's kill points. Crash safety is what this worker tests.
    config = AssistantConfig(max_tokens=8, train_budget_s=5, self_labelled=False, max_steps=2,
                             learning=LearningConfig(quality_prompts=0))
    a = Assistant(user=job["user"], model=job["model"], config=config)
    note("ready")
    i = job["seed"]
    while True:
        note("phase chat")
        for _ in range(3):
            q, e = PROMPTS[i % len(PROMPTS)]
            i += 1
            reply = a.chat(f"{q} ({i})")
            parent = a.store.message(reply.message_id).parent_id
            note(f"msg {parent} {reply.message_id}")
            a.edit(f"{e} ({i})")
            note(f"edit {reply.message_id}")
        summary = a.end_session(train="wait")
        if summary.training is not None and summary.training.committed:
            note(f"adapter {summary.training.version}")


def serve() -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps killed workers
    for line in sys.stdin:
        cmd, _, rest = line.strip().partition(" ")
        if cmd == "quit":
            break
        if cmd != "run":
            continue
        job = json.loads(rest)
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            try:
                sys.stdin.close()
                worker(job)
            except BaseException as e:  # a worker must never outlive a failure quietly
                with open(job["log"], "a") as f:
                    f.write(f"error {type(e).__name__}: {e}\n")
            finally:
                os._exit(3)
        sys.stdout.write(f"pid {pid}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    serve()
