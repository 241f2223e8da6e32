"""The user profile: interpretable features, updated per session with decay so it can follow drift.

Each feature keeps a decayed weighted mean of observations: after every session the old evidence is
multiplied by ``DECAY`` and the session's observations are added, so a change of preference overtakes
the old one within a few sessions. A feature's confidence grows with its (decayed) evidence weight.
Values: ``length`` is log(target words); ``bullets``, ``headings``, ``code_first``, ``tldr`` are in
[-1, 1] (dislikes .. likes); ``formality`` is in [-1, 1] (casual .. formal).

A feature *claims* something (``claims()``; ``render()`` states exactly the claims) only when it is
confident and clear. ``profile_update`` lets a feature gain weight from answers the user merely accepted
only after the user expressed it (``Feature.expressed``), so every claim rests on something the user said
or did to an answer.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from asls_mlx.errors import ASLSError

DECAY = 0.6  # per session: evidence three sessions old counts ~20%, so drift is followed in ~3 sessions
CONF_SCALE = 1.5  # evidence weight at which confidence reaches 1 - 1/e (about two clear corrections)
MAX_WEIGHT = 3.0  # confidence 0.86; more would only make an old preference outlive a change (drift) longer
SHOW_CONFIDENCE = 0.3  # below this a feature is not rendered or scored as a preference
SHOW_VALUE = 0.25  # |value| below this is "no clear preference"
SHORT_MAX, LONG_MIN = 80, 200  # target words: "short" up to 80, "detailed" from 200, "medium" between
TOPIC_KEEP = 20  # topics remembered per user
TOPIC_SHOW = 1.5  # decayed count a topic needs: two sessions in a row (1 + 0.6) or one explicit statement
BINARY = ("bullets", "headings", "code_first", "tldr", "formality")
FEATURES = ("length", *BINARY)
LANGUAGE_NAMES = {"fr": "French", "es": "Spanish", "de": "German", "it": "Italian", "pt": "Portuguese",
                  "nl": "Dutch", "en": "English"}
# Every sentence render() can write, addressed to the model (an instruction, never a description of "the
# user": on the embedded model a description was echoed as the answer). quality.py detects an echoed
# profile from these, so this table is the one place the phrases come from.
PHRASES: dict[tuple[str, Any], str] = {
    ("length", "short"): "Keep answers short (about {n} words).",
    ("length", "medium"): "Keep answers to about {n} words.",
    ("length", "long"): "Give detailed answers (about {n} words).",
    ("bullets", True): "Use bullet points.",
    ("bullets", False): "Write in prose, not bullet points.",
    ("headings", True): "Use headings.",
    ("headings", False): "No headings.",
    ("code_first", True): "When answering with code, show the code first.",
    ("code_first", False): "When answering with code, explain before the code.",
    ("tldr", True): "Start with a one-line TL;DR.",
    ("tldr", False): "No TL;DR line.",
    ("formality", "formal"): "Use a formal tone.",
    ("formality", "casual"): "Use a casual, friendly tone.",
    ("language", None): "Answer in {language}.",
    ("name", None): "You are talking with {name}.",
}


def stated_words(n: int) -> int:
    """A length as the profile text states it to the model: to the nearest 5 words above 10. The model cannot
    follow one word more or less, and a text that moved with every session's estimate (24, 23, 26 words) made
    each update decode again the gate answers kept from the last one (``adaptation.gate_memory``)."""
    return n if n <= 10 else 5 * round(n / 5)


@dataclass
class Feature:
    """A decayed weighted mean of observations, with its weight and how many observations it saw.

    ``expressed``: how many of those observations the user expressed (a statement, a correction, an edit
    that changed this feature); acceptance only strengthens a feature that has some.
    """

    value: float = 0.0
    weight: float = 0.0
    evidence: int = 0
    expressed: int = 0

    @property
    def confidence(self) -> float:
        return 1.0 - math.exp(-self.weight / CONF_SCALE)

    def updated(self, observations: list[tuple[float, float]], decay: float = DECAY,
                expressed: bool = True) -> Feature:
        """This feature after one session: old weight decayed, the session's (value, weight) added."""
        w_old = self.weight * decay
        w_new = sum(w for _, w in observations)
        counted = self.expressed + (len(observations) if expressed else 0)
        if w_old + w_new <= 0:
            return Feature(self.value, 0.0, self.evidence, counted)
        value = (self.value * w_old + sum(v * w for v, w in observations)) / (w_old + w_new)
        return Feature(value, min(w_old + w_new, MAX_WEIGHT), self.evidence + len(observations), counted)

    def shown(self) -> bool:
        return self.confidence >= SHOW_CONFIDENCE and abs(self.value) >= SHOW_VALUE


