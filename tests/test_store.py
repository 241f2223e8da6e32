"""The SQLite history: schema, migrations, modes, validation, messages, pairs, adapters, concurrency."""

import os
import sqlite3
import stat
import subprocess
import sys
import threading

import pytest

from asls_mlx.errors import ASLSError
from asls_mlx.profiling import PreferencePair
from asls_mlx.store import SCHEMA_VERSION, open_store
from asls_mlx.store.schema import MIGRATIONS


@pytest.fixture
def store():
    s = open_store()
    yield s
    s.close()


def _schema(path):
    conn = sqlite3.connect(path)
    rows = conn.execute(
        "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name"
    ).fetchall()
    conn.close()
    return rows


EXPECTED_TABLES = {
    "_migrations", "users", "sessions", "messages", "feedback", "profiles", "pairs", "pair_messages",
    "adapter_versions", "training_runs", "training_run_pairs", "training_run_sessions", "reference_logps",
}


def test_blank_database_migrates_to_exact_schema(tmp_path, isolated_home):
    s = open_store()
    s.close()
    db = isolated_home / "asls.db"
    rows = _schema(db)
    assert {n for t, n, _ in rows if t == "table"} == EXPECTED_TABLES
    # The exact schema equals what running the migrations by hand on a blank database produces.
    ref = tmp_path / "ref.db"
    conn = sqlite3.connect(ref)
    conn.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
    for fn in MIGRATIONS:
        fn(conn)
    conn.close()
    assert rows == _schema(ref)
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == len(MIGRATIONS)
    assert [r[0] for r in conn.execute("SELECT name FROM _migrations")] == ["m001_initial", "m002_reference_logps",
                                                                             "m003_interrupted_runs"]
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    # Opening again applies nothing new and keeps the schema.
    open_store().close()
    assert _schema(db) == rows


def test_a_version_1_database_upgrades_in_place_keeping_its_data(isolated_home):
    """A database written before reference log-probs were stored gains the table and keeps its pairs."""
    isolated_home.mkdir(mode=0o700, parents=True, exist_ok=True)
    db = isolated_home / "asls.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
    MIGRATIONS[0](conn)
    conn.execute("INSERT INTO _migrations VALUES ('m001_initial', 0)")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    s = open_store()
    uid = s.get_or_create_user("old").id
    s.add_pairs(uid, [PreferencePair("q", "short", "long answer", "edit", 1.0)])
    pid = s.pairs(uid)[0].id
    s.add_reference_logps("m", [(pid, "key", -1.5, -9.0)])
    assert s.reference_logps(uid, "m") == {"key": (-1.5, -9.0)}
    s.close()
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    conn.close()


def test_pragmas_on_store_connection(store):
    assert store.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert store.execute("PRAGMA busy_timeout").fetchone()[0] == 10000
    assert store.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_newer_schema_refused_never_downgraded(isolated_home):
    open_store().close()
    db = isolated_home / "asls.db"
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 3}")
    conn.close()
    with pytest.raises(ASLSError, match=rf"newer asls \(schema v{SCHEMA_VERSION + 3} > v{SCHEMA_VERSION}\)"):
        open_store()
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 3
    conn.close()


def test_garbage_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ASLSError, match="not a usable asls database"):
        open_store(bad)


def test_file_modes_owner_only(isolated_home):
    old = os.umask(0o022)
    try:
        s = open_store()
        s.get_or_create_user("ann")
    finally:
        os.umask(old)
    db = isolated_home / "asls.db"
    assert stat.S_IMODE(os.stat(isolated_home).st_mode) == 0o700
    for suffix in ("", "-wal", "-shm"):
        p = str(db) + suffix
        if os.path.exists(p):
            assert stat.S_IMODE(os.stat(p).st_mode) == 0o600, p
    s.close()


@pytest.mark.parametrize("name", ["", "   ", "a" * 65, "a/b", "a\\b", "..", "tab\there", "\x00x", " lead", 3])
def test_bad_user_names_refused(store, name):
    with pytest.raises(ASLSError):
        store.get_or_create_user(name)
    assert store.list_users() == []


