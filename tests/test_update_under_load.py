"""An update's size is decided by its data, not by the clock (issue 21, item 2): the same update from the same
state commits the same version with the same numbers on an idle and on a busy machine; the wall-clock limit is
only a safety net, and a run it stops says so (report, run record, `asls adapters --runs`)."""

import os
import shutil
import subprocess
import sys
import time

import pytest

from adaptation_fixtures import fresh_model, short_pairs
from asls_mlx.adaptation.config import LearningConfig
from asls_mlx.adaptation.gate import GateChecks
from asls_mlx.adaptation.update import UpdateTarget, activate_version, update_adapter
from asls_mlx.adaptation.versions import AdapterRepo
from asls_mlx.data_files import general_texts
from asls_mlx.store import open_store
from asls_mlx.training import RunSummary

MODEL_ID = "tiny@test"
USER = "busy"
FIRST = ["the sea", "a cat", "green tea", "old maps"]
# 12 new pairs: the schedule asks for 6 steps (3 + 7 x 12/32), within 3 passes over 3 batches
SECOND = ["rain", "bikes", "jazz", "bread", "stars", "snow", "owls", "clocks", "tides", "ferns", "kites", "moths"]
HELD_OUT = ["lamps", "wolves", "coral", "dunes"]
# A config that names no time: whatever the default wall-clock setting is, it is what runs here.
# (the tiny random model forgets general text fast: the retention bound is loosened so the gate can commit)
CONFIG = dict(drift_adaptation=False, replay_pool=8, retention_bound=100.0)
BURN = "import numpy as np\na = np.random.rand(500, 500)\nwhile True:\n    a @ a"


def _update(home, model_dir, config=LearningConfig(**CONFIG)):
    """One update of USER's adapter in the store under ``home``, on a freshly loaded model holding the active version."""
    model, tok = fresh_model(model_dir, config=None)
    store = open_store(home / "asls.db")
    try:
        uid = store.get_or_create_user(USER).id
        repo = AdapterRepo(home / "adapters")
        active = store.active_adapter(uid)
        if active is not None:
            activate_version(model, repo, active.version)
        target = UpdateTarget(store, uid, model, tok, repo, MODEL_ID)
        return update_adapter(target, config, GateChecks(general_texts=general_texts()[:4]))
    finally:
        store.close()


def _state(home, model_dir):
    """v1 trained on FIRST, then 12 new pairs waiting: the state both runs start from."""
    home.mkdir(parents=True, exist_ok=True)
    with open_store(home / "asls.db") as store:
        uid = store.get_or_create_user(USER).id
        store.add_pairs(uid, short_pairs(FIRST) + short_pairs(HELD_OUT, split="val"))
    assert _update(home, model_dir).committed
    with open_store(home / "asls.db") as store:
        store.add_pairs(store.get_user(USER).id, short_pairs(SECOND))


def _numbers(report) -> dict:
    return {"committed": report.committed, "version": report.version, "reason": report.reason, "steps": report.steps,
            "planned": report.planned_steps, "stopped": report.stopped, "losses": report.losses,
            "before": report.before, "after": report.after, "retention": report.retention_ratio}


def _slow_clock(monkeypatch) -> None:
    """Every read of the clock moves it 7 s on: a step looks ~10x slower than the embedded model's ~2 s."""
    real, offset = time.perf_counter, [0.0]

    def slow() -> float:
        offset[0] += 7.0
        return real() + offset[0]

    monkeypatch.setattr(time, "perf_counter", slow)


@pytest.mark.parametrize("load", ["slow_clock", "cpu_load"])
def test_same_update_idle_and_busy_commits_the_same(tiny_model_dir, tmp_path, monkeypatch, load):
    _state(tmp_path / "idle", tiny_model_dir)
    shutil.copytree(tmp_path / "idle", tmp_path / "busy")
    idle = _numbers(_update(tmp_path / "idle", tiny_model_dir))
    assert idle["committed"] and idle["version"] == 2 and idle["steps"] == idle["planned"] == 6
    assert idle["stopped"] == "max_steps" and idle["after"]["n"] == len(HELD_OUT)
    if load == "slow_clock":
        _slow_clock(monkeypatch)
        busy = _numbers(_update(tmp_path / "busy", tiny_model_dir))
    else:  # a real concurrent CPU load: two BLAS threads multiplying matrices beside the update
        burner = subprocess.Popen([sys.executable, "-c", BURN], env=dict(os.environ, OPENBLAS_NUM_THREADS="2"))
        try:
            busy = _numbers(_update(tmp_path / "busy", tiny_model_dir))
        finally:
            burner.kill()
            burner.wait()
    assert busy == idle


def test_safety_net_stop_is_reported(tiny_model_dir, isolated_home):
    _state(isolated_home, tiny_model_dir)
    report = _update(isolated_home, tiny_model_dir, LearningConfig(**CONFIG, time_limit_s=0.0))
    assert (report.steps, report.planned_steps, report.stopped) == (1, 6, "time_limit")  # the first step always runs
    assert "(stopped by the wall-clock safety net after 1 of 6 steps)" in report.summary()
    with open_store() as store:
        run = store.training_runs(store.get_user(USER).id)[-1]
    assert (run.metrics["stopped"], run.metrics["planned_steps"], run.metrics["steps"]) == ("time_limit", 6, 1)
    summary = RunSummary.of(run)
    assert "stopped by the wall-clock safety net after 1 of 6 steps" in summary.line()
    table = subprocess.run([sys.executable, "-m", "asls_mlx", "adapters", "--runs", "--user", USER],
                           capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[-1].split("\t")[4] == "1 of 6 (time limit)"
    # a run the data decided shows its steps alone
    assert RunSummary.of(store_run_without_net(run)).steps_text() == "1"


def store_run_without_net(run):
    """``run`` as if its steps had ended because the data had no more."""
    from dataclasses import replace

    return replace(run, metrics=dict(run.metrics, stopped="max_steps"))
