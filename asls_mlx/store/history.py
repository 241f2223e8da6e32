"""Store methods for the chat history: users, sessions, messages, feedback and profile snapshots.

A mixin of ``Store`` (it uses ``self.execute`` and ``self.transaction``) kept apart so each file has one
job. Every statement takes parameters; no user text is ever formatted into SQL.
"""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

from asls_mlx.errors import ASLSError
from asls_mlx.store import schema
from asls_mlx.store.records import Feedback, Message, ProfileSnapshot, Session, User

MAX_USER_NAME = 64  # user names become directory names for adapters: keep them short
ROLES = ("user", "assistant", "system")


def _text(value: object, what: str) -> str:
    """``value`` if it is text SQLite can store (UTF-8 encodable: no lone surrogates), else ASLSError."""
    if not isinstance(value, str):
        raise ASLSError(f"{what} must be text, not {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ASLSError(f"{what} is not valid Unicode text (undecodable bytes at {e.start}); nothing was stored") from None
    return value


def _ts(value: float | None) -> float:
    return time.time() if value is None else float(value)


class HistoryMixin:
    # -- users -----------------------------------------------------------------------------------

    @staticmethod
    def validate_user_name(name: object) -> str:
        """Return ``name`` if it is a valid user name, else raise ASLSError saying why."""
        if not isinstance(name, str) or not name.strip():
            raise ASLSError("a user name must be a non-empty text")
        if len(name) > MAX_USER_NAME:
            raise ASLSError(f"user name is {len(name)} characters; at most {MAX_USER_NAME} allowed")
        if not name.isprintable():
            raise ASLSError(f"user name {name!r} contains control characters")
        if "/" in name or "\\" in name or name in (".", ".."):
            raise ASLSError(f"user name {name!r} may not contain path separators")
        if name != name.strip():
            raise ASLSError(f"user name {name!r} may not start or end with spaces")
        return name

    def get_or_create_user(self, name: str) -> User:
        """The user called ``name``, created if new."""
        name = self.validate_user_name(name)
        with self.transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO users (name, created_at) VALUES (?, ?)", (name, time.time())
            )
            row = conn.execute("SELECT * FROM users WHERE name = ?", (name,)).fetchone()
        return User(**dict(row))

    def get_user(self, name: str) -> User:
        """The existing user called ``name``; unknown names raise ASLSError listing who exists."""
        if isinstance(name, User):
            return name
        row = self.execute("SELECT * FROM users WHERE name = ?", (name,)).fetchone()
        if row is None:
            known = ", ".join(u.name for u in self.list_users()) or "none yet"
            raise ASLSError(f"no user named {name!r} (known users: {known}; see `asls users`)")
        return User(**dict(row))

    def user_by_id(self, user_id: int) -> User:
        row = self.execute("SELECT * FROM users WHERE id = ?", (user_id,)).fetchone()
        if row is None:
            raise ASLSError(f"no user with id {user_id}")
        return User(**dict(row))

    def list_users(self) -> list[User]:
        return [User(**dict(r)) for r in self.execute("SELECT * FROM users ORDER BY name")]

    # -- sessions --------------------------------------------------------------------------------

    def start_session(self, user_id: int, started_at: float | None = None) -> int:
        self.user_by_id(user_id)
        cur = self.execute(
            "INSERT INTO sessions (user_id, started_at) VALUES (?, ?)", (user_id, _ts(started_at))
        )
        return int(cur.lastrowid)

    def end_session(self, session_id: int, ended_at: float | None = None) -> None:
        self.session(session_id)
        self.execute(
            "UPDATE sessions SET ended_at = COALESCE(ended_at, ?) WHERE id = ?",
            (_ts(ended_at), session_id),
        )

    def session(self, session_id: int) -> Session:
        row = self.execute("SELECT * FROM sessions WHERE id = ?", (session_id,)).fetchone()
        if row is None:
            raise ASLSError(f"no session with id {session_id}")
        return _session(row)

    def sessions(self, user_id: int) -> list[Session]:
        """The user's sessions, oldest first."""
        rows = self.execute(
            "SELECT * FROM sessions WHERE user_id = ? ORDER BY started_at, id", (user_id,)
        )
        return [_session(r) for r in rows]

    def mark_session_processed(self, session_id: int, processed: bool = True) -> None:
        self.session(session_id)
        self.execute("UPDATE sessions SET processed = ? WHERE id = ?", (int(processed), session_id))

    # -- messages --------------------------------------------------------------------------------

    def add_message(
        self, session_id: int, role: str, content: str, parent_id: int | None = None,
        created_at: float | None = None,
    ) -> int:
        """Append a message to a session; returns its id."""
        if role not in ROLES:
            raise ASLSError(f"unknown message role {role!r}; use one of {', '.join(ROLES)}")
        content = _text(content, "message content")
        self.session(session_id)
        if parent_id is not None:
            self.message(parent_id)
        cur = self.execute(
            "INSERT INTO messages (session_id, role, content, parent_id, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (session_id, role, content, parent_id, _ts(created_at)),
        )
        return int(cur.lastrowid)

    def message(self, message_id: int) -> Message:
        row = self.execute("SELECT * FROM messages WHERE id = ?", (message_id,)).fetchone()
        if row is None:
            raise ASLSError(f"no message with id {message_id}")
        return Message(**dict(row))

    def add_alternative(self, message_id: int, content: str, created_at: float | None = None) -> int:
        """Regenerate: ``content`` becomes the active answer of the turn; the old one is kept, superseded.

        Records a ``regenerate`` feedback event on the replaced answer (its ``superseded_by`` names the
        new one). Returns the new message id.
        """
        content = _text(content, "an alternative answer")
        old = self.message(message_id)
        while old.superseded_by is not None:  # regenerating an old alternative replaces the live one
            old = self.message(old.superseded_by)
        if old.role != "assistant":
            raise ASLSError(f"message {message_id} is not an assistant answer; only answers regenerate")
        with self.transaction() as conn:
            new_id = conn.execute(
                "INSERT INTO messages (session_id, role, content, parent_id, created_at) "
                "VALUES (?, 'assistant', ?, ?, ?)",
                (old.session_id, content, old.parent_id, _ts(created_at)),
            ).lastrowid
            conn.execute("UPDATE messages SET superseded_by = ? WHERE id = ?", (new_id, old.id))
            self._insert_feedback(conn, old.id, "regenerate", {}, 1.0,
                                  created_at)
        return int(new_id)

    def set_edit(self, message_id: int, text: str, created_at: float | None = None) -> None:
        """The user's corrected version of an answer; also records an ``edit`` feedback event."""
        text = _text(text, "edited text")
        msg = self.message(message_id)
        if msg.role != "assistant":
            raise ASLSError(f"message {message_id} is not an assistant answer; only answers are edited")
        with self.transaction() as conn:
            conn.execute("UPDATE messages SET edited_content = ? WHERE id = ?", (text, message_id))
            self._insert_feedback(conn, message_id, "edit", {}, 1.0, created_at)

    def conversation(self, session_id: int) -> list[Message]:
        """The session's active messages (no superseded alternatives), in order."""
        rows = self.execute(
            "SELECT * FROM messages WHERE session_id = ? AND superseded_by IS NULL ORDER BY id",
            (session_id,),
        )
        return [Message(**dict(r)) for r in rows]

    def messages(self, session_id: int) -> list[Message]:
        """Every message of the session, superseded alternatives included, in order."""
        rows = self.execute("SELECT * FROM messages WHERE session_id = ? ORDER BY id", (session_id,))
        return [Message(**dict(r)) for r in rows]

    def history(self, user_id: int, limit: int = 50) -> list[Message]:
        """The user's latest ``limit`` active messages across sessions, oldest first."""
        rows = self.execute(
            "SELECT m.* FROM messages m JOIN sessions s ON s.id = m.session_id "
            "WHERE s.user_id = ? AND m.superseded_by IS NULL ORDER BY m.id DESC LIMIT ?",
            (user_id, int(limit)),
        ).fetchall()
        return [Message(**dict(r)) for r in reversed(rows)]

    # -- feedback --------------------------------------------------------------------------------

    def add_feedback(
        self, message_id: int, kind: str, payload: dict[str, Any] | None = None,
        confidence: float = 1.0, created_at: float | None = None,
    ) -> int:
        """Record a feedback event on a message; a missing message raises ASLSError, nothing changes."""
        if kind not in schema.FEEDBACK_KINDS:
            raise ASLSError(f"unknown feedback kind {kind!r}; use one of {', '.join(schema.FEEDBACK_KINDS)}")
        if not 0.0 <= float(confidence) <= 1.0:
            raise ASLSError(f"feedback confidence must be in [0, 1], got {confidence}")
        with self.transaction() as conn:
            if conn.execute("SELECT 1 FROM messages WHERE id = ?", (message_id,)).fetchone() is None:
                raise ASLSError(f"no message with id {message_id}; feedback not recorded")
            return self._insert_feedback(conn, message_id, kind, payload or {}, confidence, created_at)

    @staticmethod
    def _insert_feedback(conn: sqlite3.Connection, message_id: int, kind: str, payload: dict,
                         confidence: float, created_at: float | None) -> int:
        try:
            blob = json.dumps(payload, ensure_ascii=False, sort_keys=True)
        except (TypeError, ValueError) as e:
            raise ASLSError(f"feedback payload is not JSON-serialisable: {e}") from e
        cur = conn.execute(
            "INSERT INTO feedback (message_id, kind, payload, confidence, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (message_id, kind, blob, float(confidence), _ts(created_at)),
        )
        return int(cur.lastrowid)

    def feedback(self, message_id: int | None = None, session_id: int | None = None) -> list[Feedback]:
        """Feedback events on one message, or on every message of a session, in order."""
        if message_id is not None:
            rows = self.execute("SELECT * FROM feedback WHERE message_id = ? ORDER BY id", (message_id,))
        elif session_id is not None:
            rows = self.execute(
                "SELECT f.* FROM feedback f JOIN messages m ON m.id = f.message_id "
                "WHERE m.session_id = ? ORDER BY f.id", (session_id,),
            )
        else:
            raise ASLSError("feedback(): give a message_id or a session_id")
        return [_feedback(r) for r in rows]

    # -- profile snapshots -----------------------------------------------------------------------

    def save_profile(self, user_id: int, data: dict[str, Any], session_id: int | None = None,
                     created_at: float | None = None) -> int:
        """Store a new profile snapshot (next version number); returns the version."""
        with self.transaction() as conn:
            version = conn.execute(
                "SELECT COALESCE(MAX(version), 0) + 1 FROM profiles WHERE user_id = ?", (user_id,)
            ).fetchone()[0]
            conn.execute(
                "INSERT INTO profiles (user_id, version, session_id, data, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (user_id, version, session_id, json.dumps(data, ensure_ascii=False, sort_keys=True),
                 _ts(created_at)),
            )
        return int(version)

    def latest_profile(self, user_id: int) -> ProfileSnapshot | None:
        row = self.execute(
            "SELECT * FROM profiles WHERE user_id = ? ORDER BY version DESC LIMIT 1", (user_id,)
        ).fetchone()
        return None if row is None else _profile(row)

    def profiles(self, user_id: int) -> list[ProfileSnapshot]:
        rows = self.execute("SELECT * FROM profiles WHERE user_id = ? ORDER BY version", (user_id,))
        return [_profile(r) for r in rows]


def _session(row: sqlite3.Row) -> Session:
    d = dict(row)
    d["processed"] = bool(d["processed"])
    return Session(**d)


def _feedback(row: sqlite3.Row) -> Feedback:
    d = dict(row)
    d["payload"] = json.loads(d["payload"])
    return Feedback(**d)


def _profile(row: sqlite3.Row) -> ProfileSnapshot:
    d = dict(row)
    d["data"] = json.loads(d["data"])
    return ProfileSnapshot(**d)
