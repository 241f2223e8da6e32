"""The database schema as a list of small named migrations, applied in order on every open.

Each migration is a function of a connection. The ``_migrations`` table records which ones ran, and
``PRAGMA user_version`` holds the schema version (the number of migrations applied), so an older asls
can recognise a database written by a newer one and refuse it instead of corrupting it.
To change the schema, append a new ``m00N_...`` function to ``MIGRATIONS``; never edit a released one.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

from asls_mlx.errors import ASLSError

FEEDBACK_KINDS = (
    "thumbs_up", "thumbs_down", "regenerate", "edit", "correction", "acceptance", "statement",
)
PAIR_SOURCES = ("edit", "regenerate", "thumbs", "correction", "self", "explicit")
ADAPTER_STATUSES = ("active", "archived", "rejected", "tainted")
RUN_STATUSES = ("running", "ok", "failed", "rejected", "cancelled", "interrupted")
_RUN_STATUSES_V1 = RUN_STATUSES[:5]  # m001's CHECK; m003 adds 'interrupted'


def _in(values: tuple[str, ...]) -> str:
    # Only ever called with the constant tuples above, never with user data.
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


def m001_initial(conn: sqlite3.Connection) -> None:
    """Users, sessions, messages, feedback, profiles, pairs, adapter versions, training runs.

    One SQL script (hence its length): the whole first schema reads in one place, and a released
    migration never changes."""
    conn.executescript(
        f"""
        CREATE TABLE users (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            created_at REAL NOT NULL
        );
        CREATE TABLE sessions (
            id INTEGER PRIMARY KEY,
            user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            started_at REAL NOT NULL,
            ended_at REAL,
            processed INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX sessions_user ON sessions(user_id, started_at);
        CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            session_id INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
            role TEXT NOT NULL CHECK (role IN ('user', 'assistant', 'system')),
            content TEXT NOT NULL,
            parent_id INTEGER REFERENCES messages(id) ON DELETE CASCADE,
            superseded_by INTEGER REFERENCES messages(id) ON DELETE SET NULL,
            edited_content TEXT,
            created_at REAL NOT NULL
        );
        CREATE INDEX messages_session ON messages(session_id, id);
        CREATE INDEX messages_parent ON messages(parent_id);
        CREATE INDEX messages_superseded ON messages(superseded_by);
        CREATE TABLE feedback (
            id INTEGER PRIMARY KEY,
            message_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
            kind TEXT NOT NULL CHECK (kind IN {_in(FEEDBACK_KINDS)}),
            payload TEXT NOT NULL DEFAULT '{{}}',
            confidence REAL NOT NULL DEFAULT 1.0,
            created_at REAL NOT NULL
        );
        CREATE INDEX feedback_message ON feedback(message_id);
        CREATE TABLE profiles (
            id INTEGER PRIMARY KEY,
            user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            version INTEGER NOT NULL,
            session_id INTEGER REFERENCES sessions(id) ON DELETE SET NULL,
            data TEXT NOT NULL,
            created_at REAL NOT NULL,
            UNIQUE (user_id, version)
        );
        CREATE TABLE pairs (
            id INTEGER PRIMARY KEY,
            user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            session_id INTEGER REFERENCES sessions(id) ON DELETE CASCADE,
            prompt TEXT NOT NULL,
            chosen TEXT NOT NULL,
            rejected TEXT,
            label INTEGER NOT NULL DEFAULT 0 CHECK (label IN (-1, 0, 1)),
            source TEXT NOT NULL CHECK (source IN {_in(PAIR_SOURCES)}),
            weight REAL NOT NULL,
            split TEXT NOT NULL DEFAULT 'train' CHECK (split IN ('train', 'val')),
            seed INTEGER,
            hash TEXT NOT NULL,
            created_at REAL NOT NULL,
            used_in_version INTEGER,
            UNIQUE (user_id, hash)
        );
        CREATE INDEX pairs_user ON pairs(user_id, split, id);
        CREATE TABLE pair_messages (
            pair_id INTEGER NOT NULL REFERENCES pairs(id) ON DELETE CASCADE,
            message_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
            PRIMARY KEY (pair_id, message_id)
        );
        CREATE INDEX pair_messages_message ON pair_messages(message_id);
        CREATE TABLE adapter_versions (
            id INTEGER PRIMARY KEY,
            user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            version INTEGER NOT NULL,
            path TEXT NOT NULL,
            base_model TEXT NOT NULL,
            base_hash TEXT,
            status TEXT NOT NULL CHECK (status IN {_in(ADAPTER_STATUSES)}),
            metrics TEXT NOT NULL DEFAULT '{{}}',
            parent_version INTEGER,
            created_at REAL NOT NULL,
            UNIQUE (user_id, version)
        );
        CREATE UNIQUE INDEX adapter_one_active ON adapter_versions(user_id) WHERE status = 'active';
        CREATE TABLE training_runs (
            id INTEGER PRIMARY KEY,
            user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            started_at REAL NOT NULL,
            ended_at REAL,
            status TEXT NOT NULL CHECK (status IN {_in(_RUN_STATUSES_V1)}),
            reason TEXT,
            metrics TEXT NOT NULL DEFAULT '{{}}',
            parent_version INTEGER,
            adapter_version INTEGER
        );
        CREATE INDEX training_runs_user ON training_runs(user_id, id);
        CREATE TABLE training_run_pairs (
            run_id INTEGER NOT NULL REFERENCES training_runs(id) ON DELETE CASCADE,
            pair_id INTEGER NOT NULL REFERENCES pairs(id) ON DELETE CASCADE,
            PRIMARY KEY (run_id, pair_id)
        );
        CREATE INDEX training_run_pairs_pair ON training_run_pairs(pair_id);
        CREATE TABLE training_run_sessions (
            run_id INTEGER NOT NULL REFERENCES training_runs(id) ON DELETE CASCADE,
            session_id INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
            PRIMARY KEY (run_id, session_id)
        );
        CREATE INDEX training_run_sessions_session ON training_run_sessions(session_id);
        """
    )


def m002_reference_logps(conn: sqlite3.Connection) -> None:
    """The base model's log-probs of each pair's answers (DPO's reference), computed once per pair.

    Keyed by the model and by a hash of the pair's token ids as trained (tokenizer and truncation),
    and deleted with the pair (forget reaches it).
    """
    conn.executescript(
        """
        CREATE TABLE reference_logps (
            pair_id INTEGER NOT NULL REFERENCES pairs(id) ON DELETE CASCADE,
            model_id TEXT NOT NULL,
            tokens_key TEXT NOT NULL,
            chosen REAL NOT NULL,
            rejected REAL,
            PRIMARY KEY (pair_id, model_id, tokens_key)
        );
        """
    )


def m003_interrupted_runs(conn: sqlite3.Connection) -> None:
    """Training runs may be 'interrupted' (a process killed mid-run, found at the next start).

    SQLite cannot change a CHECK constraint in place, so the three run tables are rebuilt under new
    names and renamed back. The child tables are rebuilt too: dropping the parent while they exist
    would cascade-delete their rows (foreign keys stay on inside the migration's transaction)."""
    conn.executescript(
        f"""
        CREATE TABLE training_runs_new (
            id INTEGER PRIMARY KEY,
            user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            started_at REAL NOT NULL,
            ended_at REAL,
            status TEXT NOT NULL CHECK (status IN {_in(RUN_STATUSES)}),
            reason TEXT,
            metrics TEXT NOT NULL DEFAULT '{{}}',
            parent_version INTEGER,
            adapter_version INTEGER
        );
        INSERT INTO training_runs_new SELECT id, user_id, started_at, ended_at, status, reason, metrics,
            parent_version, adapter_version FROM training_runs;
        CREATE TABLE training_run_pairs_new (
            run_id INTEGER NOT NULL REFERENCES training_runs_new(id) ON DELETE CASCADE,
            pair_id INTEGER NOT NULL REFERENCES pairs(id) ON DELETE CASCADE,
            PRIMARY KEY (run_id, pair_id)
        );
        INSERT INTO training_run_pairs_new SELECT run_id, pair_id FROM training_run_pairs;
        CREATE TABLE training_run_sessions_new (
            run_id INTEGER NOT NULL REFERENCES training_runs_new(id) ON DELETE CASCADE,
            session_id INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
            PRIMARY KEY (run_id, session_id)
        );
        INSERT INTO training_run_sessions_new SELECT run_id, session_id FROM training_run_sessions;
        DROP TABLE training_run_pairs;
        DROP TABLE training_run_sessions;
        DROP TABLE training_runs;
        ALTER TABLE training_runs_new RENAME TO training_runs;
        ALTER TABLE training_run_pairs_new RENAME TO training_run_pairs;
        ALTER TABLE training_run_sessions_new RENAME TO training_run_sessions;
        CREATE INDEX training_runs_user ON training_runs(user_id, id);
        CREATE INDEX training_run_pairs_pair ON training_run_pairs(pair_id);
        CREATE INDEX training_run_sessions_session ON training_run_sessions(session_id);
        """
    )


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [m001_initial, m002_reference_logps, m003_interrupted_runs]
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection, where: str) -> None:
    """Bring the database at ``conn`` up to ``SCHEMA_VERSION``; refuse one from a newer asls.

    ``conn`` must be in autocommit mode (``isolation_level=None``): each migration runs in its own
    ``BEGIN IMMEDIATE`` transaction together with its ``_migrations`` row, so a crash mid-migration
    leaves the previous version intact and the next open simply retries.
    """
    found = conn.execute("PRAGMA user_version").fetchone()[0]
    if found > SCHEMA_VERSION:
        raise ASLSError(
            f"{where} was written by a newer asls (schema v{found} > v{SCHEMA_VERSION}); "
            "upgrade asls to open it (it is never downgraded)"
        )
    if found == SCHEMA_VERSION:
        return
    conn.execute(
        "CREATE TABLE IF NOT EXISTS _migrations ("
        "name TEXT PRIMARY KEY, applied_at REAL NOT NULL)"
    )
    for fn in MIGRATIONS:
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Re-check inside the write lock: another process may have migrated meanwhile.
            done = conn.execute("SELECT 1 FROM _migrations WHERE name = ?", (fn.__name__,)).fetchone()
            if not done:
                # executescript would COMMIT our transaction; run statements one by one instead.
                _run_in_transaction(conn, fn)
                conn.execute(
                    "INSERT INTO _migrations (name, applied_at) VALUES (?, ?)",
                    (fn.__name__, time.time()),
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION:d}")


class _ScriptSplitter:
    """A stand-in connection that runs ``executescript`` as single statements in the open transaction."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def executescript(self, script: str) -> None:
        buf = ""
        for line in script.splitlines(keepends=True):
            buf += line
            if sqlite3.complete_statement(buf):
                self._conn.execute(buf)
                buf = ""
        if buf.strip():
            self._conn.execute(buf)

    def execute(self, *args, **kwargs):  # noqa: ANN002, ANN003 - passthrough
        return self._conn.execute(*args, **kwargs)


def _run_in_transaction(conn: sqlite3.Connection, fn: Callable) -> None:
    fn(_ScriptSplitter(conn))
