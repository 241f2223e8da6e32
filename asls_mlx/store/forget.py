"""Forget: delete a session, a time range or everything of a user, and all that was derived from it.

Steps, in one transaction:
1. collect the messages to forget (plus answers to them: an answer is derived from its prompt);
2. collect the pairs mined from those messages or sessions;
3. find the adapter versions trained on those pairs/sessions and taint them and their descendants
   (the forget must reach the weights: the adaptation layer retrains from the last clean version);
4. drop the profile snapshots that counted a forgotten session (the profiling layer can rebuild them,
   see ``asls_mlx.profiling.rebuild_profile``);
5. delete the rows (feedback and links cascade).
Then checkpoint the WAL and VACUUM so no forgotten text remains anywhere in the database files.
"""

from __future__ import annotations

import datetime as _dt
import sqlite3
from pathlib import Path
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from asls_mlx.errors import ASLSError

if TYPE_CHECKING:
    from asls_mlx.store.db import Store


@dataclass(frozen=True)
class ForgetSummary:
    """What a forget removed, and which adapter versions it tainted (their files should be deleted)."""

    sessions: int = 0
    messages: int = 0
    feedback: int = 0
    pairs: int = 0
    profiles: int = 0
    tainted_versions: tuple[int, ...] = ()
    tainted_paths: tuple[str, ...] = field(default=())


def _when(value: float | _dt.datetime | None) -> float | None:
    if value is None or isinstance(value, (int, float)):
        return value
    if isinstance(value, _dt.datetime):
        return value.timestamp()
    raise ASLSError(f"forget: a time must be a datetime or unix seconds, got {value!r}")


def _ids(conn: sqlite3.Connection, sql: str, params: tuple | list) -> set[int]:
    return {r[0] for r in conn.execute(sql, params)}


def _marks(values: set[int] | list[int]) -> str:
    # Only "?" placeholders are formatted into the SQL; the values themselves are parameters.
    return ",".join("?" * len(values))


def forget(store: Store, user: str, session_id: int | None = None,
           since: float | _dt.datetime | None = None, until: float | _dt.datetime | None = None,
           everything: bool = False) -> ForgetSummary:
    """Forget one session, a time range ``[since, until)``, or ``everything`` of ``user`` (steps: module doc)."""
    chosen = sum([session_id is not None, since is not None or until is not None, bool(everything)])
    if chosen != 1:
        raise ASLSError("forget: give exactly one of a session, a time range (since/until) or everything")
    if session_id is not None and (isinstance(session_id, bool) or not isinstance(session_id, int)):
        raise ASLSError(f"forget: a session id must be a whole number, got {str(session_id)[:60]!r}")
    uid = store.get_user(user).id
    since_ts, until_ts = _when(since), _when(until)
    with store.transaction() as conn:
        # 1. what goes
        sessions = _chosen_sessions(conn, uid, user, session_id, since_ts, until_ts, everything)
        all_sessions = _ids(conn, "SELECT id FROM sessions WHERE user_id = ?", (uid,))
        messages = _chosen_messages(conn, uid, sessions, since_ts, until_ts)
        touched = sessions | (_ids(conn, f"SELECT DISTINCT session_id FROM messages WHERE id IN "
                                         f"({_marks(messages)})", list(messages)) if messages else set())
        # 2. pairs mined from them; 3. adapter versions trained on them
        pairs = _mined_pairs(conn, uid, messages, sessions, everything)
        versions = _trained_versions(conn, uid, pairs, touched, everything)
        tainted = store.mark_tainted(uid, versions) if versions else []
        paths = tuple(_own_adapter_paths(store, uid, conn.execute(
            f"SELECT version, path FROM adapter_versions WHERE user_id = ? AND version IN ({_marks(tainted)}) "
            "ORDER BY version", [uid, *tainted]).fetchall())) if tainted else ()
        # 4. profile snapshots that counted a touched session
        profiles = _drop_profiles(conn, uid, touched, everything)
        # 5. delete (feedback, links and answers cascade)
        feedback = conn.execute(f"SELECT COUNT(*) FROM feedback WHERE message_id IN "
                                f"({_marks(messages)})", list(messages)).fetchone()[0] if messages else 0
        gone = _delete(conn, messages, pairs, sessions, all_sessions, touched)
    store.vacuum()
    return ForgetSummary(sessions=len(gone), messages=len(messages), feedback=feedback, pairs=len(pairs),
                         profiles=profiles, tainted_versions=tuple(tainted), tainted_paths=paths)


