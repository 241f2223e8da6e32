"""Concurrency: background training while the user keeps chatting and another process reads the
history in a loop — no 'database is locked' reaches anyone; a second chat on the same user is refused."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

from asls_mlx import Assistant, AssistantConfig, ASLSError

CFG = dict(max_tokens=8, train_budget_s=10, self_labelled=False, max_steps=3)
EDITS = [("What is the capital of France?", "Paris."), ("Name a red fruit", "An apple."), ("Say hello", "Hello!"),
         ("Pick a colour", "Blue.")]

READER = textwrap.dedent("""
    import sys, time
    import asls_mlx
    from asls_mlx.store import open_store
    errors, reads, deadline = 0, 0, time.time() + float(sys.argv[1])
    while time.time() < deadline:
        try:
            with open_store() as s:
                u = s.get_user("busy")
                s.history(u.id, 200); s.pairs(u.id, split=None); s.training_runs(u.id)
                reads += 1
        except Exception as e:
            errors += 1
            print("ERROR", type(e).__name__, e, flush=True)
        time.sleep(0.01)
    print("READS", reads, "ERRORS", errors, flush=True)
""")


def test_background_training_while_chatting_and_reading(tiny_model_dir, tmp_path):
    a = Assistant(user="busy", model=str(tiny_model_dir), config=AssistantConfig(**CFG))
    try:
        for q, e in EDITS:
            a.chat(q)
            a.edit(e)
        reader_script = tmp_path / "reader.py"
        reader_script.write_text(READER)
        reader = subprocess.Popen([sys.executable, str(reader_script), "25"], stdout=subprocess.PIPE, text=True)
        assert a.end_session(train="background").background
        turns, errors = 0, []
        deadline = time.time() + 20
        while time.time() < deadline:  # the user keeps chatting while the trainer writes
            try:
                a.chat(f"message number {turns}")
                a.good()
                turns += 1
            except Exception as e:  # anything at all reaching the user is a failure
                errors.append(repr(e))
        a.wait_for_training(timeout=300)
        out, _ = reader.communicate(timeout=120)
    finally:
        a.close()
    assert not errors, errors
    assert not [line for line in out.splitlines() if line.startswith("ERROR ")], out
    reads, read_errors = int(out.split("READS")[1].split()[0]), int(out.split("ERRORS")[1].split()[0])
    assert read_errors == 0, out
    assert reads > 20 and turns > 3, (reads, turns)
    status = a.training_status()
    assert status.get("state") == "done", status


def test_second_chat_process_on_the_same_user_is_refused(tiny_model_dir):
    with Assistant(user="solo", model=str(tiny_model_dir), config=AssistantConfig(**CFG)) as a:
        a.chat("hello")
        child = subprocess.run([sys.executable, "-m", "asls_mlx", "chat", "--user", "solo", "--model", str(tiny_model_dir)],
                               stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, env=dict(os.environ))
        assert child.returncode == 1
        assert "already chatting" in child.stderr and "Traceback" not in child.stderr
        with pytest.raises(ASLSError, match="already chatting"):
            Assistant(user="solo", model=str(tiny_model_dir))
        assert a.chat("still here").text is not None  # the first chat is unaffected
