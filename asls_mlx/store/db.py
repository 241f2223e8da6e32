"""The SQLite history database: opening, connections, transactions; its tables' methods live in mixins.

Chat history (users, sessions, messages, feedback, profile snapshots) is ``history.HistoryMixin``; what
learning produces (pairs, adapter versions, training runs) is ``learning.LearningMixin``.

One connection per thread (the chat thread, a background trainer, ...), all in WAL mode with a busy
timeout, so readers never block the writer and a second process can read while we write. Every
statement takes parameters; no user text is ever formatted into SQL.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from asls_mlx.errors import ASLSError
from asls_mlx.paths import home, private_dir
from asls_mlx.store import bundle, schema
from asls_mlx.store import forget as forget_mod
from asls_mlx.store.forget import ForgetSummary
from asls_mlx.store.history import HistoryMixin
from asls_mlx.store.learning import LearningMixin

BUSY_TIMEOUT_S = 10.0  # long enough to wait out a training commit, short enough to surface a real hang
OPEN_BUSY_S = 60.0  # opening waits this long for another process that holds the database, then says so


class StoreBusy(ASLSError):
    """Another process holds the database: it is not broken, and trying again later works."""


def _busy(e: BaseException) -> bool:
    return isinstance(e, StoreBusy) or (isinstance(e, sqlite3.OperationalError)
                                        and ("locked" in str(e) or "busy" in str(e)))


def _open_error(path: Path, e: BaseException, waited_s: float | None = None) -> ASLSError:
    """The error to raise for a database that could not be opened: busy (held by another process) or unusable."""
    if not _busy(e):
        return ASLSError(f"{path} is not a usable asls database ({e}); move it aside")
    cause = e.__cause__ if isinstance(e, StoreBusy) and e.__cause__ is not None else e  # sqlite's own words, once
    held = f"has held it for over {waited_s:.0f} s" if waited_s else "holds it"
    return StoreBusy(f"{path} is busy: another asls process {held} ({cause}); try again when it is done")


def open_store(path: Path | None = None) -> Store:
    """Open (creating and migrating if needed) the history database; default ``home()/asls.db``."""
    return Store(Path(path) if path is not None else home() / "asls.db")


class Store(HistoryMixin, LearningMixin):
    """The history database. Safe to share between threads; other processes may open it too."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        private_dir(self.path.parent)
        if not self.path.exists():
            # Create it owner-only ourselves: sqlite3 would use the umask (often world-readable).
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        self._local = threading.local()
        self._lock = threading.Lock()
        self._conns: list[sqlite3.Connection] = []
        self._closed = False
        # Another process may hold the database longer than one busy timeout (it recovers the log of a killed
        # process, or commits while the machine is loaded): that is no reason to call a good database unusable.
        deadline = time.monotonic() + OPEN_BUSY_S
        while True:
            try:
                schema.migrate(self._conn(), str(self.path))
                break
            except (sqlite3.DatabaseError, StoreBusy) as e:
                if _busy(e) and time.monotonic() < deadline:
                    self._drop_thread_conn()
                    time.sleep(0.25)
                    continue
                self.close()
                raise _open_error(self.path, e, OPEN_BUSY_S) from e
            except BaseException:
                self.close()
                raise
        self._fix_modes()

    # -- connections and transactions ------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise ASLSError(f"the store {self.path} is closed")
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(
                    self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
                )
                conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA foreign_keys = ON")
                # NORMAL is crash-safe in WAL mode (a power cut may lose the last commit, never corrupt).
                conn.execute("PRAGMA synchronous = NORMAL")
                # Deleted rows are overwritten with zeros, not just unlinked: forget leaves no trace.
                conn.execute("PRAGMA secure_delete = ON")
            except sqlite3.DatabaseError as e:
                if conn is not None:
                    conn.close()
                raise _open_error(self.path, e) from e
            conn.row_factory = sqlite3.Row
            self._local.conn = conn
            self._local.depth = 0
            with self._lock:
                self._conns.append(conn)
        return conn

    def _drop_thread_conn(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            self._local.conn = None
            with self._lock:
                self._conns.remove(conn)
            conn.close()

    def _fix_modes(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            p = Path(str(self.path) + suffix)
            if p.exists():
                os.chmod(p, 0o600)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All changes inside happen together or not at all. Nested uses join the outer one."""
        conn = self._conn()
        if self._local.depth:
            self._local.depth += 1
            try:
                yield conn
            finally:
                self._local.depth -= 1
            return
        # IMMEDIATE takes the write lock up front, so we wait (busy timeout) instead of failing later.
        conn.execute("BEGIN IMMEDIATE")
        self._local.depth = 1
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        else:
            conn.execute("COMMIT")
        finally:
            self._local.depth = 0

    def execute(self, sql: str, params: tuple | list = ()) -> sqlite3.Cursor:
        """Run one parameterised statement on this thread's connection (autocommits outside a transaction)."""
        return self._conn().execute(sql, params)

    def vacuum(self) -> None:
        """Rewrite the file without free pages and empty the WAL, so deleted text is gone from disk."""
        conn = self._conn()
        if self._local.depth:
            raise ASLSError("vacuum() cannot run inside a transaction")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        """Checkpoint the WAL into the main file and close every connection."""
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                pass  # another process may hold a read lock; the WAL stays valid
            conn.close()
        self._closed = True

    # -- bundles and forgetting (see bundle.py and forget.py) -------------------------------------

    def export_user(self, name: str, path: Path | None = None) -> str:
        """The user's JSONL bundle text; also written (0600) to ``path`` if given."""
        return bundle.export_user(self, name, path)

    def import_user(self, source: Path | str, rename: str | None = None) -> str:
        """Import a bundle (path or text) all-or-nothing; returns the user name used."""
        return bundle.import_user(self, source, rename=rename)

    def forget(self, user: str, session_id: int | None = None, since: Any = None, until: Any = None,
               everything: bool = False) -> ForgetSummary:
        """Delete a session / time range / everything and all derived rows; taint affected adapters."""
        return forget_mod.forget(self, user, session_id=session_id, since=since, until=until,
                                 everything=everything)

    def forget_pairs(self, user: str, pair_ids: list[int]) -> ForgetSummary:
        """Delete preference pairs of ``user``; taint the adapters trained on them."""
        return forget_mod.forget_pairs(self, user, pair_ids)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
