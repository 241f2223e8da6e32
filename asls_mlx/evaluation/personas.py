"""Simulated users' hidden preferences: rule checkers, edits toward them, and correction phrases.

A persona is a list of rules. Each rule scores an answer in [0, 1], rewrites an answer toward itself
(the edit a person would make), and has a correction phrase a person would type ("shorter please").
The persona's satisfaction is the mean of its rules' scores over the rules that apply to the prompt,
and **0 whenever the quality guard fails** (empty, looping, refusing, off-topic answers): a degenerate
answer is never a success, however short it is.

Rules (the hidden preferences):
- ``concise``: at most ``CONCISE_WORDS`` words (1.0), linear partial credit down to 0 at twice that. This user
  shortens each item of a list, not the list: cutting "seven things to pack" to its first item (as sentence-by-
  sentence trimming does) taught an adapter to answer such prompts with one item.
- ``bullets``: at least two bullet / numbered lines (1.0); one bullet line 0.3.
- ``formal``: no contractions, no slang, no "!" (1.0); -0.25 per casual marker.
- ``code_first``: coding prompts only: the answer opens with a code block (1.0); has code further down 0.5.
- ``tldr``: the first line starts with "TL;DR" (or "Summary", "In short": ``features.tldr_first``).

Open preferences (``open_rules``; the profile has no feature for them, so only edits and corrections teach
them; ``Rule.profile`` is None):
- ``follow_up``: the answer ends with a one-line follow-up question to the user.
- ``british``: British spelling in the prose (colour, organise, centre); -0.25 per American spelling.
- ``in_short``: the first line is "In short:" and a one-sentence summary ("TL;DR:" does not count).

``STYLE_PERSONAS`` are the personas whose preference the profile can state; ``OPEN_PERSONAS`` those it cannot.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

from asls_mlx.evaluation.open_rules import (
    append_follow_up, has_spelling_variant, prepend_in_short, score_british, score_follow_up, score_in_short,
    to_british,
)
from asls_mlx.profiling.features import (
    BULLET_LINE, CODE_BLOCK, CONTRACTION, SLANG, code_first, has_bullets, has_code, is_coding_prompt, sentences,
    tldr_first, word_count,
)
from asls_mlx.evaluation.trimming import shorten_list_items
from asls_mlx.profiling.unfinished import drop_unfinished
from asls_mlx.profiling.quality import is_acceptable

CONCISE_WORDS = 50  # the paper-style "short answers" user: an answer of at most 50 words
TLDR_WORDS = 20  # a TL;DR line longer than this is not a summary


@dataclass(frozen=True)
class Rule:
    """One checkable preference.

    name: rule id (concise, bullets, formal, code_first, tldr, follow_up, british, in_short).
    score: (prompt, answer) -> [0, 1], without the quality guard (the persona applies it).
    edit: (prompt, answer) -> answer moved toward the rule (a no-op when it already holds).
    correction: what the user types to ask for it.
    applies: (prompt) -> whether the rule has anything to say about answers to this prompt.
    profile: the hidden preference in profile terms, (feature, value) as ``Profile.claims()`` states it
    (``evaluation.profile_truth``); None for a preference the profile has no feature for.
    informative: (prompt, answer) -> whether this answer can show the rule met or broken; None: every answer
    can. An answer without a word that British and American English spell differently satisfies ``british``
    trivially (most of the base model's answers do), so a metric may count only the informative ones.
    """

    name: str
    score: Callable[[str, str], float]
    edit: Callable[[str, str], str]
    correction: str
    applies: Callable[[str], bool] = lambda prompt: True
    profile: tuple[str, Any] | None = None
    informative: Callable[[str, str], bool] | None = None


# -- concise -----------------------------------------------------------------------------------------

def _score_concise(prompt: str, answer: str) -> float:
    n = word_count(answer)
    if n <= CONCISE_WORDS:
        return 1.0
    return max(0.0, 1.0 - (n - CONCISE_WORDS) / CONCISE_WORDS)


def _concise_edit(prompt: str, answer: str) -> str:
    # Any list keeps its items, not only a list asked for by count: trimmed line by line, "There's no one-size-fits-
    # all way to learn a new language. Here are some general tips that can help." kept the lead-in without a tip.
    return shorten_list_items(answer, CONCISE_WORDS)


# -- bullets -----------------------------------------------------------------------------------------

def _score_bullets(prompt: str, answer: str) -> float:
    n = len(BULLET_LINE.findall(answer or ""))
    return 1.0 if n >= 2 else 0.3 if n == 1 else 0.0


def bulletize(answer: str) -> str:
    """One bullet per sentence (code blocks kept as they are); a single sentence is split at its clauses."""
    if has_bullets(answer):
        return answer
    blocks = CODE_BLOCK.findall(answer)
    prose = CODE_BLOCK.sub(" ", answer)
    items = [s.lstrip("-*• ").strip() for s in sentences(prose)]
    items = [s for s in items if word_count(s) > 0]
    if len(items) < 2:
        text = " ".join(items)
        parts = [p.strip() for p in re.split(r"[,;:]\s+|\s+and\s+", text) if word_count(p) > 0]
        if len(parts) < 2:
            w = text.split()
            half = max(len(w) // 2, 1)
            parts = [" ".join(w[:half]), " ".join(w[half:])] if len(w) >= 2 else [text, text]
        items = parts
    out = "\n".join(f"- {s}" for s in items)
    return out + ("\n\n" + "\n\n".join(blocks) if blocks else "")


# -- formal ------------------------------------------------------------------------------------------

_EXPAND = {
    "can't": "cannot", "won't": "will not", "shan't": "shall not", "ain't": "is not", "let's": "let us",
    "i'm": "I am", "it's": "it is", "that's": "that is", "there's": "there is", "what's": "what is",
    "gonna": "going to", "wanna": "want to", "gotta": "have to",
}
_SUFFIX = [(re.compile(r"(\w+)n['’]t\b", re.I), r"\1 not"), (re.compile(r"(\w+)['’]re\b", re.I), r"\1 are"),
           (re.compile(r"(\w+)['’]ll\b", re.I), r"\1 will"), (re.compile(r"(\w+)['’]ve\b", re.I), r"\1 have"),
           (re.compile(r"(\w+)['’]d\b", re.I), r"\1 would")]
_SLANG_REPLACE = {"yeah": "yes", "yep": "yes", "nope": "no", "cool": "good", "awesome": "excellent",
                  "stuff": "things", "kinda": "somewhat", "sorta": "somewhat", "super": "very", "ok": "acceptable",
                  "okay": "acceptable", "btw": "incidentally"}


def _casual_markers(answer: str) -> int:
    return len(CONTRACTION.findall(answer or "")) + len(SLANG.findall(answer or ""))


def _score_formal(prompt: str, answer: str) -> float:
    return max(0.0, 1.0 - 0.25 * _casual_markers(answer))


def _match_case(src: str, repl: str) -> str:
    return repl[0].upper() + repl[1:] if src[:1].isupper() else repl


def formalize(answer: str) -> str:
    """Expand contractions, replace slang, drop exclamation marks."""
    text = (answer or "").replace("’", "'")
    text = re.sub(r"\b(?:" + "|".join(re.escape(k) for k in _EXPAND) + r")\b",
                  lambda m: _match_case(m.group(0), _EXPAND[m.group(0).lower()])
                  if m.group(0).lower() != "i'm" else "I am", text, flags=re.I)
    for rx, repl in _SUFFIX:
        text = rx.sub(repl, text)
    text = re.sub(r"\b(?:" + "|".join(_SLANG_REPLACE) + r")\b",
                  lambda m: _match_case(m.group(0), _SLANG_REPLACE[m.group(0).lower()]), text, flags=re.I)
    text = re.sub(r"\bhey\b[,!]?\s*", "", text, flags=re.I)
    text = re.sub(r"\blol\b\s*", "", text, flags=re.I)
    return text.replace("!", ".")


# -- code first --------------------------------------------------------------------------------------

def _score_code_first(prompt: str, answer: str) -> float:
    return 1.0 if code_first(answer) else 0.5 if has_code(answer) else 0.0


_CODEY = re.compile(r"^\s*(?:def |class |import |from |return |for |while |if |print\(|SELECT |function |const |"
                    r"let |var |\$ |[\w.\[\]]+\s*=|[\w.]+\(.*\)\s*;?\s*$)")


def move_code_first(answer: str) -> str:
    """Put the first code block at the top; without one, fence the code-looking lines (or a stub)."""
    if code_first(answer):
        return answer
    m = CODE_BLOCK.search(answer or "")
    if m:
        block = m.group(0) if m.group(0).rstrip().endswith("```") and len(m.group(0)) > 3 else m.group(0) + "\n```"
        rest = (answer[: m.start()] + answer[m.end():]).strip()
        return block + ("\n\n" + rest if rest else "")
    lines = (answer or "").strip().splitlines()
    code = [ln for ln in lines if _CODEY.match(ln)]
    inline = re.findall(r"`([^`\n]+)`", answer or "")
    body = "\n".join(code) if code else "\n".join(inline) if inline else "# " + (sentences(answer) or ["TODO"])[0]
    rest = "\n".join(ln for ln in lines if ln not in code).strip()
    return f"```\n{body}\n```" + ("\n\n" + rest if rest else "")


# -- TL;DR first -------------------------------------------------------------------------------------

def _score_tldr(prompt: str, answer: str) -> float:
    return 1.0 if tldr_first(answer) else 0.0


def prepend_tldr(answer: str) -> str:
    """Add a "TL;DR:" line made of the first sentence (cut to ``TLDR_WORDS`` words)."""
    if tldr_first(answer):
        return answer
    first = (sentences(CODE_BLOCK.sub(" ", answer or "")) or [""])[0].lstrip("-*•# ").strip()
    w = first.split()
    summary = " ".join(w[:TLDR_WORDS]).rstrip(",;:") + ("" if len(w) <= TLDR_WORDS else ".")
    return f"TL;DR: {summary}\n\n{(answer or '').strip()}"


# -- every persona ------------------------------------------------------------------------------------

RULES = {
    "concise": Rule("concise", _score_concise, _concise_edit, "shorter please",
                    profile=("length", "short")),
    "bullets": Rule("bullets", _score_bullets, lambda p, a: bulletize(a), "use bullet points please",
                    profile=("bullets", True)),
    "formal": Rule("formal", _score_formal, lambda p, a: formalize(a), "please be more formal",
                   profile=("formality", "formal")),
    "code_first": Rule("code_first", _score_code_first, lambda p, a: move_code_first(a), "code first please",
                       applies=is_coding_prompt, profile=("code_first", True)),
    "tldr": Rule("tldr", _score_tldr, lambda p, a: prepend_tldr(a), "start with a TL;DR please",
                 profile=("tldr", True)),
    # Open preferences: profile None (no profile feature states them)
    "follow_up": Rule("follow_up", score_follow_up, append_follow_up, "end with a follow-up question please"),
    "british": Rule("british", score_british, lambda p, a: to_british(a), "please use British spelling",
                    informative=lambda p, a: has_spelling_variant(a)),
    "in_short": Rule("in_short", score_in_short, lambda p, a: prepend_in_short(a),
                     'start with "In short:" and a one-sentence summary please'),
}


@dataclass(frozen=True)
class Persona:
    """A simulated user with hidden preferences.

    name: persona id (``persona-<name>`` is its assistant user name).
    rules: rule names in the order edits apply (structure first, length last).
    drift_at: session (1-based) from which ``drift_rules`` replace ``rules``; None: no drift.
    categories: prompt categories this user asks about (None: all).
    """

    name: str
    rules: tuple[str, ...]
    drift_at: int | None = None
    drift_rules: tuple[str, ...] = ()
    categories: tuple[str, ...] | None = None
    description: str = field(default="", compare=False)

    def active_rules(self, session: int | None = None) -> list[Rule]:
        """The rules in force in ``session`` (1-based; None or 0: the initial ones)."""
        names = self.drift_rules if self.drift_at and session and session >= self.drift_at else self.rules
        return [RULES[n] for n in names]

    def applies(self, prompt: str, session: int | None = None) -> bool:
        return any(r.applies(prompt) for r in self.active_rules(session))

    def rule_scores(self, prompt: str, answer: str, session: int | None = None) -> dict[str, float]:
        return {r.name: r.score(prompt, answer) for r in self.active_rules(session) if r.applies(prompt)}

    def satisfies(self, prompt: str, answer: str, session: int | None = None) -> float:
        """Satisfaction in [0, 1]: mean rule score; 0 if the quality guard fails; 1 if no rule applies."""
        if not is_acceptable(prompt, answer):
            return 0.0
        scores = self.rule_scores(prompt, answer, session)
        return sum(scores.values()) / len(scores) if scores else 1.0

    def informative(self, prompt: str, answer: str, session: int | None = None) -> bool:
        """Whether ``answer`` can show this persona's preference met or broken: some applying rule can tell
        from it (``Rule.informative``). A metric may leave out the answers that cannot."""
        rules = [r for r in self.active_rules(session) if r.applies(prompt)]
        return not rules or any(r.informative is None or r.informative(prompt, answer) for r in rules)

    def satisfied(self, prompt: str, answer: str, session: int | None = None) -> bool:
        return self.satisfies(prompt, answer, session) >= 1.0

    def edit(self, prompt: str, answer: str, session: int | None = None) -> str:
        """The answer moved toward this persona's preferences (unchanged if already satisfied)."""
        if self.satisfied(prompt, answer, session):
            return answer
        text = drop_unfinished(answer or "")
        for rule in self.active_rules(session):
            if rule.applies(prompt) and rule.score(prompt, text) < 1.0:
                text = rule.edit(prompt, text)
        return text

    def correction(self, prompt: str, answer: str, session: int | None = None) -> str:
        """The follow-up the user types for the worst-violated rule ("shorter please")."""
        scores = self.rule_scores(prompt, answer, session)
        if not scores:
            return "please try again"
        worst = min(scores, key=lambda k: scores[k])
        return RULES[worst].correction


PERSONAS: dict[str, Persona] = {p.name: p for p in (
    Persona("concise", ("concise",), description=f"answers of at most {CONCISE_WORDS} words"),
    Persona("bullets", ("bullets",), description="bullet-point answers"),
    Persona("formal", ("formal",), description="formal tone: no contractions, slang or exclamations"),
    Persona("code_first", ("code_first",), categories=("coding",),
            description="coding answers that open with a code block"),
    Persona("tldr", ("tldr",), description='answers whose first line is "TL;DR: ..."'),
    Persona("concise_bullets", ("bullets", "concise"), description="short bullet lists (both rules)"),
    Persona("drift", ("concise",), drift_at=3, drift_rules=("bullets",),
            description="concise in sessions 1-2, then bullet lists from session 3 on"),
    Persona("follow_up", ("follow_up",), description="answers that end with a one-line follow-up question"),
    Persona("british", ("british",), description="British spelling (colour, organise, centre, travelled)"),
    Persona("in_short", ("in_short",), description='answers whose first line is "In short:" and one sentence'),
)}
# Preferences the profile has a feature for (length, bullets, tone, code first, TL;DR) ...
STYLE_PERSONAS = ("concise", "bullets", "formal", "code_first", "tldr", "concise_bullets", "drift")
# ... and preferences it has none for: learnt only from the user's edits and corrections.
OPEN_PERSONAS = ("follow_up", "british", "in_short")


def get_persona(name: str) -> Persona:
    from asls_mlx.errors import ASLSError

    try:
        return PERSONAS[name]
    except KeyError:
        raise ASLSError(f"unknown persona {name!r}; choose from: {', '.join(PERSONAS)}") from None