def length_kind(words: int) -> str:
    return "short" if words <= SHORT_MAX else "long" if words >= LONG_MIN else "medium"


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
    # What the user removed ("headings", "name", "topic:rust") and when (unix seconds): evidence from before
    # that moment no longer counts for it; what they express after it does.
    removed: dict[str, float] = field(default_factory=dict)

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
        return [t for t, c in ranked[:n] if c >= TOPIC_SHOW]

    def claims(self) -> dict[str, Any]:
        """What this profile asserts about the user's style, in profile terms; render() states exactly this.

        length: "short" | "medium" | "long"; bullets, headings, code_first, tldr: True (wanted) or False
        (not wanted); formality: "formal" | "casual"; language: a code other than English.
        """
        out: dict[str, Any] = {}
        if self.target_words is not None:
            out["length"] = length_kind(self.target_words)
        for name in BINARY:
            feat: Feature = getattr(self, name)
            if feat.shown():
                if name == "formality":
                    out[name] = "formal" if feat.value > 0 else "casual"
                else:
                    out[name] = feat.value > 0
        lang = self.language
        if lang and lang != "en":
            out["language"] = lang
        return out

    # -- text ------------------------------------------------------------------------------------

    def render(self) -> str:
        """Instructions for the model from the claims only; "" while nothing is known.

        Topics stay out: they do not change what a right answer is, and the embedded model echoed the
        "Interested in: ..." line into answers. The name goes in only because the user stated it.
        """
        sentences: list[str] = []
        if "name" in self.facts:
            sentences.append(PHRASES[("name", None)].format(name=self.facts["name"]))
        for name, value in self.claims().items():
            if name == "language":
                sentences.append(PHRASES[("language", None)].format(
                    language=LANGUAGE_NAMES.get(value, value)))
            else:
                n = stated_words(self.target_words) if name == "length" else None
                sentences.append(PHRASES[(name, value)].format(n=n))
        return " ".join(sentences)

    def describe(self, name: str) -> str:
        claim = self.claims().get(name)
        if name == "length":
            return "unknown" if claim is None else f"about {self.target_words} words"
        feat: Feature = getattr(self, name)
        if feat.confidence < SHOW_CONFIDENCE:
            return "unknown"
        if claim is None:
            return "no clear preference"
        if name == "formality":
            return claim
        return "wanted" if claim else "not wanted"

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

    def feature_key(self, name: str) -> str:
        """The profile's key for what a user calls ``name`` ("code first" -> "code_first", "tone" ->
        "formality", a remembered topic -> "topic:<word>"); ASLSError when the profile has no such thing."""
        key = "_".join(str(name).strip().lower().replace("-", " ").split())
        key = {"tone": "formality", "tl;dr": "tldr", "code": "code_first"}.get(key, key)
        if key in FEATURES or key in ("name", "language"):
            return key
        if key.startswith("topic:"):
            key = key[len("topic:"):]
        if key in self.topics:
            return f"topic:{key}"
        known = ", ".join([*FEATURES, "name", "language", *self.top_topics(10)])
        raise ASLSError(f"the profile has no feature {name!r}; it knows: {known}")

    def without(self, key: str, at: float) -> Profile:
        """A copy with ``key`` (see :meth:`feature_key`) removed at time ``at``: the feature starts over
        from nothing and evidence from before ``at`` no longer counts for it."""
        out = Profile.from_dict(self.to_dict())
        out.version = self.version
        if key in FEATURES:
            setattr(out, key, Feature())
        elif key == "language":
            out.facts.pop("language", None)
            out.languages = {}
        elif key == "name":
            out.facts.pop("name", None)
        else:
            out.topics.pop(key.removeprefix("topic:"), None)
        out.removed = {**self.removed, key: at}
        return out

    def _repr_markdown_(self) -> str:
        """Jupyter: a table of what the profile says, how sure it is, and on how much evidence."""
        rows = ["| feature | says | confidence | evidence |", "|---|---|---|---|"]
        for name in FEATURES:
            feat: Feature = getattr(self, name)
            if feat.weight > 0:
                rows.append(f"| {name} | {self.describe(name)} | {feat.confidence:.2f} | "
                            f"{feat.expressed} expressed, {max(feat.evidence - feat.expressed, 0)} supporting |")
        for key in sorted(self.facts):
            rows.append(f"| {key} | {self.facts[key]} | stated | your words |")
        head = f"**Profile** (version {self.version}, {self.sessions} sessions)"
        if len(rows) == 2 and not self.facts:
            return head + ": nothing learned yet — chat and react to answers."
        topics = self.top_topics(5)
        tail = f"\n\nInterests: {', '.join(topics)}" if topics else ""
        rendered = self.render()
        prompt = f"\n\nIn the system prompt: _{rendered}_" if rendered else ""
        return head + "\n\n" + "\n".join(rows) + tail + prompt

    # -- persistence -----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Profile:
        """A profile from its snapshot. Snapshots from before ``expressed`` load with 0: their features may
        come from acceptance alone, so acceptance no longer strengthens them and they fade within about
        three sessions unless the user expresses them."""
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key in FEATURES:
                kwargs[key] = Feature(**value)
            elif key in ("languages", "topics", "facts", "sessions", "drift", "version", "removed"):
                kwargs[key] = value
        return cls(**kwargs)
