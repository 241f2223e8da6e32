"""The `asls` command: every subcommand's --help and main path, one-line errors, and the chat in a pty."""

import os
import subprocess
import sys

import pytest

from asls_mlx.cli import build_parser, main

SUBCOMMANDS = ["chat", "train", "profile", "history", "users", "export", "import", "forget", "adapters", "models", "doctor", "eval"]


def run(*args, **kw):
    return subprocess.run([sys.executable, "-m", "asls_mlx", *args], capture_output=True, text=True, timeout=300, **kw)


def test_every_subcommand_has_help_with_user_and_model(capsys):
    for name in SUBCOMMANDS:
        with pytest.raises(SystemExit) as exit_:
            main([name, "--help"])
        assert exit_.value.code == 0
        out = capsys.readouterr().out
        assert "usage: asls " + name in out
        if name not in ("models", "doctor", "eval", "users"):
            assert "--user" in out
        if name in ("chat", "train", "eval"):
            assert "--model" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["bogus"], "invalid choice"),
        (["history", "--limit", "x"], "invalid int"),
        (["history", "--limit", "0"], "--limit must be at least 1"),
        (["forget"], "one of the arguments"),
        (["forget", "--all"], "no user 'default'"),
        (["forget", "--since", "2026-11-02", "--until", "2026-11-01", "--yes"], "is not after --since"),
        (["export", "/no/such/dir/me.jsonl"], "the folder /no/such/dir does not exist"),
        (["history", "--user", ""], "non-empty"),
        (["train", "--budget", "0"], "between 0 and 86400"),
        (["train", "--status", "--cancel"], "not allowed with"),
        (["import", "--from", "gemini", "x.json"], "invalid choice"),
        (["users", "--delete", "ghost", "--yes"], "no user 'ghost'"),
        (["forget", "--since", "yesterday", "--yes"], "cannot read the date"),
        (["import", "/no/such/file.jsonl"], "no such file"),
        (["adapters", "rollback", "7"], "no user 'default'"),
        (["chat", "--model", "/no/such/dir"], "unknown model"),
        (["chat", "--max-tokens", "0"], "--max-tokens must be at least 1"),
        (["history", "--user", "a/b"], "user name"),
    ],
)
def test_bad_arguments_give_one_line_and_nonzero_exit(argv, message):
    out = run(*argv, stdin=subprocess.DEVNULL)
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert message in lines[0] and "Traceback" not in out.stderr + out.stdout


def test_history_profile_adapters_export_import_forget_main_paths(tiny_model_dir, tmp_path):
    from asls_mlx import Assistant, AssistantConfig

    with Assistant(user="cli", model=str(tiny_model_dir), config=AssistantConfig(max_tokens=6, self_labelled=False)) as a:
        a.chat("What is the capital of France?")
        a.edit("Paris.")
        a.end_session(train="wait")
    env = dict(os.environ, COLUMNS="200")
    assert "What is the capital of France?" in run("history", "--user", "cli", env=env).stdout
    assert "Profile of cli" in run("profile", "--user", "cli", env=env).stdout
    assert run("export", "--user", "cli", str(tmp_path / "b.jsonl")).returncode == 0
    out = run("import", str(tmp_path / "b.jsonl"), "--rename", "cli2")
    assert out.returncode == 0 and "imported user cli2" in out.stdout
    assert "What is the capital" in run("history", "--user", "cli2", env=env).stdout
    assert run("forget", "--user", "cli2", "--all", "--yes").returncode == 0
    assert "no history yet" in run("history", "--user", "cli2").stdout
    assert run("adapters", "--user", "cli", env=env).returncode == 0


def test_parser_lists_all_subcommands():
    text = build_parser().format_help()
    for name in SUBCOMMANDS:
        assert name in text


