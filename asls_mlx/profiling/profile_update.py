"""From a session's messages and feedback events to profile observations, and the per-session update.

Observation weights say how strongly each signal speaks about a preference:
explicit statement 2.0 > edit 1.0 > correction (its confidence, ~0.9) > thumbs up 0.6 >
acceptance 0.3 x confidence > thumbs down 0.3 > discarded by regenerate 0.2.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import TYPE_CHECKING

from asls_mlx.profiling.features import AnswerFeatures, answer_features, words
from asls_mlx.profiling.profile import BINARY, DECAY, FEATURES, TOPIC_KEEP, Feature, Profile
from asls_mlx.profiling.quality import STOPWORDS
from asls_mlx.profiling.signals import corrections

if TYPE_CHECKING:
    from asls_mlx.store import Store, User

Obs = dict[str, list[tuple[float, float]]]
W_STATEMENT, W_EDIT, W_UP, W_ACCEPT, W_DOWN, W_DISCARD = 2.0, 1.0, 0.6, 0.3, 0.3, 0.2
SHORT_WORDS, LONG_WORDS = 40, 250  # what "short answers" / "detailed answers" mean in words
_LANG_WORDS = {
    "en": {"the", "and", "is", "are", "what", "how", "you", "of", "to", "in"},
    "fr": {"le", "la", "les", "et", "est", "que", "comment", "pourquoi", "vous", "une", "des"},
    "es": {"el", "los", "las", "y", "es", "que", "cómo", "por", "qué", "una", "para"},
    "de": {"der", "die", "das", "und", "ist", "wie", "ich", "nicht", "ein", "eine", "warum"},
}
_CORRECTION_EFFECT = {"bullets": ("bullets", 1.0), "formal": ("formality", 1.0),
                      "casual": ("formality", -1.0), "code_first": ("code_first", 1.0),
                      "tldr": ("tldr", 1.0)}


def _log_words(n: float) -> float:
    return math.log(max(n, 1.0))


def _present(f: AnswerFeatures, sign: float, weight: float, obs: Obs, with_length: bool) -> None:
    """An answer liked (sign +1) or disliked (-1): its visible features are evidence."""
    if with_length:
        obs["length"].append((_log_words(f.words), weight))
    for name, present in (("bullets", f.bullets), ("headings", f.headings),
                          ("code_first", f.code_first), ("tldr", f.tldr_first)):
        if present:
            obs[name].append((sign, weight))
    if abs(f.formality) >= 0.3:
        obs["formality"].append((sign * (1.0 if f.formality > 0 else -1.0), weight))


def _edit(orig: AnswerFeatures, new: AnswerFeatures, obs: Obs) -> None:
    obs["length"].append((_log_words(new.words), W_EDIT))
    for name, a, b in (("bullets", orig.bullets, new.bullets), ("headings", orig.headings, new.headings),
                       ("code_first", orig.code_first, new.code_first),
                       ("tldr", orig.tldr_first, new.tldr_first)):
        if a != b:
            obs[name].append((1.0 if b else -1.0, W_EDIT))
    if abs(new.formality - orig.formality) >= 0.2:  # e.g. contractions expanded -> more formal
        obs["formality"].append((1.0 if new.formality > orig.formality else -1.0, W_EDIT))


def session_observations(store: Store, session_id: int) -> tuple[Obs, list[str], dict[str, str], list[str]]:
    """(feature observations, user message texts, stated facts, stated topics) of one session."""
    obs: Obs = {name: [] for name in FEATURES}
    facts: dict[str, str] = {}
    topics: list[str] = []
    msgs = {m.id: m for m in store.messages(session_id)}
    for fb in store.feedback(session_id=session_id):
        msg = msgs.get(fb.message_id)
        if msg is None:
            continue
        feats = answer_features(msg.content)
        if fb.kind == "correction":
            kinds = fb.payload.get("kinds") or [fb.payload.get("kind")]
            for kind in kinds:
                if kind == "shorter":
                    obs["length"].append((_log_words(0.5 * feats.words), fb.confidence))
                elif kind == "longer":
                    obs["length"].append((_log_words(max(1.6 * feats.words, feats.words + 40)),
                                          fb.confidence))
                elif kind in _CORRECTION_EFFECT:
                    name, value = _CORRECTION_EFFECT[kind]
                    obs[name].append((value, fb.confidence))
        elif fb.kind == "edit" and msg.edited_content is not None:
            _edit(feats, answer_features(msg.edited_content), obs)
        elif fb.kind == "thumbs_up":
            _present(feats, 1.0, W_UP * fb.confidence, obs, with_length=True)
        elif fb.kind == "acceptance":
            _present(feats, 1.0, W_ACCEPT * fb.confidence, obs, with_length=True)
        elif fb.kind == "thumbs_down":
            _present(feats, -1.0, W_DOWN * fb.confidence, obs, with_length=False)
        elif fb.kind == "regenerate":
            _present(feats, -1.0, W_DISCARD * fb.confidence, obs, with_length=False)
        elif fb.kind == "statement":
            for st in fb.payload.get("statements", []):
                feature, value = st.get("feature"), st.get("value")
                if feature == "length":
                    obs["length"].append((_log_words(SHORT_WORDS if value == "short" else LONG_WORDS),
                                          W_STATEMENT))
                elif feature == "formality":
                    obs["formality"].append((1.0 if value == "formal" else -1.0, W_STATEMENT))
                elif feature in BINARY:
                    obs[feature].append((1.0 if value else -1.0, W_STATEMENT))
                elif feature in ("name", "language"):
                    facts[feature] = str(value)
                elif feature == "topic":
                    topics.append(str(value))
    user_texts = [m.content for m in msgs.values() if m.role == "user"]
    return obs, user_texts, facts, topics


def _language(texts: list[str]) -> str | None:
    counts = Counter()
    for t in texts:
        toks = set(words(t))
        for lang, marks in _LANG_WORDS.items():
            counts[lang] += len(toks & marks)
    if not counts or max(counts.values()) == 0:
        return None
    return max(sorted(counts), key=lambda k: counts[k])


def _keywords(texts: list[str]) -> Counter:
    c: Counter = Counter()
    for t in texts:
        if corrections(t):  # "shorter please" says nothing about interests
            continue
        for w in set(words(t)):
            if len(w) >= 4 and w not in STOPWORDS and not re.fullmatch(r"\d+", w):
                c[w] += 1
    return c


def apply_session(prev: Profile, obs: Obs, user_texts: list[str], facts: dict[str, str],
                  topics: list[str]) -> Profile:
    """The profile after one session's observations (pure; no database)."""
    new = Profile(**{k: getattr(prev, k) for k in ("languages", "topics", "facts")})
    new.facts = {**prev.facts, **facts}
    drift_parts = []
    for name in FEATURES:
        old: Feature = getattr(prev, name)
        session = obs[name]
        setattr(new, name, old.updated(session))
        w = sum(x for _, x in session)
        if session and old.confidence > 0.2:
            recent = sum(v * x for v, x in session) / w
            scale = math.log(4.0) if name == "length" else 2.0  # 4x length or full flip = total drift
            gap = min(1.0, abs(recent - old.value) / scale)
            drift_parts.append(gap * min(1.0, w) * old.confidence)
    new.drift = round(max(drift_parts, default=0.0), 4)
    lang = _language(user_texts)
    new.languages = {k: v * DECAY for k, v in prev.languages.items()}
    if lang:
        new.languages[lang] = new.languages.get(lang, 0.0) + 1.0
    counts = {k: v * DECAY for k, v in prev.topics.items()}
    for w, c in _keywords(user_texts).items():
        counts[w] = counts.get(w, 0.0) + c
    for t in topics:
        counts[t] = counts.get(t, 0.0) + 2.0
    kept = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:TOPIC_KEEP]
    new.topics = {k: round(v, 4) for k, v in kept if v >= 0.05}
    new.sessions = prev.sessions + 1
    return new


