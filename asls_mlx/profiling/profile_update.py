"""From a session's messages and feedback events to profile evidence, and the per-session update.

Evidence rules (what may put a claim into the profile and the system prompt):
- *Expressed* evidence creates and moves a feature: an explicit statement (weight 2.0), an edit that
  changed that feature (1.0), a correction (its confidence, ~0.9). A correction "shorter" targets a fraction
  of the corrected answer's length (what the user asked for), never the length of the answer that followed.
- An edit says what it changed on purpose. Features it
  *added* (bullets, a TL;DR, code moved first), the length when it cut more than 15% of the words (or grew by
  half with nothing added), and the tone when it reworded without cutting. A feature it *removed* counts only when it added nothing and cut little: the headings a
  truncation or a reformat into bullets drops are a side effect, not a wish. A *replacement* (under
  ``EDIT_KEPT`` of its content words come from the answer: a wrong answer rewritten as the right fact, or a
  text made from another answer) differs in everything, wanted or not: only the structure the user typed
  (bullets, a TL;DR, code first) counts, not its length or tone.
- *Support* only strengthens: an answer accepted (moved on, 0.3 x confidence) or liked (thumbs up, 0.6)
  that agrees with a feature the profile already claims from expressed evidence, or one disliked (thumbs down
  0.3, discarded by regenerate 0.2) that goes against it, adds weight at the feature's value. It never
  creates a feature nor moves its value. What the user made, liked or accepted and that goes against a claim
  takes weight off it (an edit's result, 1.0; a thumbs-up, 0.6; moving on from the first answer to a new
  prompt, 0.3 x confidence): a user whose own edits stay long no longer wants short answers, whatever they
  said sessions ago. Moving on after a correction or a regenerate takes nothing: the user gave up on it.
- Topics: content words of the user's prompts (never instruction or function words), once per session; a
  topic shows after two sessions in a row or one explicit "I'm interested in X".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from asls_mlx.profiling.features import STOPWORDS, AnswerFeatures, answer_features, words
from asls_mlx.profiling.profile import (
    BINARY, DECAY, FEATURES, MAX_WEIGHT, SHOW_CONFIDENCE, Feature, Profile, length_kind,
)
from asls_mlx.profiling.unfinished import drop_unfinished
from asls_mlx.profiling.profile_topics import (  # noqa: F401 (INSTRUCTION_WORDS, topic_words: named here before the split)
    INSTRUCTION_WORDS, prompt_language, prompts_after, session_topics, topic_words,
)
from asls_mlx.profiling.signals import corrections

if TYPE_CHECKING:
    from asls_mlx.store import Store, User
    from asls_mlx.store.records import Feedback, Message

Obs = dict[str, list[tuple[float, float]]]
Support = tuple[AnswerFeatures, float, bool, bool]
W_STATEMENT, W_EDIT, W_UP, W_ACCEPT, W_DOWN, W_DISCARD = 2.0, 1.0, 0.6, 0.3, 0.3, 0.2
SHORT_WORDS, LONG_WORDS = 40, 250  # what "short answers" / "detailed answers" mean in words
SHORTER_FRACTION = 0.5  # "shorter": about half the corrected answer (repeated corrections compound)
CUT_RATIO, GROW_RATIO = 0.85, 1.5  # an edit keeping < 85% of the words is a cut (reformatting keeps ~100%)
EDIT_KEPT = 0.8  # simulated edits keep >= 87% of their words; a text made from another answer 19-70%
LENGTH_NEAR, LENGTH_FAR = 1.4, 2.0  # an answer within 1.4x of the target fits it; beyond 2x goes against it
_CORRECTION_EFFECT = {"bullets": ("bullets", 1.0), "prose": ("bullets", -1.0), "formal": ("formality", 1.0),
                      "casual": ("formality", -1.0), "code_first": ("code_first", 1.0),
                      "tldr": ("tldr", 1.0), "headings": ("headings", 1.0), "no_headings": ("headings", -1.0)}


@dataclass(frozen=True)
class Evidence:
    """One expressed observation behind a feature: what the user said or did, when, and what it weighs.

    kind: statement | correction | edit; value: +1/-1 (or log words for length); text: the user's words
    (the statement, the correction's follow-up) or their edited answer.
    """

    feature: str
    kind: str
    value: float
    weight: float
    message_id: int
    session_id: int
    text: str
    at: float


@dataclass
class SessionEvidence:
    """One session's evidence: expressed observations, support, the user's prompts, stated facts/topics.

    support: (answer features, signed weight, adds, takes): + the user liked, accepted or made the answer,
    - disliked it; ``adds``: agreeing with a claim strengthens it; ``takes``: going against a claim weakens it.
    sources: the :class:`Evidence` behind each entry of ``expressed`` (same order).
    """

    expressed: Obs
    support: list[Support] = field(default_factory=list)
    prompts: list[str] = field(default_factory=list)
    facts: dict[str, str] = field(default_factory=dict)
    topics: list[str] = field(default_factory=list)
    sources: dict[str, list[Evidence]] = field(default_factory=dict)
    prompt_times: list[float] = field(default_factory=list)


def _log_words(n: float) -> float:
    return math.log(max(n, 1.0))


def _kept(original: str, edited: str) -> float:
    """The share of the edited text's distinct content words that occur in the original. Distinct: a TL;DR
    repeats the answer's first sentence. Content words: rewording "it's" as "it is" keeps the text."""
    before = set(words(original))
    after = {w for w in words(edited) if w not in STOPWORDS}
    return len(after & before) / len(after) if after else 1.0


SUMMARY_LABELS = frozenset({"in short", "tl;dr", "tldr", "summary", "bottom line", "short answer"})


def _edit(orig: AnswerFeatures, new: AnswerFeatures, obs: Obs, replaced: bool = False) -> None:
    """What an edit changed on purpose (see the module doc); of a replacement, only the structure it added."""
    # A summary line kept under its label and redone ("In short:" and two sentences -> one) says nothing about
    # length: the rest of the answer does (an in-short user's redo of a learnt two-sentence summary read as a
    # 30% cut, and the profile claimed short answers).
    resummarised = orig.label == new.label and new.label in SUMMARY_LABELS
    body = (lambda f: f.words - f.label_line_words) if resummarised else (lambda f: f.words)
    ratio = (body(new) + 1) / (body(orig) + 1)
    cut = ratio < CUT_RATIO
    pairs = (("bullets", orig.bullets, new.bullets), ("headings", orig.headings, new.headings),
             ("code_first", orig.code_first, new.code_first), ("tldr", orig.tldr_first, new.tldr_first))
    added = [name for name, a, b in pairs if b and not a]
    for name in added:
        obs[name].append((1.0, W_EDIT))
    if replaced:
        return
    # A new summary line on top ("In short: ...") moves the rest down and may relabel a TL;DR: nothing against
    # what was first before, and its own sentence says nothing about tone or length.
    relabelled = new.label in SUMMARY_LABELS and new.label != orig.label
    if not added and not cut and not relabelled:
        for name, a, b in pairs:
            if a and not b:
                obs[name].append((-1.0, W_EDIT))
    if cut or (ratio > GROW_RATIO and not added and not relabelled):
        obs["length"].append((_log_words(new.words), W_EDIT))
    if not cut and not relabelled and abs(new.formality - orig.formality) >= 0.2:  # e.g. contractions expanded -> more formal
        obs["formality"].append((1.0 if new.formality > orig.formality else -1.0, W_EDIT))


def _correction(kinds: list[str], feats: AnswerFeatures, conf: float, obs: Obs) -> None:
    for kind in kinds:
        if kind == "shorter":
            obs["length"].append((_log_words(SHORTER_FRACTION * feats.words), conf))
        elif kind == "longer":
            obs["length"].append((_log_words(max(1.6 * feats.words, feats.words + 40)), conf))
        elif kind in _CORRECTION_EFFECT:
            name, value = _CORRECTION_EFFECT[kind]
            obs[name].append((value, conf))


def _statements(statements: list[dict], ev: SessionEvidence) -> None:
    for st in statements:
        feature, value = st.get("feature"), st.get("value")
        if feature == "length":
            words_ = value if isinstance(value, int) else SHORT_WORDS if value == "short" else LONG_WORDS
            ev.expressed["length"].append((_log_words(words_), W_STATEMENT))
        elif feature == "formality":
            ev.expressed["formality"].append((1.0 if value == "formal" else -1.0, W_STATEMENT))
        elif feature in BINARY:
            ev.expressed[feature].append((1.0 if value else -1.0, W_STATEMENT))
        elif feature in ("name", "language"):
            ev.facts[feature] = str(value)
        elif feature == "topic":
            ev.topics.append(str(value))


_SUPPORT = {"thumbs_up": W_UP, "acceptance": W_ACCEPT, "thumbs_down": -W_DOWN, "regenerate": -W_DISCARD}


def _first_answer(msg: Message, msgs: dict[int, Message]) -> bool:
    """The first answer to a new prompt: neither a regeneration nor the answer to a correction (after
    which moving on says the user gave up on that prompt, not that its answer suits them)."""
    if any(m.superseded_by == msg.id for m in msgs.values()):
        return False
    parent = msgs.get(msg.parent_id)
    return parent is None or not corrections(parent.content)


def _source(fb: Feedback, msg: Message, msgs: dict[int, Message]) -> tuple[str, float]:
    """The user's words behind an expressed event, and when they wrote them (an inferred event is stored
    when the session ends, after the words it reads)."""
    if fb.kind == "correction":
        follow = msgs.get(fb.payload.get("followup_message_id"))
        return (follow.content, follow.created_at) if follow else (msg.content, fb.created_at)
    if fb.kind == "edit":
        return msg.edited_content or "", fb.created_at
    return msg.content, msg.created_at


def session_evidence(store: Store, session_id: int, feedback: list[Feedback] | None = None,
                     removed: dict[str, float] | None = None) -> SessionEvidence:
    """The evidence of one session (see the module doc for what counts as what).

    ``feedback``: the session's events (default: those stored; the live profile adds the ones the session
    implies so far). ``removed``: {key: time} the user removed (``Profile.removed``): what they said before
    that time no longer counts for it."""
    ev = SessionEvidence({name: [] for name in FEATURES}, sources={name: [] for name in FEATURES})
    msgs = {m.id: m for m in store.messages(session_id)}
    removed = removed or {}
    for fb in store.feedback(session_id=session_id) if feedback is None else feedback:
        msg = msgs.get(fb.message_id)
        if msg is None:
            continue
        text, at = _source(fb, msg, msgs)
        before = {name: len(obs) for name, obs in ev.expressed.items()}
        if fb.kind == "correction":
            kinds = fb.payload.get("kinds") or [fb.payload.get("kind")]
            _correction(kinds, answer_features(msg.content), fb.confidence, ev.expressed)
        elif fb.kind == "edit" and msg.edited_content is not None:
            edited = answer_features(msg.edited_content)
            replaced = _kept(msg.content, msg.edited_content) < EDIT_KEPT
            # against what the user saw as the answer: deleting the end the token budget cut off is no wish for brevity
            _edit(answer_features(drop_unfinished(msg.content)), edited, ev.expressed, replaced)
            ev.support.append((edited, W_EDIT, False, True))  # what it expressed is counted above
        elif fb.kind == "statement":
            stated = [st for st in fb.payload.get("statements", []) if at > removed.get(_statement_key(st), float("-inf"))]
            _statements(stated, ev)
            for st in stated:
                if st.get("feature") in ("name", "language", "topic"):
                    key = _statement_key(st)
                    ev.sources.setdefault(key, []).append(Evidence(key, "statement", 0.0, W_STATEMENT, msg.id, session_id, text, at))
        elif fb.kind in _SUPPORT:
            text = msg.content if fb.kind == "regenerate" else msg.text
            takes = fb.kind == "thumbs_up" or (fb.kind == "acceptance" and _first_answer(msg, msgs))
            ev.support.append((answer_features(text), _SUPPORT[fb.kind] * fb.confidence, True, takes))
        for name, obs in ev.expressed.items():
            ev.sources[name] += [Evidence(name, fb.kind, v, w, msg.id, session_id, text, at) for v, w in obs[before[name]:]]
    ev.prompts = [m.content for m in msgs.values() if m.role == "user"]
    ev.prompt_times = [m.created_at for m in msgs.values() if m.role == "user"]
    _drop_removed(ev, removed)
    return ev


def _statement_key(st: dict) -> str:
    feature = st.get("feature")
    return f"topic:{st.get('value')}" if feature == "topic" else str(feature)


def _drop_removed(ev: SessionEvidence, removed: dict[str, float]) -> None:
    """Keep only the observations made after the user removed their feature."""
    for name in FEATURES:
        if name in removed:
            kept = [(o, src) for o, src in zip(ev.expressed[name], ev.sources[name]) if src.at > removed[name]]
            ev.expressed[name] = [o for o, _ in kept]
            ev.sources[name] = [src for _, src in kept]


def _agrees(name: str, feat: Feature, f: AnswerFeatures) -> bool | None:
    """Whether an answer fits the claim of ``feat`` (None: the answer says nothing about it)."""
    if name == "length":  # a claim of short answers is not against shorter ones, nor one of long against longer
        ratio = f.words / max(math.exp(feat.value), 1.0)
        kind = length_kind(round(math.exp(feat.value)))
        low, high = (0.0 if kind == "short" else 1 / LENGTH_NEAR), (math.inf if kind == "long" else LENGTH_NEAR)
        if low <= ratio <= high:
            return True
        return False if ratio > LENGTH_FAR or ratio < 1 / LENGTH_FAR else None
    if name == "formality":  # "formal" is mostly "not casual": a plain answer fits it, and says nothing of casual
        if feat.value > 0:
            return True if f.formality >= 0 else False if f.formality <= -0.3 else None
        return True if f.formality <= -0.3 else False if f.formality >= 0.3 else None
    if name == "code_first" and not f.code:
        return None
    present = {"bullets": f.bullets, "headings": f.headings, "code_first": f.code_first,
               "tldr": f.tldr_first}[name]
    return present == (feat.value > 0)


def _claimed(name: str, feat: Feature) -> bool:
    return feat.confidence >= SHOW_CONFIDENCE if name == "length" else feat.shown()


def _supported(prev: Profile, updated: dict[str, Feature], support: list[Support]) -> dict[str, Feature]:
    """The features strengthened by the answers that agree with their claims; none created, none moved.

    A claim counts when it has expressed evidence and was served this session (``prev``, in its system
    prompt) or expressed in it. A disliked answer supports a claim only when that is the one claim it goes
    against: a long prose answer thumbed down by a user with "short" and "bullets" claims says which
    answer was wrong, not which of the two made it wrong.
    """
    served = [name for name, feat in updated.items()
              if feat.expressed > 0 and (_claimed(name, getattr(prev, name)) or _claimed(name, feat))]
    add = dict.fromkeys(served, 0.0)
    take = dict.fromkeys(served, 0.0)
    count = dict.fromkeys(served, 0)
    for f, w, adds, takes in support:
        verdicts = {name: _agrees(name, updated[name], f) for name in served}
        against = [name for name, v in verdicts.items() if v is False]
        for name, agrees in verdicts.items():
            if agrees is None:
                continue
            if adds and (agrees if w > 0 else against == [name]):
                add[name] += abs(w)
                count[name] += 1
            elif takes and w > 0 and not agrees:  # made, liked or kept an answer against the claim
                take[name] += w
    out = dict(updated)
    for name in served:
        feat = updated[name]
        out[name] = Feature(feat.value, min(max(0.0, feat.weight + add[name] - take[name]), MAX_WEIGHT),
                            feat.evidence + count[name], feat.expressed)
    return out


def apply_session(prev: Profile, ev: SessionEvidence, decay: float = DECAY) -> Profile:
    """The profile after one session's evidence (pure; no database). ``decay=1``: the session has not
    ended yet (the live profile), so old evidence keeps its weight until it does."""
    new = Profile(facts={**prev.facts, **ev.facts}, removed=dict(prev.removed))
    drift_parts = []
    updated = {name: getattr(prev, name).updated(ev.expressed[name], decay) for name in FEATURES}
    for name, feat in _supported(prev, updated, ev.support).items():
        setattr(new, name, feat)
    for name in FEATURES:
        old: Feature = getattr(prev, name)
        session = ev.expressed[name]
        w = sum(x for _, x in session)
        if session and old.confidence > 0.2:
            recent = sum(v * x for v, x in session) / w
            scale = math.log(4.0) if name == "length" else 2.0  # 4x length or full flip = total drift
            gap = min(1.0, abs(recent - old.value) / scale)
            drift_parts.append(gap * min(1.0, w) * old.confidence)
    new.drift = round(max(drift_parts, default=0.0), 4)
    lang = prompt_language(prompts_after(ev, prev.removed, "language"))
    new.languages = {k: v * decay for k, v in prev.languages.items()}
    if lang:
        new.languages[lang] = new.languages.get(lang, 0.0) + 1.0
    new.topics = session_topics(prev.topics, ev, prev.removed, decay)
    new.sessions = prev.sessions + (1 if decay != 1 else 0)
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
    new = apply_session(prev, session_evidence(store, session, removed=prev.removed))
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