def forget_pairs(store: Store, user: str, pair_ids: list[int]) -> ForgetSummary:
    """Delete some of ``user``'s preference pairs and taint the adapter versions trained on them (steps 3
    and 5 above): what the user took back reaches the weights too. Their messages stay."""
    ids = {int(p) for p in pair_ids}
    uid = store.get_user(user).id
    if not ids:
        return ForgetSummary()
    with store.transaction() as conn:
        own = _ids(conn, f"SELECT id FROM pairs WHERE user_id = ? AND id IN ({_marks(ids)})", [uid, *ids])
        if ids - own:
            raise ASLSError(f"forget: {user!r} has no preference pair {min(ids - own)} (`/learned` lists them)")
        versions = _trained_versions(conn, uid, own, set(), False)
        tainted = store.mark_tainted(uid, versions) if versions else []
        paths = tuple(_own_adapter_paths(store, uid, conn.execute(
            f"SELECT version, path FROM adapter_versions WHERE user_id = ? AND version IN ({_marks(tainted)}) "
            "ORDER BY version", [uid, *tainted]).fetchall())) if tainted else ()
        conn.execute(f"DELETE FROM pairs WHERE id IN ({_marks(own)})", list(own))
    store.vacuum()
    return ForgetSummary(pairs=len(own), tainted_versions=tuple(tainted), tainted_paths=paths)


def _span(since_ts: float | None, until_ts: float | None) -> tuple[float, float]:
    return (float("-inf") if since_ts is None else since_ts, float("inf") if until_ts is None else until_ts)


def _chosen_sessions(conn: sqlite3.Connection, uid: int, user: str, session_id: int | None,
                     since_ts: float | None, until_ts: float | None, everything: bool) -> set[int]:
    """The session asked for, every session, or those started in the time range."""
    if session_id is not None:
        owner = conn.execute("SELECT user_id FROM sessions WHERE id = ?", (session_id,)).fetchone()
        if owner is None or owner[0] != uid:
            raise ASLSError(f"forget: {user!r} has no session {session_id} (see `asls history`)")
        return {session_id}
    if everything:
        return _ids(conn, "SELECT id FROM sessions WHERE user_id = ?", (uid,))
    lo, hi = _span(since_ts, until_ts)
    return _ids(conn, "SELECT id FROM sessions WHERE user_id = ? AND started_at >= ? "
                      "AND started_at < ?", (uid, lo, hi))


def _chosen_messages(conn: sqlite3.Connection, uid: int, sessions: set[int], since_ts: float | None,
                     until_ts: float | None) -> set[int]:
    """The sessions' messages and those written in the time range, with every answer derived from them."""
    seed_msgs = _ids(
        conn, f"SELECT id FROM messages WHERE session_id IN ({_marks(sessions)})", list(sessions)
    ) if sessions else set()
    if since_ts is not None or until_ts is not None:
        lo, hi = _span(since_ts, until_ts)
        seed_msgs |= _ids(conn, "SELECT m.id FROM messages m JOIN sessions s ON s.id = m.session_id "
                                "WHERE s.user_id = ? AND m.created_at >= ? AND m.created_at < ?",
                          (uid, lo, hi))
    return _descendants(conn, seed_msgs)


def _mined_pairs(conn: sqlite3.Connection, uid: int, messages: set[int], sessions: set[int],
                 everything: bool) -> set[int]:
    pairs: set[int] = set()
    if messages:
        pairs |= _ids(conn, f"SELECT pair_id FROM pair_messages WHERE message_id IN "
                            f"({_marks(messages)})", list(messages))
    if sessions:
        pairs |= _ids(conn, f"SELECT id FROM pairs WHERE session_id IN ({_marks(sessions)})",
                      list(sessions))
    if everything:
        pairs |= _ids(conn, "SELECT id FROM pairs WHERE user_id = ?", (uid,))
    return pairs


