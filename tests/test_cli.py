"""The `asls` command: every subcommand's --help and main path, one-line errors, and the chat in a pty."""

import os
import subprocess
import sys

import pytest

from asls_mlx.cli import build_parser, main

SUBCOMMANDS = ["chat", "train", "profile", "history", "export", "import", "forget", "adapters", "models", "doctor", "eval"]


def run(*args, **kw):
    return subprocess.run([sys.executable, "-m", "asls_mlx", *args], capture_output=True, text=True, timeout=300, **kw)


def test_every_subcommand_has_help_with_user_and_model(capsys):
    for name in SUBCOMMANDS:
        with pytest.raises(SystemExit) as exit_:
            main([name, "--help"])
        assert exit_.value.code == 0
        out = capsys.readouterr().out
        assert "usage: asls " + name in out
        if name not in ("models", "doctor", "import", "eval"):
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
        (["forget", "--all"], "add --yes"),
        (["forget", "--since", "yesterday", "--yes"], "cannot read the date"),
        (["import", "/no/such/file.jsonl"], "no such file"),
        (["adapters", "rollback", "7"], "no usable adapter version 7"),
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
    child.expect("preference pairs mined")
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
