"""What the profile learned and from what, during a session as well as after it.

- :func:`live_profile`: the stored profile with the open session's evidence so far folded in, without
  storing anything (the session's end stores the same evidence), so the profile, and the system prompt built
  from it, follow what the user says within the session.
- :func:`learned`: per feature, what it says, how sure it is, and the user's words and edits behind it.
- :func:`teaches`: whether a preference pair teaches a feature's claim; removing a feature takes those pairs
  out of training.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from asls_mlx.profiling.features import answer_features
from asls_mlx.profiling.profile import FEATURES, TOPIC_SHOW, Profile, length_kind
from asls_mlx.profiling.profile_topics import topic_words
from asls_mlx.profiling.profile_update import Evidence, _user, apply_session, load_profile, session_evidence
from asls_mlx.profiling.signals import implied_events
from asls_mlx.store.records import Feedback

if TYPE_CHECKING:
    from asls_mlx.store import Store, User
    from asls_mlx.store.records import PreferencePair

SCAN_SESSIONS = 10  # evidence ten sessions old weighs DECAY**10 < 1%: older sessions are not listed
SHOW_EVIDENCE = 5  # items listed per feature, newest first
LENGTH_CUT = 0.7  # a pair teaches "short" when its chosen answer has under 70% of the rejected one's words
TONE_GAP = 0.2  # the formality difference an edit must make to count as a change of tone


@dataclass
class LearnedFeature:
    """One thing the profile holds about the user, with the evidence behind it.

    name: a feature (``length``, ``bullets``, ...), ``name``, ``language`` or ``topic:<word>``.
    says: what it says now ("about 40 words", "wanted", "Sam", ...); claimed: whether the system prompt states it.
    evidence: what the user said or did, newest first (at most ``SHOW_EVIDENCE``); supporting: answers
    they kept or liked that fit an expressed feature (these only strengthen it).
    """

    name: str
    says: str
    confidence: float
    claimed: bool
    evidence: list[Evidence] = field(default_factory=list)
    supporting: int = 0


def session_feedback(store: Store, session_id: int) -> list[Feedback]:
    """The session's stored feedback plus the events its conversation implies so far (not stored)."""
    stored = store.feedback(session_id=session_id)
    existing = {(f.message_id, f.kind) for f in stored}
    now = time.time()
    implied = [Feedback(0, mid, kind, payload, conf, now)
               for mid, kind, payload, conf in implied_events(store.conversation(session_id), existing)]
    return stored + implied


def live_profile(store: Store, user: str | User, session_id: int | None) -> Profile:
    """The profile as it stands during session ``session_id``: the stored one plus the session's evidence so
    far, old evidence not yet decayed (that happens when the session ends). The stored profile when there
    is no open session."""
    prev = load_profile(store, user)
    if session_id is None or store.session(session_id).processed:
        return prev
    ev = session_evidence(store, session_id, session_feedback(store, session_id), prev.removed)
    live = apply_session(prev, ev, decay=1.0)
    live.version = prev.version
    return live


def _recent_sessions(store: Store, user: User, open_session: int | None) -> list[int]:
    ids = [s.id for s in store.sessions(user.id) if s.processed][-SCAN_SESSIONS:]
    if open_session is not None and open_session not in ids:
        ids.append(open_session)
    return ids


def learned(store: Store, user: str | User, session_id: int | None = None) -> list[LearnedFeature]:
    """Every feature the profile holds (``session_id``: the open session's evidence counts too), each
    with its confidence and the user's words behind it, newest first."""
    u = _user(store, user)
    profile = live_profile(store, u, session_id)
    sources: dict[str, list[Evidence]] = {}
    prompts: list[tuple[str, int, float]] = []
    for sid in _recent_sessions(store, u, session_id):
        live = sid == session_id and not store.session(sid).processed
        ev = session_evidence(store, sid, session_feedback(store, sid) if live else None, profile.removed)
        for key, items in ev.sources.items():
            sources.setdefault(key, []).extend(items)
        prompts += [(text, sid, at) for text, at in zip(ev.prompts, ev.prompt_times)]
    claims = profile.claims()
    out = []
    for name in FEATURES:
        feat = getattr(profile, name)
        if feat.weight > 0 or sources.get(name):
            out.append(LearnedFeature(name, profile.describe(name), feat.confidence, name in claims,
                                      _newest(sources.get(name, [])), max(feat.evidence - feat.expressed, 0)))
    for key, value in sorted(profile.facts.items()):
        out.append(LearnedFeature(key, value, 1.0, True, _newest(sources.get(key, []))))
    for topic in profile.top_topics(10):
        said = [Evidence(f"topic:{topic}", "prompt", 0.0, 1.0, 0, sid, text, at) for text, sid, at in prompts
                if topic in topic_words([text])]
        out.append(LearnedFeature(f"topic:{topic}", "interested", min(1.0, profile.topics[topic] / (2 * TOPIC_SHOW)),
                                  False, _newest(sources.get(f"topic:{topic}", []) + said)))
    return out


def _newest(items: list[Evidence]) -> list[Evidence]:
    return sorted(items, key=lambda e: -e.at)[:SHOW_EVIDENCE]


def direction(profile: Profile, name: str) -> object:
    """Which way feature ``name`` leans, as a claim value ("short", True, "formal", ...), even below the
    confidence a claim needs; None when it has no evidence or no lean."""
    if name in profile.claims():
        return profile.claims()[name]
    feat = getattr(profile, name, None) if name in FEATURES else None
    if feat is None or feat.weight <= 0:
        return None
    if name == "length":
        return length_kind(max(1, round(math.exp(feat.value))))
    if feat.value == 0:
        return None
    if name == "formality":
        return "formal" if feat.value > 0 else "casual"
    return feat.value > 0


def teaches(pair: PreferencePair, name: str, value: object) -> bool:
    """Whether ``pair`` teaches the claim ``name`` = ``value`` (a ``Profile.claims()`` value): its chosen
    answer has the feature the claim wants and its rejected one does not (or is clearly longer, for
    "short"). Unpaired examples teach a whole answer, not one feature: never."""
    if pair.rejected is None or name not in FEATURES:
        return False
    chosen, rejected = answer_features(pair.chosen), answer_features(pair.rejected)
    if name == "length":
        ratio = (chosen.words + 1) / (rejected.words + 1)
        return ratio < LENGTH_CUT if value == "short" else ratio > 1 / LENGTH_CUT if value == "long" else False
    if name == "formality":
        gap = chosen.formality - rejected.formality
        return gap >= TONE_GAP if value == "formal" else gap <= -TONE_GAP
    have = {"bullets": lambda f: f.bullets, "headings": lambda f: f.headings,
            "code_first": lambda f: f.code_first, "tldr": lambda f: f.tldr_first}[name]
    return have(chosen) != have(rejected) and have(chosen) == bool(value)


__all__ = ["LearnedFeature", "direction", "learned", "live_profile", "session_feedback", "teaches"]
