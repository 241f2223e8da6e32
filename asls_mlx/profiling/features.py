"""Measurable features of an answer's text: length, structure, tone. Shared by profile, scorer, evaluation.

Everything here is a pure function of a string, cheap and deterministic, so the same rules describe
what the user asked for (profile), how well an answer fits (scorer), and how a simulated user judges
one (evaluation).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*", re.UNICODE)
BULLET_LINE = re.compile(r"^\s*(?:[-*•+]|\d+[.)])\s+\S", re.MULTILINE)
HEADING_LINE = re.compile(r"^\s*(?:#{1,6}\s+\S|[A-Z][^\n.!?]{0,60}:\s*$)", re.MULTILINE)
CODE_FENCE = re.compile(r"```")
TLDR_START = re.compile(r"^\s*(?:\*\*)?(?:tl;?\s?dr|summary|bottom line|short answer)\b",
                        re.IGNORECASE)
# A first line that is a label ("In short: ...", "TL;DR: ...", "Note: ..."): an edit that adds one moves the rest
# of the answer down without meaning anything against what was first before.
LABEL_START = re.compile(r"^\s*(?:\*\*)?[A-Za-z][\w;' ]{0,20}:(?!//)")
CONTRACTION = re.compile(
    r"\b(?:\w+n['’]t|i['’]m|you['’]re|we['’]re|they['’]re|it['’]s|that['’]s|there['’]s|what['’]s|"
    r"\w+['’]ll|\w+['’]ve|\w+['’]d|let['’]s|gonna|wanna|gotta|ain['’]t)\b",
    re.IGNORECASE,
)
SLANG = re.compile(r"\b(?:hey|yeah|yep|nope|cool|awesome|stuff|kinda|sorta|lol|btw|ok|okay|super)\b|!",
                   re.IGNORECASE)
FORMAL = re.compile(
    r"\b(?:therefore|furthermore|moreover|however|consequently|regarding|accordingly|"
    r"additionally|nevertheless|thus|hence|shall|may i|kindly|sincerely)\b",
    re.IGNORECASE,
)
CODE_PROMPT = re.compile(
    r"\b(?:code|function|python|javascript|typescript|java|rust|golang|c\+\+|sql|regex|script|program|"
    r"implement|snippet|class|method|bug|compile|api|bash|shell|command)\b",
    re.IGNORECASE,
)


def words(text: str) -> list[str]:
    """Lower-cased word tokens (letters/digits, with inner apostrophes)."""
    return [w.lower() for w in WORD.findall(text or "")]


def word_count(text: str) -> int:
    return len(WORD.findall(text or ""))


# Curly apostrophes as straight ones: "you’re" and "you're" must match the same patterns.
STRAIGHT_APOSTROPHES = str.maketrans({"’": "'", "‘": "'"})


# A full stop that ends no sentence: "e.g.", "Mr.", "10 a.m.", an initial ("J. Austen").
_ABBREVIATION = re.compile(r"(?:\b(?:e\.g|i\.e|etc|vs|approx|Mr|Mrs|Ms|Dr|Prof|St|Jr|Sr|No|a\.m|p\.m|U\.S|U\.K)"
                           r"|(?<![\w.])[A-Z])\.$")


def sentences(text: str) -> list[str]:
    """Split prose into sentences (keeps the end punctuation); good enough for rewriting. A line break always ends
    one; a full stop after an abbreviation or an initial does not ("for Mr. Smith's firm" stays whole)."""
    out: list[str] = []
    for line in (text or "").strip().split("\n"):
        merged: list[str] = []  # per line: a line break always ends a sentence
        for part in re.split(r"(?<=[.!?])\s+", line.strip()):
            if merged and _ABBREVIATION.search(merged[-1]):
                merged[-1] += " " + part
            elif part:
                merged.append(part)
        out += merged
    return [p.strip() for p in out if p.strip()]


# Function words and request filler: what a prompt and an answer share without being about the same thing.
STOPWORDS = frozenset(
    "a an the and or but if then so of to in on at by for with from as is are was were be been being "
    "it its this that these those i you he she we they me my your our their what which who whom how why "
    "when where do does did can could would should will shall may might must not no yes please tell "
    "explain give show about into over under more most some any all very just also than too there here "
    "has have had get make like one two".split()
)


def has_bullets(text: str) -> bool:
    """At least two bullet or numbered lines: one dash is not a list."""
    return len(BULLET_LINE.findall(text or "")) >= 2


CODE_BLOCK = re.compile(r"```.*?(?:```|\Z)", re.DOTALL)  # a fenced code block, or one cut off before its close


def has_headings(text: str) -> bool:
    """A markdown heading or a short "Title:" line outside code (a "# comment" in code is no heading, a
    "TL;DR: ..." line is a summary)."""
    lines = CODE_BLOCK.sub("", text or "")
    return any(not TLDR_START.match(m.group(0)) for m in HEADING_LINE.finditer(lines))


def has_code(text: str) -> bool:
    return bool(CODE_FENCE.search(text or ""))


def code_first(text: str) -> bool:
    """The answer opens with a code block (allowing one short lead-in line)."""
    stripped = (text or "").lstrip()
    if stripped.startswith("```"):
        return True
    first, _, rest = stripped.partition("\n")
    return word_count(first) <= 8 and rest.lstrip().startswith("```")


def tldr_first(text: str) -> bool:
    return bool(TLDR_START.match(text or ""))


def formality(text: str) -> float:
    """Tone in [-1, 1]: contractions and slang pull towards casual (-1), formal connectives to +1."""
    n = max(word_count(text), 1)
    casual = len(CONTRACTION.findall(text or "")) + len(SLANG.findall(text or ""))
    formal = len(FORMAL.findall(text or ""))
    # Per 20 words: one contraction in a short answer is already a clear casual signal.
    raw = (formal - casual) * 20.0 / n
    return max(-1.0, min(1.0, raw / 2.0))


def is_coding_prompt(prompt: str) -> bool:
    return bool(CODE_PROMPT.search(prompt or ""))


@dataclass(frozen=True)
class AnswerFeatures:
    """The profile-relevant facts about one answer."""

    words: int
    bullets: bool
    headings: bool
    code: bool
    code_first: bool
    tldr_first: bool
    formality: float
    label: str = ""  # the first line's label ("in short", "tl;dr"), lower case; "" without one
    label_line_words: int = 0  # words on that labelled first line; 0 without a label


def answer_features(text: str) -> AnswerFeatures:
    label = first_label(text)
    return AnswerFeatures(
        words=word_count(text), bullets=has_bullets(text), headings=has_headings(text),
        code=has_code(text), code_first=code_first(text), tldr_first=tldr_first(text),
        formality=formality(text), label=label,
        label_line_words=word_count((text or "").strip().split("\n", 1)[0]) if label else 0,
    )


def first_label(text: str) -> str:
    """The label the answer's first line opens with ("In short:" -> "in short"), or ""."""
    m = LABEL_START.match(text or "")
    return m.group(0).strip(" *:").lower() if m else ""
