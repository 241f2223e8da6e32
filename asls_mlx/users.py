"""The users of this machine: list them, check one exists before reading it, delete one with all its data.

    >>> from asls_mlx import list_users
    >>> [u.name for u in list_users()]          # doctest: +SKIP
    ['default', 'sam']

Commands that only read (profile, history, export, adapters) call :func:`require_user` first, so asking
about a name that was never used says so instead of creating that user.
"""

from __future__ import annotations

import shutil

from asls_mlx.errors import ASLSError
from asls_mlx.locks import FileLock
from asls_mlx.store import Store, UserSummary, open_store
from asls_mlx.store import delete_user as _delete_rows
from asls_mlx.store import user_summaries

DEFAULT_USER = "default"


def user_name(name: str | None) -> str:
    """``name`` checked as a user name; None means the default user (an empty name is an error, not "default")."""
    return Store.validate_user_name(DEFAULT_USER if name is None else name)


def list_users() -> list[UserSummary]:
    """Every user with their sessions, messages, pairs, adapters and last use, by name."""
    with open_store() as store:
        return user_summaries(store)


def require_user(name: str | None) -> str:
    """The user's name if that user exists; else ASLSError "no user 'x' — `asls users` lists them"."""
    name = user_name(name)
    with open_store() as store:
        if not user_summaries(store, name):
            known = ", ".join(u.name for u in user_summaries(store)) or "none yet: `asls chat` makes one"
            raise ASLSError(f"no user {name!r} — `asls users` lists them (known: {known})")
    return name


def delete_user(name: str) -> UserSummary:
    """Delete the user, their history, profile, pairs and adapter files. Refused while they chat or train.

    Returns what was deleted (the summary as it was)."""
    name = require_user(name)
    with open_store() as store:
        user = store.get_user(name)
        folder = store.path.parent / "users" / str(user.id)  # session_update.user_dir, without creating it
        locks = [FileLock(folder / f) for f in ("chat.lock", "train.lock")] if folder.is_dir() else []
        try:
            for lock in locks:
                if not lock.acquire():
                    raise ASLSError(f"user {name!r} is chatting or training in another asls process; close it first")
            summary = _delete_rows(store, name)
        finally:
            for lock in locks:
                lock.release()
        shutil.rmtree(folder, ignore_errors=True)
    return summary


__all__ = ["DEFAULT_USER", "UserSummary", "delete_user", "list_users", "require_user", "user_name"]