def test_injection_like_names_and_messages_stored_verbatim(store):
    evil = "Robert'); DROP TABLE users;--"
    u = store.get_or_create_user(evil)
    assert store.get_user(evil).id == u.id
    sid = store.start_session(u.id)
    text = "x'); DELETE FROM messages; -- \" ` \\ %s {0} \u202e\U0001F600"
    mid = store.add_message(sid, "user", text)
    assert store.message(mid).content == text
    assert [x.name for x in store.list_users()] == [evil]
    assert store.get_or_create_user(evil).id == u.id  # idempotent


def test_unknown_user_names_the_user_and_lists(store):
    store.get_or_create_user("ann")
    with pytest.raises(ASLSError, match=r"'zed'.*ann.*asls users"):
        store.get_user("zed")


def test_feedback_on_missing_message_changes_nothing(store):
    u = store.get_or_create_user("ann")
    sid = store.start_session(u.id)
    store.add_message(sid, "user", "hi")
    before = store.execute("SELECT COUNT(*) FROM feedback").fetchone()[0]
    with pytest.raises(ASLSError, match="no message with id 999"):
        store.add_feedback(999, "thumbs_up")
    with pytest.raises(ASLSError, match="unknown feedback kind"):
        store.add_feedback(1, "love")
    assert store.execute("SELECT COUNT(*) FROM feedback").fetchone()[0] == before == 0


def test_messages_regenerate_edit_and_conversation(store):
    u = store.get_or_create_user("ann")
    sid = store.start_session(u.id, started_at=100.0)
    q = store.add_message(sid, "user", "What is Paris?", created_at=101)
    a1 = store.add_message(sid, "assistant", "A city.", parent_id=q, created_at=102)
    a2 = store.add_alternative(a1, "The capital of France.", created_at=103)
    a3 = store.add_alternative(a1, "Paris is France's capital.", created_at=104)  # follows the chain
    assert store.message(a1).superseded_by == a2 and store.message(a2).superseded_by == a3
    assert [m.id for m in store.conversation(sid)] == [q, a3]
    assert [m.id for m in store.messages(sid)] == [q, a1, a2, a3]
    store.set_edit(a3, "Paris: capital of France.")
    assert store.message(a3).text == "Paris: capital of France."
    assert store.message(a3).content == "Paris is France's capital."
    kinds = [f.kind for f in store.feedback(session_id=sid)]
    assert kinds == ["regenerate", "regenerate", "edit"]
    with pytest.raises(ASLSError):
        store.add_alternative(q, "users don't regenerate")
    with pytest.raises(ASLSError):
        store.add_message(sid, "robot", "x")
    store.end_session(sid, ended_at=200)
    assert store.session(sid).ended_at == 200
    assert [m.id for m in store.history(u.id, limit=1)] == [a3]
    assert [s.id for s in store.sessions(u.id)] == [sid]


def test_transaction_rolls_back_everything(store):
    u = store.get_or_create_user("ann")
    sid = store.start_session(u.id)
    with pytest.raises(RuntimeError):
        with store.transaction():
            store.add_message(sid, "user", "one")
            store.add_message(sid, "user", "two")
            raise RuntimeError("boom")
    assert store.messages(sid) == []


def test_pairs_dedupe_split_and_usage(store):
    u = store.get_or_create_user("ann")
    sid = store.start_session(u.id)
    q = store.add_message(sid, "user", "q")
    a = store.add_message(sid, "assistant", "long answer", parent_id=q)
    p1 = PreferencePair("q", "short", "long answer", "edit", 1.0, message_ids=(q, a), session_id=sid)
    p2 = PreferencePair("Q ", "SHORT", "long   answer", "edit", 1.0)  # same after normalisation
    p3 = PreferencePair("q", "bad", None, "thumbs", 0.5, split="val", label=-1)
    assert store.add_pairs(u.id, [p1, p2, p3]) == 2
    assert store.add_pairs(u.id, [p1]) == 0
    train = store.pairs(u.id)
    assert [(p.chosen, p.rejected, p.message_ids, p.session_id) for p in train] == [
        ("short", "long answer", (q, a), sid)]
    assert [p.label for p in store.pairs(u.id, split="val")] == [-1]
    assert len(store.pairs(u.id, split=None)) == 2
    assert store.used_pair_ids(u.id) == set()
    store.mark_pairs_used([train[0].id], 1)
    assert store.pairs(u.id, unused_only=True) == []
    assert store.used_pair_ids(u.id) == {train[0].id}
    with pytest.raises(ASLSError):
        store.add_pairs(u.id, [PreferencePair("q", "a", "b", "magic", 1.0)])