def _user(store: Store, user: str | User) -> User:
    return store.get_user(user if isinstance(user, str) else user.name)


def load_profile(store: Store, user: str | User) -> Profile:
    """The user's latest profile snapshot (an empty Profile if none yet)."""
    snap = store.latest_profile(_user(store, user).id)
    if snap is None:
        return Profile()
    prof = Profile.from_dict(snap.data)
    prof.version = snap.version
    return prof


def update_profile(store: Store, user: str | User, session: int) -> Profile:
    """Fold one session into the user's profile and save it as a new versioned snapshot.

    Idempotent per session: if the latest snapshot already counted ``session``, it is returned as is.
    """
    u = _user(store, user)
    snap = store.latest_profile(u.id)
    if snap is not None and snap.session_id == session:
        return load_profile(store, u)
    prev = load_profile(store, u)
    new = apply_session(prev, *session_observations(store, session))
    new.version = store.save_profile(u.id, _without_version(new), session_id=session)
    return new


def _without_version(p: Profile) -> dict:
    d = p.to_dict()
    d.pop("version", None)
    return d


def rebuild_profile(store: Store, user: str | User) -> Profile:
    """Replay processed sessions no snapshot covers (e.g. after ``forget`` dropped snapshots)."""
    u = _user(store, user)
    counted = {p.session_id for p in store.profiles(u.id)}
    prof = load_profile(store, u)
    for s in store.sessions(u.id):
        if s.processed and s.id not in counted:
            prof = update_profile(store, u, s.id)
    return prof
