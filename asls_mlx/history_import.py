"""Start from the history a user already has elsewhere: ``asls import --from chatgpt conversations.json``
or ``--from llm logs.db``. The conversations become sessions of the user, then profiled and mined like
their own (the profile and the preference pairs are ready before anything is trained).

    >>> from asls_mlx import import_history
    >>> import_history("conversations.json", source="chatgpt", user="sam").line()    # doctest: +SKIP
    'imported 41 conversations (388 messages, 6 regenerated answers) into sam; 9 preference pairs mined ...'
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any, Callable

from asls_mlx.errors import ASLSError
from asls_mlx.locks import FileLock
from asls_mlx.profiling import load_profile, process_session
from asls_mlx.session_update import user_dir
from asls_mlx.store import open_store
from asls_mlx.store.external import SOURCES, read_conversations, store_conversations
from asls_mlx.users import user_name


@dataclass
class ImportSummary:
    """What an import of another assistant's history did."""

    user: str
    source: str
    conversations: int  # new sessions
    messages: int
    regenerated: int  # answers the user had regenerated away, kept as the worse alternative
    skipped: int  # conversations already imported, or without a text exchange
    pairs_mined: int  # preference pairs from those sessions (both splits)
    held_out: int  # of those, held out to check adapters
    profile_changes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        text = (f"imported {_n(self.conversations, 'conversation')} ({_n(self.messages, 'message')}, "
                f"{_n(self.regenerated, 'regenerated answer')}) into {self.user}; "
                f"{_n(self.pairs_mined, 'preference pair')} mined")
        if self.held_out:
            text += f" ({self.held_out} held out to check adapters)"
        if self.skipped:
            text += f"; skipped {self.skipped} (already imported or no text)"
        return text


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def import_history(path: str | PathLike, source: str, user: str | None = None,
                   progress: Callable[[int, int], None] | None = None) -> ImportSummary:
    """Import ChatGPT's export (``source="chatgpt"``: conversations.json or the export's .zip) or llm's log
    (``source="llm"``: logs.db) into ``user`` (created if new). All the conversations are stored in one
    transaction or none; then each new session is profiled and mined (``progress(done, total)``).
    Refused while the user chats in another process. Importing the same export again adds nothing."""
    if source not in SOURCES:
        raise ASLSError(f"import --from {source!r}: use one of {', '.join(SOURCES)}")
    name = user_name(user)
    conversations = read_conversations(Path(path), source)
    with open_store() as store:
        u = store.get_or_create_user(name)
        lock = FileLock(user_dir(store, u) / "chat.lock")
        if not lock.acquire():
            raise ASLSError(f"user {name!r} is chatting in another asls process; close it, then import")
        try:
            before = load_profile(store, u)
            counts = store_conversations(store, u.id, conversations)
            for done, sid in enumerate(counts.session_ids, start=1):
                process_session(store, u, sid, generate=None, seed=0)
                if progress is not None:
                    progress(done, len(counts.session_ids))
            pairs = [p for p in store.pairs(u.id, split=None) if p.session_id in set(counts.session_ids)]
            changes = load_profile(store, u).diff(before)
        finally:
            lock.release()
    return ImportSummary(name, source, counts.conversations, counts.messages, counts.regenerated, counts.skipped,
                         len(pairs), sum(p.split == "val" for p in pairs), changes)


__all__ = ["ImportSummary", "import_history"]
