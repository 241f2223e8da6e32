"""issue 21, items 1 and 3: the background update gives way to the chat. An answer being written (any asls
process) pauses it at the next step boundary; in idle mode it waits until the user has not typed for
``train_idle_s``; stale markers are ignored; the chat and `asls train --status` say so."""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import pytest
from rich.console import Console

from adaptation_fixtures import TOPICS, fresh_model, short_pairs
from asls_mlx import Assistant, AssistantConfig, ASLSError, TrainingStatus, training_status
from asls_mlx.adaptation import trainer
from asls_mlx.adaptation.trainer import TrainingArgs, train_on_pairs
from asls_mlx.background import PROGRESS_FILE, WAITING_FOR_IDLE, learning_words
from asls_mlx.yielding import (
    ANSWERING, ANSWERING_DIR, STALE_S, USER_ACTIVE, AnswerMarker, YieldGate, answering, answering_now, note_activity,
    seconds_idle,
)

EDITS = [("What is the capital of France?", "Paris."), ("Explain photosynthesis to me", "Light to sugar."),
         ("How do I boil an egg?", "Nine minutes."), ("Name a fruit that is red", "An apple.")]
FAST = dict(max_tokens=8, train_budget_s=60, self_labelled=False)


@pytest.fixture
def other_process():
    """A live process that is not this one (a chat in another terminal)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc.pid
    proc.kill()
    proc.wait()


def _marker(home, pid, age_s=0.0):
    folder = home / ANSWERING_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{pid}.json"
    path.write_text(json.dumps({"pid": pid, "time": time.time() - age_s, "user": "x"}))
    return path


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# -- the markers and the gate --------------------------------------------------------------------
def test_an_answer_marker_of_a_live_process_pauses_and_a_stale_one_is_ignored(tmp_path, other_process):
    home, user_dir = tmp_path / "home", tmp_path / "user"
    user_dir.mkdir()
    gate = YieldGate(home, user_dir)
    assert gate.reason() is None and gate.wait() == 0.0
    path = _marker(home, other_process)
    assert gate.reason() == ANSWERING and [r["pid"] for r in answering_now(home)] == [other_process]
    assert YieldGate(home, user_dir, answers=False).reason() is None  # yield_to_chat=False: priority only
    _marker(home, other_process, age_s=STALE_S + 5)  # alive, but the answer would have refreshed it: left behind
    assert gate.reason() is None
    path.unlink()
    _marker(home, _dead_pid())  # its process has exited (a crashed chat)
    assert gate.reason() is None and answering_now(home) == []


def test_idle_mode_waits_for_the_user_to_be_idle_and_not_for_a_closed_chat(tmp_path, other_process):
    home, user_dir = tmp_path / "home", tmp_path / "user"
    user_dir.mkdir()
    assert YieldGate(home, user_dir, idle_s=60).reason() is None  # nobody has typed
    note_activity(user_dir)
    assert 0.0 <= seconds_idle(user_dir) < 60
    assert YieldGate(home, user_dir, idle_s=60).reason() == USER_ACTIVE
    assert YieldGate(home, user_dir).reason() is None  # background mode does not wait for idleness
    changes = []
    gate = YieldGate(home, user_dir, idle_s=0.3, on_change=changes.append, poll_s=0.05)
    assert gate.wait() > 0 and changes == [USER_ACTIVE, None] and gate.reason() is None
    (user_dir / "activity.json").write_text(json.dumps({"pid": _dead_pid(), "time": time.time()}))
    assert seconds_idle(user_dir) is None and YieldGate(home, user_dir, idle_s=60).reason() is None  # chat closed


def test_should_stop_ends_a_pause(tmp_path, other_process):
    _marker(tmp_path / "home", other_process)
    gate = YieldGate(tmp_path / "home", tmp_path, should_stop=lambda: True)
    assert gate.reason() == ANSWERING
    gate.wait()  # returns although the answer goes on: a cancel must not wait for the chat


def test_back_to_back_answers_slow_the_update_but_never_starve_it(tmp_path, other_process):
    """A server answering without a break kept the marker up for good: the update never took a step. One wait
    for answers ends after ``max_answer_wait_s`` (one step runs, then it yields again); idleness has no such cap."""
    home, user_dir = tmp_path / "home", tmp_path / "user"
    user_dir.mkdir()
    _marker(home, other_process)
    changes = []
    gate = YieldGate(home, user_dir, poll_s=0.05, max_answer_wait_s=0.3, on_change=changes.append)
    started = time.monotonic()
    assert 0.3 <= gate.wait() < 2.0 and time.monotonic() - started < 2.0
    assert gate.reason() == ANSWERING and changes == [ANSWERING, None]  # still answering: the next wait waits again
    note_activity(user_dir)
    waiting = YieldGate(home, user_dir, idle_s=0.6, poll_s=0.05, max_answer_wait_s=0.1, answers=False)
    assert waiting.wait() >= 0.5  # the idle mode waits for the user as long as it takes


# -- the trainer's step boundary -----------------------------------------------------------------
def test_no_step_completes_while_an_answer_is_marked(tiny_model_dir, tmp_path):
    """The marker goes up after step 2: the trainer pauses before step 3 until it is removed, then runs every
    planned step (a pause cuts nothing)."""
    model, tok = fresh_model(tiny_model_dir)
    home, events = tmp_path / "home", []
    marker = AnswerMarker(home)

    def on_step(p):
        events.append(f"step {p.step}")
        if p.step == 2:
            marker.write()  # an answer starts in this process
            threading.Timer(0.5, marker.path.unlink).start()  # ... and ends half a second later

    gate = YieldGate(home, tmp_path, on_change=lambda reason: events.append(f"paused: {reason}"), poll_s=0.05)
    args = TrainingArgs(max_steps=5, lr=1e-3, time_limit_s=1e9, batch_size=4, max_epochs=None)
    r = train_on_pairs(model, tok, short_pairs(TOPICS[:8]), args, callback=on_step, pause=gate.wait)
    assert events == ["step 1", "step 2", "paused: answering", "paused: None", "step 3", "step 4", "step 5"]
    assert r.steps == 5 and r.stopped_reason == "max_steps" and gate.paused_s > 0


def test_time_spent_paused_does_not_count_against_the_safety_net(tiny_model_dir, monkeypatch):
    model, tok = fresh_model(tiny_model_dir)
    now = [0.0]  # a clock that only the pause moves: 100 s of waiting for the chat before step 3
    monkeypatch.setattr(trainer, "time", SimpleNamespace(perf_counter=lambda: now[0]))
    calls = []

    def pause():
        calls.append(1)
        if len(calls) == 3:
            now[0] += 100.0
            return 100.0
        return 0.0

    args = TrainingArgs(max_steps=5, lr=1e-3, time_limit_s=10.0, batch_size=4, max_epochs=None)
    r = train_on_pairs(model, tok, short_pairs(TOPICS[:8]), args, pause=pause)
    assert r.steps == 5 and r.stopped_reason == "max_steps"


# -- the answer side ------------------------------------------------------------------------------
def _mine(home):
    return [r for r in answering_now(home) if r["pid"] == os.getpid()]


def test_the_marker_is_up_while_an_answer_streams_and_gone_after_also_on_an_error(tiny_model_dir, isolated_home):
    with Assistant(user="m", model=str(tiny_model_dir), config=AssistantConfig(**FAST)) as a:
        stream = a.stream("Hello there")
        assert _mine(isolated_home) == []
        next(stream)
        assert [r["user"] for r in _mine(isolated_home)] == ["m"]
        assert seconds_idle(a.dir) is not None  # sending a message is activity (idle mode counts from it)
        for _ in stream:
            pass
        assert _mine(isolated_home) == [] and not list((isolated_home / ANSWERING_DIR).iterdir())

        seen = []
        real = a.engine.complete
        a.engine.complete = lambda *args, **kw: (seen.append(len(_mine(isolated_home))), real(*args, **kw))[1]
        a.answer("One more?")
        assert seen == [1] and _mine(isolated_home) == []

        real_stream = a.engine.stream
        a.engine.stream = lambda *args, **kw: _first_then_fail(real_stream(*args, **kw))
        with pytest.raises(RuntimeError, match="fell over"):
            for _ in a.stream("And now?"):
                assert len(_mine(isolated_home)) == 1
        assert _mine(isolated_home) == []
        assert a.history(100)[-1].role == "assistant"  # the partial answer is kept, as on Ctrl-C
        a.end_session(train="none")


def test_a_served_answer_holds_the_marker_too(tiny_model_dir, isolated_home):
    """`asls serve` answers through ConversationAssistant: its answers pause background updates as the chat's do."""
    from asls_mlx import ConversationAssistant

    a = ConversationAssistant(user="s", model=str(tiny_model_dir), config=AssistantConfig(**FAST))
    try:
        stream = a.stream_conversation([{"role": "user", "content": "Hi"}])
        next(stream)
        assert [r["user"] for r in _mine(isolated_home)] == ["s"]
        stream.close()
        assert _mine(isolated_home) == []
    finally:
        a.close()


