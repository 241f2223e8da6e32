"""Users as a whole: a summary line per user (``asls users``) and deleting one with everything it owns."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from asls_mlx.store.db import Store


@dataclass(frozen=True)
class UserSummary:
    """One user at a glance. ``last_used``: the newest message or session start (epoch seconds)."""

    name: str
    created_at: float
    sessions: int
    messages: int
    pairs: int
    adapters: int  # usable versions (active or archived)
    active_adapter: int | None
    last_used: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_SUMMARY = """
SELECT u.id, u.name, u.created_at,
  (SELECT COUNT(*) FROM sessions s WHERE s.user_id = u.id) AS sessions,
  (SELECT COUNT(*) FROM messages m JOIN sessions s ON s.id = m.session_id WHERE s.user_id = u.id) AS messages,
  (SELECT COUNT(*) FROM pairs p WHERE p.user_id = u.id) AS pairs,
  (SELECT COUNT(*) FROM adapter_versions a WHERE a.user_id = u.id AND a.status IN ('active', 'archived')) AS adapters,
  (SELECT a.version FROM adapter_versions a WHERE a.user_id = u.id AND a.status = 'active') AS active_adapter,
  MAX(u.created_at,
      COALESCE((SELECT MAX(s.started_at) FROM sessions s WHERE s.user_id = u.id), 0),
      COALESCE((SELECT MAX(m.created_at) FROM messages m JOIN sessions s ON s.id = m.session_id
                WHERE s.user_id = u.id), 0)) AS last_used
FROM users u
"""


def user_summaries(store: Store, name: str | None = None) -> list[UserSummary]:
    """Every user (or the one called ``name``), by name."""
    sql, params = (_SUMMARY + " WHERE u.name = ?", (name,)) if name is not None else (_SUMMARY, ())
    rows = store.execute(sql + " ORDER BY u.name", params).fetchall()
    return [UserSummary(**{k: r[k] for k in r.keys() if k != "id"}) for r in rows]


def delete_user(store: Store, name: str) -> UserSummary:
    """Delete the user and every row about them (one transaction: the schema cascades from ``users``),
    then rewrite the database file so the text is gone from disk. Returns what was deleted."""
    user = store.get_user(name)
    summary = user_summaries(store, user.name)[0]
    with store.transaction() as conn:
        conn.execute("DELETE FROM users WHERE id = ?", (user.id,))
    store.vacuum()
    return summary


__all__ = ["UserSummary", "delete_user", "user_summaries"]
