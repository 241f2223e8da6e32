"""End of a chat session: infer signals -> update the profile -> mine pairs, exactly once per session."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from asls_mlx.profiling.mining import LENGTH_PAIRS, Generate, mine_pairs
from asls_mlx.profiling.profile import Profile
from asls_mlx.profiling.signals import infer_session_signals
from asls_mlx.profiling.profile_update import _user, load_profile, update_profile
from asls_mlx.store.records import PreferencePair

if TYPE_CHECKING:
    from asls_mlx.store import Store, User


@dataclass
class SessionResult:
    """What a session taught: the new profile, the one before, the new pairs, and the drift score."""

    profile: Profile
    previous_profile: Profile
    pairs: list[PreferencePair] = field(default_factory=list)
    drift: float = 0.0
    already_processed: bool = False

    @property
    def changes(self) -> list[str]:
        return self.profile.diff(self.previous_profile)


def process_session(store: Store, user: str | User, session: int, generate: Generate | None = None,
                    seed: int = 0, k: int = 4, rewrite: Callable[[str], str] | None = None,
                    length_pairs: bool = LENGTH_PAIRS) -> SessionResult:
    """Run the profiling layer on a finished session. Processing a session twice adds nothing.

    1) end the session; 2) add inferred correction/statement/acceptance events; 3) update the profile
    (a new snapshot); 4) mine pairs (``generate`` enables self-labelled ones); 5) mark it processed.
    Each step is idempotent, so a crash in between is repaired by simply running this again.
    """
    u = _user(store, user)
    sess = store.session(session)
    if sess.user_id != u.id:
        from asls_mlx.errors import ASLSError

        raise ASLSError(f"session {session} does not belong to user {u.name!r}")
    if sess.processed:
        prof = load_profile(store, u)
        return SessionResult(prof, prof, [], prof.drift, already_processed=True)
    store.end_session(session)
    previous = load_profile(store, u)
    infer_session_signals(store, session)
    profile = update_profile(store, u, session)
    pairs = mine_pairs(store, u, session, generate=generate, k=k, seed=seed, rewrite=rewrite,
                       profile=profile, length_pairs=length_pairs)
    store.mark_session_processed(session)
    return SessionResult(profile, previous, pairs, profile.drift)
