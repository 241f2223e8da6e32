"""Corrupt/mismatched files, training faults, resource limits, isolation/privacy — on the tiny model."""

from __future__ import annotations

import errno
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import mlx.core as mx
import pytest

from asls_mlx import Assistant, AssistantConfig, ASLSError
from asls_mlx.adaptation import lora as lora_mod
from asls_mlx.adaptation import trainer as trainer_mod
from asls_mlx.adaptation.lora import LoraConfig, attach_lora, save_adapter
from asls_mlx.store import open_store

CFG = dict(max_tokens=8, train_budget_s=5, self_labelled=False, max_steps=2)
EDITS = [("What is the capital of France?", "Paris."), ("Name a red fruit", "An apple."), ("Say hello", "Hello!")]


def _session(a, tag=""):
    for q, e in EDITS:
        a.chat(q + tag)
        a.edit(e + tag)


def _trained(tiny_model_dir, user="u"):
    a = Assistant(user=user, model=str(tiny_model_dir), config=AssistantConfig(**CFG))
    _session(a)
    s = a.end_session(train="wait")
    assert s.training and s.training.committed, s.training and s.training.reason
    return a


def _lora_snapshot(a):
    return {k: v for k, v in lora_mod.lora_parameters(a.engine.model).items()}


def test_corrupt_and_mismatched_adapters_fall_back_with_a_notice(tiny_model_dir, tiny_model):
    a = _trained(tiny_model_dir)
    v = a.adapter_version
    weights = Path(a.repo.path(v)) / "adapters.safetensors"
    a.close()
    good = weights.read_bytes()
    rank4 = tiny_model_dir.parent / "rank4"
    m = tiny_model[0]
    import mlx_lm
    other, _ = mlx_lm.load(str(tiny_model_dir))
    attach_lora(other, LoraConfig(rank=4))
    save_adapter(rank4, other, LoraConfig(rank=4))
    damage = {
        "truncated": lambda: weights.write_bytes(good[: len(good) // 2]),
        "garbage": lambda: weights.write_bytes(os.urandom(len(good))),
        "empty": lambda: weights.write_bytes(b""),
        "other rank": lambda: shutil.copy(rank4 / "adapters.safetensors", weights),  # rank-4 weights, rank-8 config
        "missing": lambda: weights.unlink(),
    }
    for name, hurt in damage.items():
        hurt()
        with Assistant(user="u", model=str(tiny_model_dir), config=AssistantConfig(**CFG)) as b:
            assert b.chat("hello").adapter_version is None, name
            assert b.adapter_version is None, name
            assert b.notices and "cannot be used" in b.notices[0], (name, b.notices)
        # restore the good version for the next case
        shutil.rmtree(weights.parent)
        weights.parent.mkdir(mode=0o700)
        save_adapter(weights.parent, _loaded_with(tiny_model_dir, good), LoraConfig())
    # trained for another base model (the store row says so)
    store = open_store()
    store.execute("UPDATE adapter_versions SET base_model = 'someone-else' WHERE version = ?", (v,))
    store.close()
    with Assistant(user="u", model=str(tiny_model_dir), config=AssistantConfig(**CFG)) as b:
        b.chat("hi")
        assert b.adapter_version is None and "trained for someone-else" in b.notices[0]


def _loaded_with(tiny_model_dir, weights_bytes):
    import mlx_lm
    model, _ = mlx_lm.load(str(tiny_model_dir))
    attach_lora(model, LoraConfig())
    p = tiny_model_dir.parent / f"w{uuid.uuid4().hex[:6]}.safetensors"
    p.write_bytes(weights_bytes)
    lora_mod.set_lora_weights(model, mx.load(str(p)))
    return model


def test_newer_schema_is_refused_not_downgraded(tiny_model_dir, isolated_home):
    open_store().close()
    conn = sqlite3.connect(isolated_home / "asls.db")
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(ASLSError, match="newer"):
        Assistant(user="u", model=str(tiny_model_dir))
    conn = sqlite3.connect(isolated_home / "asls.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 99
    conn.close()


def test_half_converted_model_dir_is_a_one_line_cli_error(tiny_model_dir, tmp_path):
    bad = tmp_path / "half"
    shutil.copytree(tiny_model_dir, bad)
    w = bad / "model.safetensors"
    w.write_bytes(w.read_bytes()[:1000])
    proc = subprocess.run([sys.executable, "-m", "asls_mlx", "chat", "--model", str(bad), "--user", "m"],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr + proc.stdout
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_training_faults_keep_the_previous_adapter_and_record_why(tiny_model_dir, monkeypatch):
    a = _trained(tiny_model_dir)
    v1, before = a.adapter_version, _lora_snapshot(a)

    def check(expected_status, reason_part):
        runs = a.store.training_runs(a.user.id)
        assert runs[-1].status in expected_status.split("|") and reason_part in (runs[-1].reason or ""), runs[-1]
        assert a.store.active_adapter(a.user.id).version == v1 and a.adapter_version == v1
        now = _lora_snapshot(a)
        assert all(mx.array_equal(now[k], before[k]).item() for k in before)
        assert [r.status for r in runs].count("running") == 0

    real = trainer_mod.make_loss

    def nan_loss(args):
        fn = real(args)
        return lambda *x: (lambda t, m: (t * float("nan"), m))(*fn(*x))

    monkeypatch.setattr(trainer_mod, "make_loss", nan_loss)
    _session(a, " nan")
    assert not a.end_session(train="wait").training.committed
    check("failed", "diverg")

    def exploding(args):
        fn = real(args)

        def loss(model, *x):
            t, m = fn(model, *x)
            b = sum((v * v).sum() for k, v in lora_mod.lora_parameters(model).items() if k.endswith("lora_b"))
            return t + 1e12 * b, m
        return loss

    monkeypatch.setattr(trainer_mod, "make_loss", exploding)
    a.config.train_budget_s, a.config.max_steps = 60.0, 3  # the 2nd step must run to see the explosion
    _session(a, " boom")
    report = a.end_session(train="wait").training
    assert not report.committed
    check("failed|rejected", "")
    monkeypatch.setattr(trainer_mod, "make_loss", real)
    a.config.train_budget_s, a.config.max_steps = CFG["train_budget_s"], CFG["max_steps"]
    _session(a, " stop")
    a.end_session(train="none")
    assert not a.train(wait=True, should_stop=lambda: True).committed
    check("cancelled", "cancel")
    a.config.train_budget_s = 0.0  # the trainer always runs its first step, then stops on the budget
    rep = a.train(wait=True)
    assert rep.steps <= 1
    assert [r.status for r in a.store.training_runs(a.user.id)].count("running") == 0
    a.close()


def test_disk_full_during_commit_fails_cleanly(tiny_model_dir, monkeypatch):
    a = _trained(tiny_model_dir)
    v1 = a.adapter_version
    before = sorted(p.name for p in a.repo.root.iterdir())
    real_save = mx.save_safetensors

    def full(path, *x, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(mx, "save_safetensors", full)
    _session(a, " more")
    with pytest.raises(ASLSError, match="space"):
        a.end_session(train="wait")
    monkeypatch.setattr(mx, "save_safetensors", real_save)
    assert sorted(p.name for p in a.repo.root.iterdir()) == before  # no partial version dir
    assert a.store.active_adapter(a.user.id).version == v1
    a.close()
    with Assistant(user="u", model=str(tiny_model_dir), config=AssistantConfig(**CFG)) as b:
        b.chat("after the disk filled up")
        assert b.adapter_version == v1 and not b.notices
        runs = b.store.training_runs(b.user.id)
    assert runs[-1].status == "failed" and "commit failed" in runs[-1].reason


def test_huge_message_is_truncated_for_the_context_window(tiny_model_dir):
    with Assistant(user="u", model=str(tiny_model_dir), config=AssistantConfig(**CFG)) as a:
        text = ("word " * 40_000)[:200_000]
        reply = a.chat(text)
        assert reply.truncated
        assert a.store.message(a.store.message(reply.message_id).parent_id).content == text
        assert not a.chat("and a short one").truncated or True


def test_isolation_modes_no_sockets_and_forget_leaves_no_trace(tiny_model_dir, isolated_home, monkeypatch):
    def no_socket(*a, **k):
        raise AssertionError("a socket was opened at runtime")

    monkeypatch.setattr(socket, "socket", no_socket)
    monkeypatch.setattr(socket, "create_connection", no_socket)
    monkeypatch.setattr(socket, "socketpair", no_socket)
    marker = "ZQXJ" + uuid.uuid4().hex
    a = _trained(tiny_model_dir, user="alice")
    for q, e in EDITS:
        a.chat(f"{q} {marker}")
        a.edit(f"{e} {marker}")
    s = a.end_session(train="wait")
    b = Assistant(user="bob", model=str(tiny_model_dir), config=AssistantConfig(**CFG), engine=None)
    _session(b, " bob")
    b.end_session(train="wait")
    monkeypatch.undo()
    # B's runs only ever saw B's pairs; adapters live in separate directories
    for run in b.store.training_runs(b.user.id):
        owners = {r[0] for r in b.store.execute(
            f"SELECT user_id FROM pairs WHERE id IN ({','.join('?' * len(run.pair_ids))})", run.pair_ids)}
        assert owners <= {b.user.id}
    assert a.repo.root != b.repo.root and not str(b.repo.root).startswith(str(a.repo.root))
    b.close()
    # owner-only files and directories
    for root, dirs, files in os.walk(isolated_home):
        for d in dirs:
            assert os.stat(os.path.join(root, d)).st_mode & 0o777 == 0o700, os.path.join(root, d)
        for f in files:
            mode = os.stat(os.path.join(root, f)).st_mode & 0o777
            assert mode == 0o600, (os.path.join(root, f), oct(mode))
    # forget everything: no trace of the marker anywhere under ASLS_HOME
    trained_dirs = [Path(v.path) for v in a.adapters()]
    a.forget(everything=True)
    a.close()
    for d in trained_dirs:
        assert not d.exists()
    for root, _, files in os.walk(isolated_home):
        for f in files:
            data = Path(root, f).read_bytes()
            assert marker.encode() not in data and marker.encode("utf-16-le") not in data, f
    # and nothing trained on the forgotten data is active afterwards
    with Assistant(user="alice", model=str(tiny_model_dir), config=AssistantConfig(**CFG)) as c:
        c.chat("fresh start")
        active = c.store.active_adapter(c.user.id)
        assert active is None or Path(active.path) not in trained_dirs
