"""`asls profile --evidence`, `asls forget --feature/--pair`, and the chat's `/learned` and `/forget pair N`."""

import argparse
import io
import os
import subprocess
import sys

import pytest

from asls_mlx import ASLSError, Assistant, AssistantConfig


def run(*args):
    return subprocess.run([sys.executable, "-m", "asls_mlx", *args], capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL, env=dict(os.environ, COLUMNS="200"))


def test_profile_evidence_and_forget_feature_from_the_command_line(tiny_model_dir):
    with Assistant(user="ev", model=str(tiny_model_dir), config=AssistantConfig(max_tokens=6, self_labelled=False)) as a:
        a.chat("I prefer bullet points. What is lava?")
        a.end_session(train="none")
    out = run("profile", "--evidence", "--user", "ev")
    text = " ".join(out.stdout.split())
    assert out.returncode == 0, out.stderr
    assert "bullets: wanted · confidence" in text and "in the prompt" in text
    assert "you said “I prefer bullet points. What is lava?”" in text
    out = run("forget", "--feature", "bullets", "--user", "ev")
    assert out.returncode == 0 and "removed bullets (wanted) from the profile" in out.stdout
    assert "bullets:" not in run("profile", "--evidence", "--user", "ev").stdout
    out = run("forget", "--feature", "sparkles", "--user", "ev")
    assert out.returncode == 1 and "no feature 'sparkles'" in out.stderr and "Traceback" not in out.stderr
    out = run("forget", "--pair", "99", "--user", "ev")
    assert out.returncode == 1 and "no preference pair 99" in out.stderr


def test_learned_and_forget_pair_in_the_chat(tiny_model_dir):
    from rich.console import Console

    from asls_mlx.cli.chat import ChatSession
    from asls_mlx.cli.ui import ChatUI

    out = io.StringIO()
    ui = ChatUI(Console(file=out, width=200))
    args = argparse.Namespace(user="chat", model=str(tiny_model_dir), train="none", max_tokens=6, temperature=0.0,
                              seed=0, no_profile=False)
    session = ChatSession(args, ui)
    a = session.a
    try:
        session.answer(a.stream("What is the capital of France?"))
        session.command("/edit Paris.")
        session.answer(a.stream("Call me Jo. Keep answers short please"))
        session.command("/learned")  # during the session: no need to end it first
        text = " ".join(out.getvalue().split())
        assert "name: Jo · confidence 1.00 · in the prompt" in text
        session.command("/new")
        pair = a.pairs()[0]
        session.command("/learned")
        shown = out.getvalue()  # the pair table names the ids /forget pair takes (a box, or tabs when not a terminal)
        assert f"│ {pair.id} " in shown or f"\n{pair.id}\t" in shown
        session.command(f"/forget pair {pair.id}")
        assert pair.id not in {p.id for p in a.pairs()}
        assert f"pair {pair.id} removed" in out.getvalue()
        with pytest.raises(ASLSError, match="not a pair number"):
            session.command("/forget pair x")
        with pytest.raises(ASLSError, match="needs a name"):
            session.command("/forget feature")
        session.command("/forget feature name")
        assert "name" not in a.profile.facts
    finally:
        a.close()
