"""Crash safety: SIGKILL a chatting/learning process at random and at targeted points, then check nothing
committed is lost, the database is intact, the active adapter is complete, and the next start just works.

Workers are forked from one server process (tests/reliability/crash_child.py) that imported MLX once, so
22 trials fit in about a minute on 2 cores. Two workers run at once, on two users of the same database.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from asls_mlx import Assistant, AssistantConfig
from asls_mlx.adaptation.lora import read_adapter
from asls_mlx.store import open_store

HERE = Path(__file__).parent
SEED = 20261101
RANDOM_TRIALS = 14
TARGETED = ["mine", "train", "weights_written", "before_version_rename", "after_version_rename",
            "before_store_row", "after_store_row", "edit"]
TEMP_MARKERS = (".tmp-", ".build-", ".old-")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def _check_after_kill(home: Path, user: str, log: Path, tiny_model, tiny_model_dir) -> dict:
    lines = log.read_text().splitlines() if log.exists() else []
    errors = [l for l in lines if l.startswith("error")]
    assert not errors, errors
    db = home / "asls.db"
    conn = sqlite3.connect(db, timeout=30)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        for l in lines:
            parts = l.split()
            if parts[0] == "msg":
                for mid in map(int, parts[1:]):
                    assert conn.execute("SELECT 1 FROM messages WHERE id = ?", (mid,)).fetchone(), f"lost message {mid}"
            elif parts[0] == "edit":
                row = conn.execute("SELECT edited_content FROM messages WHERE id = ?", (int(parts[1]),)).fetchone()
                assert row and row[0], f"lost edit of {parts[1]}"
                assert conn.execute("SELECT 1 FROM feedback WHERE message_id = ? AND kind = 'edit'", (int(parts[1]),)).fetchone()
        # An edit is all or nothing: an edited answer always has its edit event, and vice versa.
        half = conn.execute(
            "SELECT COUNT(*) FROM messages m WHERE (m.edited_content IS NOT NULL) != "
            "EXISTS (SELECT 1 FROM feedback f WHERE f.message_id = m.id AND f.kind = 'edit')").fetchone()[0]
        assert half == 0
    finally:
        conn.close()
    store = open_store()
    try:
        uid = store.get_user(user).id
        active = store.active_adapter(uid)
        reported = [int(l.split()[1]) for l in lines if l.startswith("adapter ")]
        statuses = {v.version: v.status for v in store.adapter_versions(uid)}
        for v in reported:
            assert statuses.get(v) in ("active", "archived"), f"committed adapter v{v} lost: {statuses}"
        if active is not None:
            read_adapter(Path(active.path), tiny_model[0])  # complete and fits the model
    finally:
        store.close()
    # The next start recovers with no manual step: the kernel dropped the dead worker's locks.
    with Assistant(user=user, model=str(tiny_model_dir), config=AssistantConfig(max_tokens=4, self_labelled=False)) as a:
        reply = a.answer("still there?")
        assert isinstance(reply, str)
        assert all("cannot be used" not in n for n in a.notices), a.notices
        assert a.adapter_version == (active.version if active else None)
        leftovers = [p.name for p in (a.dir / "adapters").iterdir() if any(m in p.name for m in TEMP_MARKERS)]
        assert leftovers == [], leftovers
    phases = [l.split()[1] for l in lines if l.startswith("phase ")]
    return {"phase": phases[-1] if phases else "start", "lines": len(lines)}


def test_sigkill_at_random_and_targeted_points(tmp_path, isolated_home, tiny_model, tiny_model_dir):
    rng = random.Random(SEED)
    jobs = [{"kill_at": None, "delay": rng.uniform(0.0, 7.0)} for _ in range(RANDOM_TRIALS)]
    jobs += [{"kill_at": k, "delay": 25.0} for k in TARGETED]  # they kill themselves; 25 s is the fallback
    rng.shuffle(jobs)
    server = subprocess.Popen([sys.executable, str(HERE / "crash_child.py")], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=dict(os.environ))
    slots: dict[int, dict | None] = {0: None, 1: None}
    results = []
    started = time.monotonic()
    try:
        pending = list(enumerate(jobs))
        while pending or any(slots.values()):
            for s in slots:
                cur = slots[s]
                if cur is not None:
                    dead = not _alive(cur["pid"])
                    if not dead and time.monotonic() >= cur["deadline"]:
                        os.kill(cur["pid"], signal.SIGKILL)
                        while _alive(cur["pid"]):
                            time.sleep(0.01)
                        dead = True
                    if dead:
                        info = _check_after_kill(isolated_home, cur["user"], cur["log"], tiny_model, tiny_model_dir)
                        info.update(kill_at=cur["kill_at"], self_killed=time.monotonic() < cur["deadline"])
                        results.append(info)
                        slots[s] = cur = None
                if cur is None and pending:
                    n, job = pending.pop(0)
                    log = tmp_path / f"trial{n}.log"
                    user = f"crash{s}"
                    spec = {"home": str(isolated_home), "model": str(tiny_model_dir), "user": user,
                            "log": str(log), "seed": n * 7, "kill_at": job["kill_at"]}
                    server.stdin.write("run " + json.dumps(spec) + "\n")
                    server.stdin.flush()
                    pid = int(server.stdout.readline().split()[1])
                    slots[s] = {"pid": pid, "deadline": time.monotonic() + job["delay"], "user": user,
                                "log": log, "kill_at": job["kill_at"]}
            time.sleep(0.02)
    finally:
        for cur in slots.values():
            if cur is not None and _alive(cur["pid"]):
                os.kill(cur["pid"], signal.SIGKILL)
        server.stdin.write("quit\n")
        server.stdin.close()
        server.wait(30)
    elapsed = time.monotonic() - started
    assert len(results) == len(jobs) >= 20
    # Targeted points must really have been reached (the worker killed itself there).
    missed = [r["kill_at"] for r in results if r["kill_at"] and not r["self_killed"]]
    assert not missed, f"targeted kill points never reached: {missed}"
    phases = {r["phase"] for r in results}
    assert {"chat", "train", "commit"} <= phases | {"start"}, phases
    print(f"\n{len(results)} kills in {elapsed:.1f}s; phases at kill: "
          + ", ".join(f"{p}={sum(r['phase'] == p for r in results)}" for p in sorted(phases)))
    # After all that, both users still have every committed message and a working adapter state.
    store = open_store()
    try:
        for user in ("crash0", "crash1"):
            uid = store.get_user(user).id
            assert store.history(uid, 10_000)
    finally:
        store.close()
