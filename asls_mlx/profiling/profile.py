"""The user profile: interpretable features, updated per session with decay so it can follow drift.

Each feature keeps a decayed weighted mean of observations: after every session the old evidence is
multiplied by ``DECAY`` and the session's observations are added, so a change of preference overtakes
the old one within a few sessions. A feature's confidence grows with its (decayed) evidence weight.
Values: ``length`` is log(target words); ``bullets``, ``headings``, ``code_first``, ``tldr`` are in
[-1, 1] (dislikes .. likes); ``formality`` is in [-1, 1] (casual .. formal).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

DECAY = 0.6  # per session: evidence three sessions old counts ~20%, so drift is followed in ~3 sessions
CONF_SCALE = 1.5  # evidence weight at which confidence reaches 1 - 1/e (about two clear corrections)
SHOW_CONFIDENCE = 0.3  # below this a feature is not rendered or scored as a preference
SHOW_VALUE = 0.25  # |value| below this is "no clear preference"
TOPIC_KEEP = 20  # topics remembered per user
BINARY = ("bullets", "headings", "code_first", "tldr", "formality")
FEATURES = ("length", *BINARY)


@dataclass
class Feature:
    """A decayed weighted mean of observations, with its weight and how many observations it saw."""

    value: float = 0.0
    weight: float = 0.0
    evidence: int = 0

    @property
    def confidence(self) -> float:
        return 1.0 - math.exp(-self.weight / CONF_SCALE)

    def updated(self, observations: list[tuple[float, float]], decay: float = DECAY) -> Feature:
        """This feature after one session: old weight decayed, the session's (value, weight) added."""
        w_old = self.weight * decay
        w_new = sum(w for _, w in observations)
        if w_old + w_new <= 0:
            return Feature(self.value, 0.0, self.evidence)
        value = (self.value * w_old + sum(v * w for v, w in observations)) / (w_old + w_new)
        return Feature(value, w_old + w_new, self.evidence + len(observations))

    def shown(self) -> bool:
        return self.confidence >= SHOW_CONFIDENCE and abs(self.value) >= SHOW_VALUE


@dataclass
class Profile:
    """What asls has learnt about one user. ``render()`` is the profile-in-prompt text."""

    length: Feature = field(default_factory=Feature)
    bullets: Feature = field(default_factory=Feature)
    headings: Feature = field(default_factory=Feature)
    code_first: Feature = field(default_factory=Feature)
    tldr: Feature = field(default_factory=Feature)
    formality: Feature = field(default_factory=Feature)
    languages: dict[str, float] = field(default_factory=dict)
    topics: dict[str, float] = field(default_factory=dict)
    facts: dict[str, str] = field(default_factory=dict)
    sessions: int = 0
    drift: float = 0.0
    version: int = 0

    # -- derived views ---------------------------------------------------------------------------

    @property
    def target_words(self) -> int | None:
        """Preferred answer length in words, or None while unknown."""
        if self.length.confidence < SHOW_CONFIDENCE:
            return None
        return max(1, round(math.exp(self.length.value)))

    @property
    def language(self) -> str | None:
        if "language" in self.facts:
            return self.facts["language"]
        if not self.languages:
            return None
        return max(sorted(self.languages), key=lambda k: self.languages[k])

    def top_topics(self, n: int = 3) -> list[str]:
        ranked = sorted(self.topics.items(), key=lambda kv: (-kv[1], kv[0]))
        return [t for t, c in ranked[:n] if c >= 1.5]

    # -- text ------------------------------------------------------------------------------------

    def render(self) -> str:
        """A short natural-language summary; "" while nothing is known."""
        parts: list[str] = []
        if self.target_words is not None:
            n = self.target_words
            kind = "short" if n <= 80 else "detailed" if n >= 200 else "medium-length"
            parts.append(f"{kind} answers (about {n} words)")
        for name, yes, no in (
            ("bullets", "bullet points", "prose rather than bullet points"),
            ("headings", "headings", "no headings"),
            ("code_first", "the code first", "explanation before code"),
            ("tldr", "a TL;DR first", "no TL;DR line"),
            ("formality", "a formal tone", "a casual, friendly tone"),
        ):
            feat = getattr(self, name)
            if feat.shown():
                parts.append(yes if feat.value > 0 else no)
        sentences = []
        if "name" in self.facts:
            sentences.append(f"Call the user {self.facts['name']}.")
        if parts:
            body = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
            sentences.append(f"The user prefers {body}.")
        lang = self.language
        if lang and lang != "en":
            sentences.append(f"Answer in language '{lang}'.")
        topics = self.top_topics()
        if topics:
            sentences.append(f"Interested in: {', '.join(topics)}.")
        return " ".join(sentences)

    def describe(self, name: str) -> str:
        feat: Feature = getattr(self, name)
        if feat.confidence < SHOW_CONFIDENCE:
            return "unknown"
        if name == "length":
            return f"about {self.target_words} words"
        if abs(feat.value) < SHOW_VALUE:
            return "no clear preference"
        if name == "formality":
            return "formal" if feat.value > 0 else "casual"
        return "wanted" if feat.value > 0 else "not wanted"

    def diff(self, older: Profile | None) -> list[str]:
        """Human-readable changes from ``older`` to this profile."""
        older = older or Profile()
        out = []
        for name in FEATURES:
            a, b = older.describe(name), self.describe(name)
            if a != b:
                out.append(f"{name.replace('_', ' ')}: {a} -> {b}")
        for key in sorted(set(self.facts) | set(older.facts)):
            a, b = older.facts.get(key), self.facts.get(key)
            if a != b:
                out.append(f"{key}: {a or 'unknown'} -> {b or 'forgotten'}")
        new_topics = [t for t in self.top_topics() if t not in older.top_topics()]
        if new_topics:
            out.append(f"new interests: {', '.join(new_topics)}")
        return out

    # -- persistence -----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Profile:
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key in FEATURES:
                kwargs[key] = Feature(**value)
            elif key in ("languages", "topics", "facts", "sessions", "drift", "version"):
                kwargs[key] = value
        return cls(**kwargs)