def _first_then_fail(chunks):
    yield next(chunks)
    raise RuntimeError("the model fell over")


def test_interleaved_answers_of_one_process_share_one_marker(tmp_path):
    with answering(tmp_path) as first:
        with answering(tmp_path):
            assert len(answering_now(tmp_path)) == 1
        assert first.path.exists()  # the first answer still runs
    assert not first.path.exists()


# -- the worker, across processes ------------------------------------------------------------------
def _user_with_pairs(model_dir, name, **config):
    a = Assistant(user=name, model=str(model_dir), config=AssistantConfig(**FAST, **config))
    for q, e in EDITS:
        a.chat(q)
        a.edit(e)
    return a


def _until(predicate, what, timeout=240.0):
    """Poll until ``predicate()`` holds (the timeout only guards against a hang; nothing is timed)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _niceness(pid):
    return int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[16])


def test_the_worker_waits_while_another_process_answers_then_commits(tiny_model_dir, isolated_home, other_process):
    a = _user_with_pairs(tiny_model_dir, "w")
    try:
        marker = _marker(isolated_home, other_process)  # a chat in another process is answering
        summary = a.end_session(train="background")
        assert summary.background
        _until(lambda: a.training_status().get("paused") == ANSWERING, "the worker to report the pause")
        status = a.training_status()
        assert status["running"] and status["step"] == 0 and a.store.training_runs(a.user.id) == []
        assert _niceness(status["pid"]) >= min(19, os.nice(0) + 10)  # below the chat
        assert a.learning_status() == "learning… starting, paused while answering"
        assert training_status("w").line() == f"training in the background (pid {status['pid']}): running, paused while answering"
        marker.unlink()  # the answer ended
        a.wait_for_training(timeout=300)
        done = a.training_status()
        assert done["state"] == "done" and done["committed"] and done["paused_s"] > 0 and done["paused"] is None
        assert a.adapter_version == 1 and a.learning_status() is None
    finally:
        a.close()


def test_idle_mode_starts_once_the_user_stops_typing(tiny_model_dir, isolated_home):
    a = _user_with_pairs(tiny_model_dir, "i", train_after_session="idle", train_idle_s=1.5)
    try:
        a.end_session()
        typing = time.monotonic()
        while time.monotonic() - typing < 4:  # the user keeps typing for a while: nothing may start
            a.note_activity()
            time.sleep(0.3)
            status = a.training_status()
            assert status.get("step", 0) == 0 and a.store.training_runs(a.user.id) == []
        assert status["running"] and status["message"] == WAITING_FOR_IDLE and status["paused"] == USER_ACTIVE
        assert a.learning_status() == "learning starts when you have been idle 2 s"
        a.wait_for_training(timeout=300)  # no more typing
        done = a.training_status()
        assert done["state"] == "done" and done["committed"] and a.adapter_version == 1
    finally:
        a.close()


def test_a_new_session_replaces_a_worker_still_waiting_for_idle(tiny_model_dir, isolated_home):
    """Ending a second session while the first one's worker still waits: one worker learns both (one run)."""
    a = _user_with_pairs(tiny_model_dir, "r", train_after_session="idle", train_idle_s=600)
    try:
        first = a.end_session()
        old = a._worker._proc
        assert a.learning_status() == "learning starts when you have been idle 600 s"  # before it has written
        _until(lambda: a.training_status().get("paused") == USER_ACTIVE, "the worker to wait for the user")
        assert a.training_status()["pid"] == old.pid and a.training_status()["message"] == WAITING_FOR_IDLE
        a.chat("Name a blue fruit")
        a.edit("A blueberry.")
        second = a.end_session()
        assert old.poll() is not None and a._worker._proc is not old  # the waiting worker was replaced
        assert a._worker.sessions == [first.session_id, second.session_id]
        (a.dir / "activity.json").write_text(json.dumps({"pid": _dead_pid(), "time": time.time()}))  # user left
        a.wait_for_training(timeout=300)
        runs = a.store.training_runs(a.user.id)
        assert [(r.status, r.session_ids) for r in runs] == [("ok", (first.session_id, second.session_id))]
    finally:
        a.close()