@pytest.mark.e2e
def test_chat_driven_like_a_person(default_model_dir):
    pexpect = pytest.importorskip("pexpect")
    child = pexpect.spawn(sys.executable, ["-m", "asls_mlx", "chat", "--train", "none", "--max-tokens", "48"], encoding="utf-8",
                          timeout=180, dimensions=(50, 160), env=dict(os.environ, TERM="xterm", COLUMNS="160"))
    child.expect("/help for commands")
    child.expect("you>")
    child.sendline("What is the capital of France?")
    child.expect("Paris")
    child.expect("base model")  # the status line under the answer
    child.expect("you>")
    child.sendline("/regen")
    child.expect("pairs waiting")
    child.expect("you>")
    child.sendline("/good")
    child.expect("noted: good answer")
    child.expect("you>")
    child.sendline("/profile")
    child.expect("Profile of default")
    child.expect("you>")
    child.sendline("/new")
    child.expect("preference pairs? mined")
    child.expect("you>")
    child.sendline("/train")
    child.expect(["adapter v1", "kept adapter", "adapter unchanged", "nothing to train on"])
    child.expect("you>")
    child.sendline("/adapters")
    child.expect(["adapters of default", "no adapters yet"])
    child.expect("you>")
    child.sendline("/quit")
    child.expect("bye")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_chat_commands_through_the_public_api(tiny_model_dir, monkeypatch):
    """/regen and /edit before any answer say so; /edit (typed or inline), /regen, /new and /profile work."""
    import argparse
    import io

    from rich.console import Console

    from asls_mlx import ASLSError
    from asls_mlx.cli.chat import ChatSession
    from asls_mlx.cli.ui import ChatUI

    out = io.StringIO()
    ui = ChatUI(Console(file=out, width=200))
    args = argparse.Namespace(user="t", model=str(tiny_model_dir), train="none", max_tokens=6, temperature=0.0,
                              seed=0, no_profile=False)
    session = ChatSession(args, ui)
    a = session.a
    try:
        for command in ("/regen", "/edit Paris."):
            with pytest.raises(ASLSError, match="no answer to give feedback on yet"):
                session.command(command)
        session.answer(a.stream("What is the capital of France?"))
        assert "cut off at 6 tokens" in out.getvalue()  # the tiny model ends no answer in 6 tokens
        session.command("/edit Paris is the capital of France.")
        assert a.last_answer() == "Paris is the capital of France."
        session.command("/regen")
        assert a.last_answer() != "Paris is the capital of France."
        monkeypatch.delenv("EDITOR", raising=False)
        monkeypatch.setattr(ui, "prompt", lambda label="you": "Paris.")
        session.command("/edit")
        assert a.last_answer() == "Paris."
        session.command("/new")
        assert a.profile_changes() == []  # one snapshot: nothing to compare with yet
        session.answer(a.stream("Name two rivers in France."))
        session.command("/edit - the Seine\n- the Loire")
        session.command("/new")
        session.command("/profile")
        changes = a.profile_changes()
        assert "bullets: unknown -> wanted" in changes
        text = " ".join(out.getvalue().split())
        assert "type your version of the answer" in text and "Profile of t" in text
        assert "Last session changed: " + "; ".join(changes) in text
    finally:
        a.close()


def test_eval_passes_seed_and_training_budget_to_the_benchmark(monkeypatch, tmp_path):
    """`asls eval --seed N --train-budget S` reaches run_eval: the seed picks the simulated users' draws, and S
    is each update's wall-clock safety net (`--train-budget` is `--time-limit`'s old name, still accepted)."""
    from asls_mlx import evaluation

    seen = {}

    class Result:
        def markdown(self):
            return "ok"

    monkeypatch.setattr(evaluation, "main_eval", lambda **kw: seen.update(kw) or Result())
    assert main(["eval", "--quick", "--seed", "3", "--train-budget", "1e6", "--out", str(tmp_path)]) == 0
    assert seen["seed"] == 3 and seen["train_budget_s"] == 1e6 and seen["quick"]
    main(["eval", "--out", str(tmp_path)])
    assert seen["seed"] is None and seen["seeds"] is None and seen["train_budget_s"] is None  # the run's own defaults
    main(["eval", "--seeds", "0,1,2", "--out", str(tmp_path)])
    assert seen["seeds"] == [0, 1, 2] and seen["max_tokens"] is None
    main(["eval", "--quick", "--max-tokens", "160", "--out", str(tmp_path)])
    assert seen["max_tokens"] == 160  # the standard run's budget on the quick loop
    with pytest.raises(SystemExit) as exit_:
        main(["eval", "--max-tokens", "0", "--out", str(tmp_path)])
    assert exit_.value.code == 2
    with pytest.raises(SystemExit) as exit_:  # a usage error, one line, not a traceback
        main(["eval", "--seeds", "a,b", "--out", str(tmp_path)])
    assert exit_.value.code == 2
