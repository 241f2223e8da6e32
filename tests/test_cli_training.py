"""issue 20, items 3 and 4 as a user runs them: --version, `asls users`, read commands that never create a
user, --json, plain piped output, training runs (committed / rejected and why / interrupted), `asls train`'s
phases when piped, /train on the session so far, and --status / --cancel of a background run."""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from rich.console import Console

from asls_mlx import Assistant, AssistantConfig, list_users, training_runs
from asls_mlx.store import open_store

DOCS = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def run(*args, **kw):
    return subprocess.run([sys.executable, "-m", "asls_mlx", *args], capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL, **kw)


def _user_with_pairs(model_dir, name="cli", **config):
    """A user whose finished session left training pairs (edits) and nothing trained yet."""
    config = dict(max_tokens=6, self_labelled=False, **config)
    with Assistant(user=name, model=str(model_dir), config=AssistantConfig(**config)) as a:
        for q in ("What is the capital of France?", "Name a river in Spain.", "What is two plus two?", "Say hi."):
            a.chat(q)
            a.edit("In short: " + q[:12])
        a.end_session(train="none")


def test_version_and_exit_codes_in_help():
    out = run("--version")
    assert out.returncode == 0 and re.fullmatch(r"asls \d+\.\d+\.\d+\n", out.stdout)
    for argv in (["--help"], ["train", "--help"]):
        text = run(*argv).stdout
        assert "exit codes:" in text and "130" in text and "2    the command line is wrong" in text
    assert run("bogus").returncode == 2  # usage
    assert run("history", "--user", "nobody").returncode == 1  # a problem the message names


def test_read_commands_never_create_a_user(tmp_path):
    for argv in (["profile"], ["history"], ["export", str(tmp_path / "x.jsonl")], ["adapters"], ["adapters", "--runs"],
                 ["forget", "--all", "--yes"], ["train", "--status"], ["train", "--cancel"], ["profile", "--json"]):
        out = run(*argv, "--user", "nobody")
        assert out.returncode == 1, argv
        assert out.stderr.strip() == "asls: error: no user 'nobody' — `asls users` lists them (known: none yet: " \
                                     "`asls chat` makes one)", argv
    assert list_users() == [] and not (tmp_path / "x.jsonl").exists()


def test_users_lists_with_json_and_deletes(tiny_model_dir, isolated_home):
    _user_with_pairs(tiny_model_dir, "ann")
    _user_with_pairs(tiny_model_dir, "bob")
    table = run("users").stdout.splitlines()
    assert table[1].split("\t") == ["user", "sessions", "messages", "pairs", "adapters", "active", "last used"]
    assert table[2].split("\t")[:6] == ["ann", "1", "8", str(list_users()[0].pairs), "0", "base"]
    doc = json.loads(run("users", "--json").stdout)
    assert doc["version"] == 1 and doc["kind"] == "users"
    assert [u["name"] for u in doc["users"]] == ["ann", "bob"]
    assert set(doc["users"][0]) == {"name", "created_at", "sessions", "messages", "pairs", "adapters",
                                    "active_adapter", "last_used"}
    refused = run("users", "--delete", "bob")
    assert refused.returncode == 1 and "add --yes" in refused.stderr
    folder = isolated_home / "users" / "2"
    assert folder.is_dir()
    out = run("users", "--delete", "bob", "--yes")
    assert out.returncode == 0 and out.stdout.startswith("deleted user bob: 1 sessions, 8 messages")
    assert [u.name for u in list_users()] == ["ann"] and not folder.exists()
    with open_store() as store:
        assert store.execute("SELECT COUNT(*) FROM messages").fetchone()[0] == 8  # ann's only