# -- what the user reads -----------------------------------------------------------------------------
def test_learning_words():
    run = {"running": True, "step": 4, "total": 10, "message": "training", "idle_s": 60}
    assert learning_words(run, None) == "learning… 40%"
    assert learning_words(run, ANSWERING) == "learning… 40%, paused while answering"
    assert learning_words(run, USER_ACTIVE) == "learning… 40%, paused until you have been idle 60 s"
    assert learning_words(dict(run, step=0, total=0, message="mining self-labelled pairs"), None) == \
        "learning… mining self-labelled pairs"
    assert learning_words(dict(run, step=0, total=0, message=WAITING_FOR_IDLE), USER_ACTIVE) == \
        "learning starts when you have been idle 60 s"
    assert learning_words(dict(run, running=False), ANSWERING) is None
    line = TrainingStatus(True, "background", 42, "training", 3, 10, 0.5, None, ANSWERING).line()
    assert line == "training in the background (pid 42): training, step 3/10, loss 0.500, paused while answering"
    assert TrainingStatus(True, "background", 42, "training", 3, 10, 0.5, None).line().endswith("loss 0.500")
    with pytest.raises(ASLSError, match="train_idle_s"):
        AssistantConfig(train_idle_s=0)


def test_the_chat_shows_the_pause_under_the_answer_and_learning_in_the_footer(tiny_model_dir, isolated_home, other_process):
    from asls_mlx.cli.chat import ChatSession
    from asls_mlx.cli.ui import ChatUI

    out = io.StringIO()
    ui = ChatUI(Console(file=out, force_terminal=True, width=200, color_system=None), plain=False)
    args = argparse.Namespace(user="c", model=str(tiny_model_dir), max_tokens=8, temperature=0.0, seed=0,
                              train="background", no_profile=False, idle_seconds=60.0)
    session = ChatSession(args, ui)
    try:
        # a worker at step 3 of 10 (its record, written by a live process)
        (session.a.dir / PROGRESS_FILE).write_text(json.dumps(
            {"state": "running", "step": 3, "total": 10, "message": "training", "pid": other_process, "paused": None}))
        session.answer(session.a.stream("Hello"))
        text = out.getvalue()
        assert "learning… 30%, paused while answering" in text  # under the answer while it streams
        footer = text.strip().splitlines()[-1]
        assert "· learning… 30% ·" in footer and "paused" not in footer  # after it: learning again
    finally:
        session.a.close()