def test_adapter_versions_and_training_runs(store):
    u = store.get_or_create_user("ann")
    assert store.active_adapter(u.id) is None
    v1 = store.add_adapter_version(u.id, "/a/v1", "smollm", "h", {"acc": 0.5}, status="active")
    v2 = store.add_adapter_version(u.id, "/a/v2", "smollm", "h", parent_version=v1)
    assert (v1, v2) == (1, 2)
    assert store.active_adapter(u.id).version == 1
    store.set_active_adapter(u.id, 2)
    assert store.active_adapter(u.id).version == 2
    assert [a.status for a in store.adapter_versions(u.id)] == ["archived", "active"]
    v3 = store.add_adapter_version(u.id, "/a/v3", "smollm", parent_version=v2)
    assert store.mark_tainted(u.id, [2]) == [2, 3]
    assert store.active_adapter(u.id) is None
    assert store.last_clean_adapter(u.id).version == 1
    with pytest.raises(ASLSError, match="tainted"):
        store.set_active_adapter(u.id, v3)
    run = store.add_training_run(u.id, pair_ids=[], session_ids=[], parent_version=1)
    store.finish_training_run(run, "failed", reason="NaN loss", metrics={"loss": None})
    (r,) = store.training_runs(u.id)
    assert (r.status, r.reason, r.metrics) == ("failed", "NaN loss", {"loss": None})
    with pytest.raises(ASLSError):
        store.finish_training_run(999, "ok")


def test_threads_share_the_store(store):
    u = store.get_or_create_user("ann")
    sid = store.start_session(u.id)
    errors = []

    def writer(k):
        try:
            for i in range(20):
                store.add_message(sid, "user", f"{k}-{i}")
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(store.messages(sid)) == 80


def test_another_process_reads_while_we_write(store, isolated_home):
    u = store.get_or_create_user("ann")
    sid = store.start_session(u.id)
    code = (
        "import sys; from asls_mlx.store import open_store\n"
        "s = open_store()\n"
        "for i in range(30):\n"
        "    s.add_message(int(sys.argv[1]), 'user', f'p{i}')\n"
        "    s.history(s.get_user('ann').id)\n"
        "s.close()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(sid)], env=os.environ.copy())
    for i in range(30):
        with store.transaction():
            store.add_message(sid, "user", f"m{i}")
    assert proc.wait(timeout=60) == 0
    assert len(store.messages(sid)) == 60


def test_a_database_another_process_holds_is_waited_for_and_never_called_unusable(tmp_path, monkeypatch):
    """A store opened while another connection holds the database (a crash's log being recovered, a commit on a
    loaded machine) waits; past its patience it says the database is busy, never that it should be moved aside."""
    from asls_mlx.store import db

    open_store(tmp_path / "asls.db").close()
    monkeypatch.setattr(db, "BUSY_TIMEOUT_S", 0.05)

    def hold() -> sqlite3.Connection:  # an exclusive lock that keeps even readers out until the connection closes
        holder = sqlite3.connect(tmp_path / "asls.db", isolation_level=None, check_same_thread=False)
        holder.execute("PRAGMA locking_mode = EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")
        holder.execute("COMMIT")
        return holder

    threading.Timer(0.6, hold().close).start()
    store = open_store(tmp_path / "asls.db")  # waits out the holder's 0.6 s
    assert store.get_or_create_user("ada") is not None
    store.close()
    holder = hold()
    monkeypatch.setattr(db, "OPEN_BUSY_S", 0.3)
    with pytest.raises(db.StoreBusy, match="is busy") as err:
        open_store(tmp_path / "asls.db")
    assert "move it aside" not in str(err.value) and str(err.value).count("is busy") == 1
    holder.close()