def test_piped_output_is_plain_and_unwrapped(tiny_model_dir):
    long = "Please remember: " + " ".join(f"word{i}" for i in range(60))
    with Assistant(user="p", model=str(tiny_model_dir), config=AssistantConfig(max_tokens=4, adapt=False)) as a:
        a.chat(long)
    out = run("history", "--user", "p", env=dict(os.environ, COLUMNS="40"))
    assert "\x1b[" not in out.stdout  # no colour codes in a pipe
    assert any(line.endswith("\t" + long) for line in out.stdout.splitlines())  # one line, not wrapped at 40 or 80
    doc = json.loads(run("history", "--user", "p", "--json").stdout)
    assert doc["messages"][0]["text"] == long and doc["messages"][0]["role"] == "user"
    assert set(doc["messages"][0]) == {"id", "session", "role", "text", "created_at", "edited"}


def test_every_json_document_is_documented(tiny_model_dir):
    _user_with_pairs(tiny_model_dir, "j")
    assert run("train", "--user", "j", "--model", str(tiny_model_dir)).returncode in (0, 1)  # runs and versions
    docs = DOCS.read_text()
    for argv in (["users"], ["profile", "--user", "j"], ["history", "--user", "j"], ["adapters", "--user", "j"],
                 ["train", "--status", "--user", "j"], ["doctor", "--quick"]):
        doc = json.loads(run(*argv, "--json").stdout)
        assert doc["version"] == 1
        assert f"`{doc['kind']}`" in docs, doc["kind"]
        nested = [k for v in doc.values() if isinstance(v, list) and v and isinstance(v[0], dict) for k in v[0]]
        for key in [*doc, *nested]:
            assert f"`{key}`" in docs, (doc["kind"], key)


def test_train_when_piped_prints_phases_steps_and_a_final_line(tiny_model_dir):
    _user_with_pairs(tiny_model_dir, "t")
    out = run("train", "--user", "t", "--model", str(tiny_model_dir), "--budget", "20")  # --time-limit's old name
    lines = out.stdout.splitlines()
    assert out.returncode == 0, out.stdout + out.stderr
    assert lines[0].startswith("optimizer steps: as many as the new pairs call for (at most 10), stopped only by a 20 s "
                               "safety net (--time-limit); the rest of the update")
    for phase in ("reading the conversation so far", "loading model", "training", "validating"):
        assert any(line.startswith(phase) for line in lines), (phase, lines)
    assert any(re.match(r"  step \d+/\d+ · loss \d", line) for line in lines)
    assert re.match(r"adapter v1 — trained on \d+ new pairs.* \(\d+ s in all\)", lines[-1]), lines[-1]
    again = run("train", "--user", "t", "--model", str(tiny_model_dir))
    assert re.search(r"took \d+ s last time", again.stdout.splitlines()[0])  # the whole update's expected time
    assert "nothing to train on yet: no new pairs since the last adapter" in again.stdout


def test_runs_show_committed_rejected_with_reason_and_interrupted(tiny_model_dir, isolated_home):
    from asls_mlx.adaptation.config import LearningConfig
    from asls_mlx.locks import FileLock

    _user_with_pairs(tiny_model_dir, "r")
    with Assistant(user="r", model=str(tiny_model_dir), config=AssistantConfig(
            max_tokens=6, self_labelled=False, learning=LearningConfig(retention_bound=1e-6))) as a:
        report = a.train(wait=True)
    assert not report.committed
    with open_store() as store:
        uid = store.get_user("r").id
        store.add_training_run(uid)  # a trainer killed mid-run leaves this
    lock = FileLock(isolated_home / "users" / str(uid) / "train.lock")
    assert lock.acquire()  # ...unless a trainer still holds the lock: then the run is live
    assert [r.outcome for r in training_runs("r")] == ["rejected", "running"]
    lock.release()
    rejected, interrupted = training_runs("r")
    assert interrupted.outcome == "interrupted" and "killed" in interrupted.reason
    assert "perplexity" in rejected.reason and rejected.steps > 0 and rejected.heldout_n >= 1
    assert rejected.retention_ratio is not None and rejected.heldout_before is not None
    table = run("adapters", "--runs", "--user", "r").stdout.splitlines()
    assert table[1].split("\t") == ["run", "started", "result", "pairs", "steps", "held-out pref. (n)", "retention ×", "s"]
    cells = table[2].split("\t")
    assert cells[2].startswith("rejected: general-text perplexity")
    assert re.fullmatch(r"\d\.\d\d → \d\.\d\d \(n=\d+\)", cells[5]) and re.fullmatch(r"\d+\.\d{3}", cells[6])
    assert table[3].split("\t")[2].startswith("interrupted: ")
    bundle = isolated_home / "r.jsonl"
    assert run("export", "--user", "r", str(bundle)).returncode == 0
    statuses = [json.loads(x)["status"] for x in bundle.read_text().splitlines() if '"training_run"' in x]
    assert statuses == ["rejected", "interrupted"]