def test_the_worker_gives_way_before_loading_between_phases_and_before_every_step(tiny_model_dir, tmp_path):
    """The worker's update (``background._update``) in this process, with a gate that only records its calls."""
    from asls_mlx.background import ProgressRecord, _update

    a = _user_with_pairs(tiny_model_dir, "p")
    try:
        sessions = [a.end_session(train="none").session_id]
        events = []
        record = ProgressRecord(tmp_path / "progress.json")
        record.update = lambda **fields: events.append(fields.get("message"))
        gate = SimpleNamespace(idle_s=None, wait=lambda: events.append("wait") or 0.0)
        config = AssistantConfig(**FAST)
        report = _update(a.store, a.user, str(tiny_model_dir), config, sessions, record, gate, lambda: False)
    finally:
        a.close()
    assert report.committed and report.steps >= 2
    steps = ["wait", "training"] * (report.steps - 1) + ["wait", "validating", "validating"]  # + the steps-done call
    # self-labelled pairs are off (the default): the user is not told about mining that does not happen
    phases = ["wait", "loading model", "wait", "training", "wait", *steps]
    assert events[:len(phases)] == phases
    # then before the held-out checks, retention and the answers old vs new, and between the answers' tokens
    gate_answers = events[len(phases):]
    assert set(gate_answers) == {"wait"} and len(gate_answers) > 3 + 10
    from asls_mlx.yielding import pause_point
    pause_point()
    assert len(events) == len(phases) + len(gate_answers)  # the hook is gone with the update
