"""Thread budgets for asls processes side by side (issue 21, items 1 and 4): one call sets the BLAS threads of
every OpenBLAS in the process (MLX's and NumPy's) and of the processes it starts; the background trainer gets
its share of the cores; idle OpenBLAS threads sleep at once instead of spinning."""

import json
import os
import subprocess
import sys

import numpy  # noqa: F401  (NumPy's own OpenBLAS is loaded: the budget must reach it too)

from asls_mlx import background, blas

CHILD = ("import asls_mlx, numpy, json, os; from asls_mlx import blas; "
         "print(json.dumps({'threads': blas.blas_threads(), 'timeout': os.environ.get('OPENBLAS_THREAD_TIMEOUT')}))")


def _child(env: dict) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_set_thread_budget_reaches_mlx_and_numpy_openblas(monkeypatch):
    monkeypatch.setenv(blas.THREADS_ENV, os.environ.get(blas.THREADS_ENV, "2"))  # restored after the test
    before = blas.blas_threads()
    libraries = blas.loaded_openblas()
    assert blas.status().path in libraries and any("numpy" in p for p in libraries), libraries
    try:
        assert blas.set_thread_budget(1) == dict.fromkeys(libraries, 1)
        assert os.environ[blas.THREADS_ENV] == "1"  # what a process started now inherits
        assert blas.set_thread_budget(0) == dict.fromkeys(libraries, 1)  # never below one thread
        assert blas.set_thread_budget(2) == dict.fromkeys(libraries, 2)  # and the threads come back
    finally:
        for threads in set(before.values()):
            blas.set_thread_budget(threads)


def test_a_child_started_with_thread_env_runs_its_blas_on_that_budget():
    env = {k: v for k, v in os.environ.items() if k != blas.THREAD_TIMEOUT_ENV}
    seen = _child(blas.thread_env(1, env))
    assert seen["threads"] and set(seen["threads"].values()) == {1}, seen
    assert seen["timeout"] == blas.QUICK_SLEEP
    assert set(_child(blas.thread_env(2, env))["threads"].values()) == {2}


def test_importing_asls_makes_idle_openblas_threads_sleep_unless_the_user_chose():
    env = {k: v for k, v in os.environ.items() if k != blas.THREAD_TIMEOUT_ENV}
    assert _child(env)["timeout"] == blas.QUICK_SLEEP == "4"
    assert _child(dict(env, OPENBLAS_THREAD_TIMEOUT="12"))["timeout"] == "12"


def test_side_by_side_share_of_the_cores():
    assert [blas.side_by_side_threads(2, cores=c) for c in (1, 2, 3, 8, 16)] == [1, 1, 1, 4, 8]
    assert blas.side_by_side_threads(3, cores=2) == 1 and blas.side_by_side_threads(1, cores=2) == 2
    assert 1 <= blas.side_by_side_threads() <= len(os.sched_getaffinity(0))


def test_background_trainer_starts_with_its_share_of_the_cores(tmp_path, monkeypatch):
    started = {}

    class FakePopen:
        def __init__(self, cmd, **kw):
            started.update(cmd=cmd, env=kw["env"])

        def poll(self):
            return 0

    monkeypatch.setattr(background.subprocess, "Popen", FakePopen)
    monkeypatch.setenv(blas.THREADS_ENV, "8")  # a user's setting for the chat is not the trainer's budget
    background.BackgroundTrainer(tmp_path).start("u", "default", {}, [1])
    assert started["cmd"][1:3] == ["-m", "asls_mlx.background"]
    assert started["env"][blas.THREADS_ENV] == str(background.worker_threads()) == str(blas.side_by_side_threads(2))
    assert started["env"][blas.THREAD_TIMEOUT_ENV] == os.environ.get(blas.THREAD_TIMEOUT_ENV, blas.QUICK_SLEEP)