def _chat_session(model_dir, out: io.StringIO, user="c"):
    from asls_mlx.cli.chat import ChatSession
    from asls_mlx.cli.ui import ChatUI

    args = argparse.Namespace(user=user, model=str(model_dir), train="none", max_tokens=6, temperature=0.0, seed=0,
                              no_profile=False)
    return ChatSession(args, ChatUI(Console(file=out, width=200)))


def test_slash_train_learns_from_the_session_so_far(tiny_model_dir):
    out = io.StringIO()
    session = _chat_session(tiny_model_dir, out)
    a = session.a
    try:
        for q in ("What is the capital of France?", "Name a river in Spain.", "What is two plus two?"):
            session.answer(a.stream(q))
            session.command(f"/edit In short: {q[:10]}")
        sid = a.session_id
        session.command("/train")
        assert a.session_id == sid  # the session goes on
        assert "nothing to train on" not in out.getvalue()
        assert re.search(r"(adapter v1 — trained on \d+ new pairs|kept adapter none)", out.getvalue())
        session.command("/adapters")
        assert "training runs of c" in out.getvalue()
        session.end()  # ending it later stores no pair twice
        with open_store() as store:
            pairs = store.pairs(store.get_user("c").id, split=None)
        assert len(pairs) == len({p.prompt for p in pairs}) == 3
    finally:
        a.close()


def test_held_out_pairs_are_named_as_such(tiny_model_dir):
    from asls_mlx.profiling.mining import split_of

    prompt = next(f"Tell me about topic {i}." for i in range(500) if split_of("h", f"Tell me about topic {i}.") == "val")
    out = io.StringIO()
    session = _chat_session(tiny_model_dir, out, user="h")
    try:
        session.answer(session.a.stream(prompt))
        session.command("/edit A short answer.")
        session.command("/train")
        assert ("nothing to train on yet: the 1 pairs mined so far are held out to check adapters, not to train "
                "them") in " ".join(out.getvalue().split())
        session.end()
        assert "1 preference pair mined from this session (it is held out" in out.getvalue()
    finally:
        session.a.close()


WORKER = textwrap.dedent("""
    import signal, sys, time
    from pathlib import Path
    from asls_mlx.background import write_progress
    from asls_mlx.locks import FileLock
    folder = Path(sys.argv[1])
    lock = FileLock(folder / "train.lock"); assert lock.acquire()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    write_progress(folder / "train_progress.json", state="running", step=3, total=10, loss=0.5, message="training")
    print("ready", flush=True)
    time.sleep(120)
""")


def test_train_status_and_cancel_of_a_background_run(tiny_model_dir, isolated_home):
    _user_with_pairs(tiny_model_dir, "b")
    folder = isolated_home / "users" / "1"
    worker = subprocess.Popen([sys.executable, "-c", WORKER, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert worker.stdout.readline().strip() == "ready"
        out = run("train", "--status", "--user", "b")
        assert out.stdout.strip() == f"training in the background (pid {worker.pid}): training, step 3/10, loss 0.500"
        doc = json.loads(run("train", "--status", "--user", "b", "--json").stdout)
        assert doc["running"] and doc["where"] == "background" and doc["pid"] == worker.pid and doc["step"] == 3
        out = run("train", "--cancel", "--user", "b")
        assert out.stdout.strip() == "training cancelled; the previous adapter stays active"
        assert worker.wait(10) == 0
    finally:
        worker.kill()
    assert run("train", "--status", "--user", "b").stdout.startswith("no training running; no run yet")
    assert run("train", "--cancel", "--user", "b").stdout.strip() == "no training running"
