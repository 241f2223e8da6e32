"""Training-run bookkeeping in the store: the 'interrupted' status (migration m003 keeps every run and its
provenance), and a run a killed process left 'running' marked so at the next start."""

from __future__ import annotations

import sqlite3

import pytest

from asls_mlx import ASLSError
from asls_mlx.store import open_store, schema


def test_m003_keeps_runs_and_their_provenance_and_allows_interrupted(isolated_home):
    isolated_home.mkdir(mode=0o700, parents=True, exist_ok=True)
    db = isolated_home / "asls.db"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
    for fn in schema.MIGRATIONS[:2]:  # a database of the previous release
        fn(conn)
        conn.execute("INSERT INTO _migrations VALUES (?, 0)", (fn.__name__,))
    conn.execute("PRAGMA user_version = 2")
    conn.execute("INSERT INTO users (id, name, created_at) VALUES (1, 'old', 0)")
    conn.execute("INSERT INTO sessions (id, user_id, started_at) VALUES (7, 1, 0)")
    conn.execute("INSERT INTO pairs (id, user_id, prompt, chosen, source, weight, hash, created_at) "
                 "VALUES (5, 1, 'q', 'a', 'edit', 1, 'h', 0)")
    conn.execute("INSERT INTO training_runs (id, user_id, started_at, status, reason, metrics) "
                 "VALUES (3, 1, 0, 'running', NULL, '{\"steps\": 2}')")
    conn.execute("INSERT INTO training_run_pairs VALUES (3, 5)")
    conn.execute("INSERT INTO training_run_sessions VALUES (3, 7)")
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("UPDATE training_runs SET status = 'interrupted'")  # the old CHECK refuses it
    conn.close()
    store = open_store()
    [run] = store.training_runs(1)
    assert (run.id, run.status, run.metrics, run.pair_ids, run.session_ids) == (3, "running", {"steps": 2}, (5,), (7,))
    assert store.close_interrupted_runs(1) == 1
    [run] = store.training_runs(1)
    assert run.status == "interrupted" and "killed" in run.reason and run.ended_at is not None
    assert store.execute("PRAGMA foreign_key_check").fetchall() == []
    store.forget("old", session_id=7)  # the cascade from sessions still reaches the rebuilt child table
    assert store.training_runs(1)[0].session_ids == ()
    with pytest.raises(ASLSError, match="unknown final run status 'running'"):
        store.finish_training_run(3, "running")
    store.close()


def test_a_killed_runs_status_at_the_next_start(isolated_home, tiny_model_dir):
    from asls_mlx import Assistant

    with open_store() as store:
        uid = store.get_or_create_user("k").id
        store.add_training_run(uid)
    a = Assistant(user="k", model=str(tiny_model_dir))  # the next start
    try:
        assert [r.status for r in a.store.training_runs(a.user.id)] == ["interrupted"]
    finally:
        a.close()