def _trained_versions(conn: sqlite3.Connection, uid: int, pairs: set[int], touched: set[int],
                      everything: bool) -> set[int]:
    """Adapter versions whose training saw one of the pairs or sessions (by the pair and run records)."""
    versions: set[int] = set()
    if pairs:
        versions |= _ids(conn, f"SELECT used_in_version FROM pairs WHERE id IN ({_marks(pairs)}) "
                               "AND used_in_version IS NOT NULL", list(pairs))
        versions |= _ids(conn, "SELECT r.adapter_version FROM training_runs r JOIN training_run_pairs "
                               f"p ON p.run_id = r.id WHERE p.pair_id IN ({_marks(pairs)}) "
                               "AND r.adapter_version IS NOT NULL", list(pairs))
    if touched:
        versions |= _ids(conn, "SELECT r.adapter_version FROM training_runs r JOIN "
                               "training_run_sessions s ON s.run_id = r.id WHERE s.session_id IN "
                               f"({_marks(touched)}) AND r.adapter_version IS NOT NULL", list(touched))
    if everything:
        versions |= _ids(conn, "SELECT version FROM adapter_versions WHERE user_id = ?", (uid,))
    return versions


def _drop_profiles(conn: sqlite3.Connection, uid: int, touched: set[int], everything: bool) -> int:
    """Delete the first snapshot that counted a touched session and every later one; returns how many."""
    first = None
    if touched:
        first = conn.execute(f"SELECT MIN(version) FROM profiles WHERE user_id = ? AND session_id IN "
                             f"({_marks(touched)})", [uid, *touched]).fetchone()[0]
    if everything:
        first = 1
    if first is None:
        return 0
    return conn.execute("DELETE FROM profiles WHERE user_id = ? AND version >= ?", (uid, first)).rowcount


def _delete(conn: sqlite3.Connection, messages: set[int], pairs: set[int], sessions: set[int],
            all_sessions: set[int], touched: set[int]) -> set[int]:
    """Delete the pairs, the messages and the sessions that go; returns those sessions."""
    if pairs:
        conn.execute(f"DELETE FROM pairs WHERE id IN ({_marks(pairs)})", list(pairs))
    if messages:
        conn.execute(f"DELETE FROM messages WHERE id IN ({_marks(messages)})", list(messages))
    # A session goes when it was chosen, or when a time range emptied it.
    empty = _ids(conn, f"SELECT id FROM sessions WHERE id IN ({_marks(all_sessions)}) AND NOT EXISTS "
                       "(SELECT 1 FROM messages m WHERE m.session_id = sessions.id)",
                 list(all_sessions)) if all_sessions else set()
    gone = sessions | (empty & touched)
    if gone:
        conn.execute(f"DELETE FROM sessions WHERE id IN ({_marks(gone)})", list(gone))
    return gone


_ADAPTER_FILES = {"adapter_config.json", "adapters.safetensors", "metadata.json", "optimizer.safetensors"}


def _own_adapter_paths(store: Store, uid: int, rows) -> list[str]:
    """The tainted versions' directories, as the caller may delete them.

    A row's path is untrusted (an imported bundle carries the exporter's paths, and a crafted one could
    name any directory), so it is returned only when it is the user's own ``<home>/users/<id>/adapters/vN``
    or a ``vN`` directory holding nothing but adapter files (or absent); otherwise the canonical path.
    """
    root = (store.path.parent / "users" / str(int(uid)) / "adapters").resolve()
    out = []
    for version, path in rows:
        canonical = root / f"v{int(version)}"
        try:
            p = Path(path)
            ok = p.resolve() == canonical or (
                p.name == f"v{int(version)}" and not p.is_symlink()
                and (not p.exists() or (p.is_dir() and {f.name for f in p.iterdir()} <= _ADAPTER_FILES)))
        except (OSError, ValueError, RuntimeError):
            ok = False
        out.append(str(p) if ok else str(canonical))
    return out


def _descendants(conn: sqlite3.Connection, seeds: set[int]) -> set[int]:
    """``seeds`` plus every message whose parent chain leads to one of them (answers, alternatives)."""
    found = set(seeds)
    frontier = set(seeds)
    while frontier:
        children = _ids(conn, f"SELECT id FROM messages WHERE parent_id IN ({_marks(frontier)})",
                        list(frontier))
        frontier = children - found
        found |= frontier
    return found
