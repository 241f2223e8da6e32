"""Feedback signals: correction follow-ups, explicit statements, acceptance, and recording them.

``classify_followup`` is a rule-based classifier (English) for a user message that asks to change the
previous answer. Rules fire only on request-like phrasing ("make it shorter", "too long", "shorter
please") so a content question that merely contains a trigger word ("why are days longer in summer?")
is not a correction; and the longer the message, the less sure we are (it may be a new question).
Correction kinds: shorter, longer, bullets, prose, headings, no_headings, formal, casual, code_first, tldr,
rephrase. A negated request ("no bullet points, write prose") is never the thing it negates.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from asls_mlx.errors import ASLSError
from asls_mlx.profiling.features import word_count

if TYPE_CHECKING:
    from asls_mlx.store import Store

CORRECTION_KINDS = ("shorter", "longer", "bullets", "prose", "headings", "no_headings", "formal", "casual",
                    "code_first", "tldr", "rephrase", "style")
# How sure a rule is on a short message; scaled down for long messages (see _length_factor).
_RULES: list[tuple[str, float, str]] = [
    ("tldr", 0.9, r"\b(?:tl;?\s?dr|summary|conclusion|bottom line|the answer) (?:first|up front|at the top)\b"
                  r"|\b(?:start|lead|begin|open) with (?:a |the )?(?:tl;?\s?dr|summary|conclusion|short answer)"),
    ("code_first", 0.9, r"\b(?:give|show) me (?:just )?the code(?: first)?\b|\bcode first\b|\bjust the code\b"
                        r"|\bstart with (?:the )?code\b|\bcode only\b|\bskip the explanation\b"),
    ("shorter", 0.9, r"\btoo (?:long|verbose|wordy|much text)\b|\b(?:make|keep) it (?:shorter|short|brief|"
                     r"concise|snappier)\b|^\W*(?:shorter|briefer|more concise|less verbose|be brief|"
                     r"more brief)\b|\b(?:shorter|more concise|briefer) (?:please|pls|answer|version|one)\b"
                     r"|\bless (?:verbose|detail|text|words|wordy)\b|\b(?:in )?(?:one|a single|two|a few) "
                     r"(?:sentence|line)s?(?: please| only)?\W*$|\btl;?\s?dr\W*$|^\W*summari[sz]e(?: it| that)?\W*$"),
    ("longer", 0.85, r"\b(?:more (?:detail|details|depth|thorough|examples)|too (?:short|brief|terse))\b"
                     r"|\b(?:make it|be) (?:longer|more detailed)\b|^\W*(?:longer|elaborate|expand|go deeper)\b"
                     r"|\belaborate(?: on (?:that|this|it))?\W*$|\b(?:longer|more detailed) (?:please|answer|version)\b"
                     r"|\bexplain (?:more|in more detail|further)\b|\bin more (?:detail|depth)\b"),
    ("bullets", 0.9, r"\bbullet (?:points?|list|form)\b|\bbullet(?:s|ed)\b|\b(?:use|as|in|make it) (?:a )?(?:numbered )?list\b"
                     r"|\blist form\b|\bpoint form\b"),
    ("prose", 0.9, r"\b(?:no|without|fewer|stop using|don't use|do not use) (?:the )?(?:bullet|bullets|lists?)\b"
                   r"|\b(?:in|as) (?:plain )?(?:prose|paragraphs)\b|\bnot (?:as |in )?(?:a )?list\b"),
    ("headings", 0.85, r"\b(?:use|add|with|include) (?:some )?(?:headings|headers|section titles)\b"),
    ("no_headings", 0.85, r"\b(?:no|without|drop the|remove the|stop using|don't use) (?:the )?(?:headings|headers)\b"),
    ("formal", 0.85, r"\bmore (?:formal|professional|polite)\b|\btoo (?:casual|informal|chatty|familiar)\b"
                     r"|\bless (?:casual|informal|chatty)\b|\b(?:be|sound) (?:formal|professional)\b"),
    ("casual", 0.85, r"\btoo (?:formal|stiff|stuffy|robotic)\b|\bless (?:formal|stiff|robotic)\b"
                     r"|\bmore (?:casual|relaxed|friendly|conversational|informal)\b|\bfriendlier\b"),
    # A request about the answer's form that no profile feature states (spelling, a closing question, an opening
    # label): still a correction of the previous answer, so its answer-after-correction pair is mined.
    ("style", 0.8, r"\b(?:use|in|with|write in) (?:british|american|uk|us) (?:english|spelling)\b"
                   r"|\b(?:end|finish|close) (?:it |each answer |your answers? )?with (?:a |one )?(?:short )?(?:follow[- ]?up )?question\b"
                   r"|\b(?:start|begin|open) (?:it |each answer |your answers? )?with ['\"]?in short\b"),
    ("rephrase", 0.8, r"^\W*(?:no|nope|wrong)\b[\W]*(?:i meant|that'?s not|not what|you misunderstood)"
                      r"|^\W*(?:no,? )?i meant\b|\bthat'?s not what i (?:meant|asked|wanted)\b"
                      r"|\bnot what i (?:meant|asked|wanted)\b|\byou misunderstood\b|^\W*(?:try again|rephrase)\b"),
]
_COMPILED = [(kind, conf, re.compile(rx, re.IGNORECASE)) for kind, conf, rx in _RULES]
MIN_CONFIDENCE = 0.35  # below this a match is more likely a new question than a correction


@dataclass(frozen=True)
class Correction:
    """A follow-up that asks to change the previous answer."""

    kind: str
    confidence: float
    text: str


@dataclass(frozen=True)
class Statement:
    """An explicit statement about the user or their preferences ("call me Sam")."""

    feature: str  # length (short | long | a number of words) | bullets | formality | code_first | tldr | headings
    #                | language | name | topic
    value: Any
    confidence: float
    text: str


def _length_factor(n_words: int) -> float:
    # A correction is usually a few words. A long message is more likely a new request.
    if n_words <= 10:
        return 1.0
    if n_words <= 20:
        return 0.7
    return 0.4


def corrections(text: str) -> list[Correction]:
    """Every correction kind the message asks for ("shorter and in bullets" gives two), strongest first."""
    if not isinstance(text, str) or not text.strip():
        return []
    norm = text.replace("’", "'").strip()
    factor = _length_factor(word_count(norm))
    found = [Correction(kind, round(conf * factor, 3), text)
             for kind, conf, rx in _COMPILED if rx.search(norm)]
    found = [c for c in found if c.confidence >= MIN_CONFIDENCE]
    kinds = {c.kind for c in found}
    for negated, positive in (("prose", "bullets"), ("no_headings", "headings")):
        if negated in kinds:  # "no bullet points" also matches the bullets rule
            found = [c for c in found if c.kind != positive]
    return sorted(found, key=lambda c: -c.confidence)


def classify_followup(text: str) -> Correction | None:
    """The main correction a follow-up message asks for, or None if it is not a correction."""
    found = corrections(text)
    return found[0] if found else None


_LANGS = {"english": "en", "french": "fr", "spanish": "es", "german": "de", "italian": "it",
          "portuguese": "pt", "dutch": "nl"}
_STATEMENTS: list[tuple[str, Any, str]] = [
    ("length", "short", r"\bi (?:prefer|like|want|need) (?:short|shorter|brief|concise|to-the-point) "
                        r"(?:answers|replies|responses)\b|\bkeep (?:your )?(?:answers|replies) short\b"),
    ("length", "long", r"\bi (?:prefer|like|want) (?:long|longer|detailed|thorough|in-depth) "
                       r"(?:answers|replies|responses|explanations)\b"),
    ("bullets", True, r"\bi (?:prefer|like|love|want) (?:bullet points|bullets|lists|bulleted)"),
    ("bullets", False, r"\bi (?:don't|do not) (?:like|want) (?:bullet points|bullets|lists)\b|\bno bullet"),
    ("headings", True, r"\bi (?:prefer|like|want) (?:answers with )?(?:headings|headers|section titles)\b"),
    ("headings", False, r"\bi (?:don't|do not) (?:like|want) (?:headings|headers)\b"),
    ("formality", "formal", r"\bi (?:prefer|like|want) (?:a )?(?:formal|professional) (?:tone|style|answers)?"),
    ("formality", "casual", r"\bi (?:prefer|like|want) (?:a )?(?:casual|relaxed|informal|friendly) "
                            r"(?:tone|style|answers)?"),
    ("code_first", True, r"\bi (?:prefer|like|want) (?:the )?code first\b|\balways (?:show|give) (?:me )?"
                         r"(?:the )?code first\b"),
    ("tldr", True, r"\bi (?:prefer|like|want) (?:a )?(?:tl;?\s?dr|summary) (?:first|at the top|up front)\b"
                   r"|\balways start with (?:a )?(?:tl;?\s?dr|summary)\b"),
]
_STATEMENTS_RX = [(f, v, re.compile(rx, re.IGNORECASE)) for f, v, rx in _STATEMENTS]
_NAME = re.compile(r"\b(?:call me|my name is|i'm called|i am called)\s+([A-Z][\w'-]{0,30})", re.IGNORECASE)
_LANG = re.compile(r"\b(?:answer|reply|respond|write|speak) (?:to me )?in (" + "|".join(_LANGS) + r")\b",
                   re.IGNORECASE)
_LENGTH_WORDS = re.compile(r"\b(?:keep|make|limit) (?:your |the |all |my )?(?:answers|replies|responses) "
                           r"(?:to |under |below |within |at most |shorter than |no longer than )?(?:about |around )?"
                           r"(\d{1,4}) words\b", re.IGNORECASE)
_TOPIC = re.compile(r"\bi(?:'m| am) (?:really )?(?:interested in|into|learning|studying)\s+([a-z][\w+#-]{2,30})",
                    re.IGNORECASE)


def detect_statements(text: str) -> list[Statement]:
    """Explicit statements in a user message: preferences, name, language, interests."""
    if not isinstance(text, str) or not text.strip():
        return []
    norm = text.replace("’", "'")
    out = [Statement(f, v, 0.95, text) for f, v, rx in _STATEMENTS_RX if rx.search(norm)]
    if m := _LENGTH_WORDS.search(norm):  # "keep answers under 30 words": a number beats "short"
        out = [s for s in out if s.feature != "length"]
        out.append(Statement("length", int(m.group(1)), 0.95, text))
    if m := _NAME.search(norm):
        out.append(Statement("name", m.group(1).strip(".,!"), 0.95, text))
    if m := _LANG.search(norm):
        out.append(Statement("language", _LANGS[m.group(1).lower()], 0.9, text))
    for m in _TOPIC.finditer(norm):
        out.append(Statement("topic", m.group(1).lower(), 0.7, text))
    return out


DEFAULT_CONFIDENCE = {"thumbs_up": 1.0, "thumbs_down": 1.0, "regenerate": 0.8, "edit": 1.0,
                      "correction": 0.8, "acceptance": 0.5, "statement": 0.95}


def record_feedback(store: Store, message_id: int, kind: str, payload: dict[str, Any] | None = None,
                    confidence: float | None = None, text: str | None = None) -> int:
    """Record one feedback event the way every caller should (CLI, Python API, notebooks).

    - ``edit``: ``text`` is the user's corrected answer (stored as the message's edit).
    - ``regenerate``: ``text`` is the new answer; returns the *new message id* (it becomes active).
    - other kinds: returns the feedback event id.
    """
    if kind == "edit":
        if text is None:
            raise ASLSError("an edit needs the edited text")
        store.set_edit(message_id, text)
        return store.feedback(message_id=message_id)[-1].id
    if kind == "regenerate":
        if text is None:
            raise ASLSError("a regenerate needs the new answer's text")
        return store.add_alternative(message_id, text)
    conf = DEFAULT_CONFIDENCE.get(kind, 1.0) if confidence is None else confidence
    return store.add_feedback(message_id, kind, payload or {}, conf)


NEGATIVE = ("thumbs_down", "regenerate", "edit", "correction")


def implied_events(conversation: list, existing: set[tuple[int, str]]) -> list[tuple[int, str, dict, float]]:
    """The (message id, kind, payload, confidence) events a conversation implies and ``existing`` lacks.

    Pure: :func:`infer_session_signals` stores them when a session ends, and the profile shown during a
    session (``profiling.profile_evidence.live_profile``) reads them without storing anything.
    - correction: a user message that ``classify_followup`` flags, on the answer just before it;
    - statement: on the user message that states it;
    - acceptance: an answer with no negative feedback, followed by a user message that is not a
      correction (confidence 0.6), or the session's last answer (0.3: silence is weak evidence).
    """
    seen = set(existing)
    out: list[tuple[int, str, dict, float]] = []

    def add(mid: int, kind: str, payload: dict, conf: float) -> None:
        if (mid, kind) not in seen:
            out.append((mid, kind, payload, conf))
            seen.add((mid, kind))

    last_answer = None
    for msg in conversation:
        if msg.role == "assistant":
            last_answer = msg
            continue
        if msg.role != "user":
            continue
        stmts = detect_statements(msg.content)
        if stmts:
            add(msg.id, "statement", {"statements": [
                {"feature": s.feature, "value": s.value, "confidence": s.confidence} for s in stmts
            ]}, max(s.confidence for s in stmts))
        if last_answer is not None:
            found = corrections(msg.content)
            if found:
                add(last_answer.id, "correction", {
                    "kinds": [c.kind for c in found], "kind": found[0].kind,
                    "followup_message_id": msg.id}, found[0].confidence)
            elif not any(k in NEGATIVE for (m, k) in seen if m == last_answer.id):
                add(last_answer.id, "acceptance", {"moved_on": True}, 0.6)
        last_answer = None
    if last_answer is not None and not any(k in NEGATIVE for (m, k) in seen if m == last_answer.id):
        add(last_answer.id, "acceptance", {"moved_on": False}, 0.3)
    return out


def infer_session_signals(store: Store, session_id: int) -> int:
    """Store the correction, statement and acceptance events a session implies (:func:`implied_events`);
    returns how many. Idempotent: an event already stored (same kind, same message) is not added twice."""
    conv = store.conversation(session_id)
    with store.transaction():
        existing = {(f.message_id, f.kind) for f in store.feedback(session_id=session_id)}
        events = implied_events(conv, existing)
        for mid, kind, payload, conf in events:
            store.add_feedback(mid, kind, payload, conf)
    return len(events)
