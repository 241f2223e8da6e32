"""The quality guard: is an answer degenerate? Used by every metric and by the adapter commit gate.

Preference training over-optimises into degenerate answers that *look* compliant: repetition loops
("the island of the island of ...") and refusals ("I'm sorry, I'm unable to assist") are short, so a
length rule alone would reward them. Each check below is deliberately simple and documented; a
degenerate answer must always count as a failure, never as a success.

Issues (the strings ``quality_issues`` returns):
- ``empty``: nothing but whitespace.
- ``garbage``: mostly non-text characters (control chars, replacement chars, symbol soup).
- ``too_short``: fewer than ``MIN_WORDS`` words: too little to address a prompt.
- ``repetition``: a 1..8-word n-gram repeated back to back (3 times; 4 for single words), the same
  sentence three times, or a very low share of distinct words in a long answer.
- ``refusal``: a refusal phrase ("I'm sorry, but I can't", "I'm unable to assist", "As an AI ...").
- ``off_topic``: a very short answer sharing no content word with a prompt that has several, and
  naming nothing (no mid-sentence proper noun, no number: "It is Paris." answers "capital of
  France?"). Conservative: longer answers are never called off-topic, paraphrase is common.
"""

from __future__ import annotations

import re
from collections import Counter

from asls_mlx.profiling.features import sentences, words

MIN_WORDS = 3  # "Yes." does not address a prompt; "Paris is the capital." does
OFF_TOPIC_MAX_WORDS = 6  # only very short answers can be judged off-topic by word overlap
MIN_UNIQUE_RATIO = 0.3  # in a 30+ word answer, under 30% distinct words means a loop
_APOS = str.maketrans({"’": "'", "‘": "'"})

REFUSALS = [re.compile(p, re.IGNORECASE) for p in (
    r"\b(?:i'm|i am) (?:so |very |really )?(?:sorry|afraid),? (?:but )?(?:i|i'm|i am) "
    r"(?:can't|cannot|can not|won't|unable|not able)",
    r"^\W*(?:sorry,? )?(?:i'm|i am) (?:unable|not able) to (?:help|assist|provide|answer|comply|do)",
    r"^\W*(?:sorry,? )?i (?:can't|cannot|can not|won't) (?:help|assist|provide|answer|comply|do) "
    r"(?:you )?(?:with )?(?:that|this)",
    r"\bas an ai(?: language model| assistant)?,? i (?:can't|cannot|don't|do not|am unable|am not able)",
    r"\bi (?:can't|cannot|am unable to|am not able to) (?:assist|help) with (?:that|this|your request)",
)]
STOPWORDS = frozenset(
    "a an the and or but if then so of to in on at by for with from as is are was were be been being "
    "it its this that these those i you he she we they me my your our their what which who whom how why "
    "when where do does did can could would should will shall may might must not no yes please tell "
    "explain give show about into over under more most some any all very just also than too there here "
    "has have had get make like one two".split()
)


def _content(tokens: list[str]) -> set[str]:
    return {t for t in tokens if len(t) >= 3 and t not in STOPWORDS}


def _has_loop(tokens: list[str]) -> bool:
    n_tokens = len(tokens)
    for n in range(1, 9):
        need = 4 if n == 1 else 3  # "very very very" happens in prose; four of a word rarely does
        span = n * need
        for i in range(0, n_tokens - span + 1):
            gram = tokens[i:i + n]
            if all(tokens[i + j * n:i + (j + 1) * n] == gram for j in range(1, need)):
                return True
    return False


def _is_garbage(text: str) -> bool:
    chars = [c for c in text if not c.isspace()]
    if not chars:
        return False
    texty = sum(1 for c in chars if c.isalnum() or c in ".,;:!?'\"()-[]{}`#*_/+=<>%$&@")
    bad = sum(1 for c in text if (ord(c) < 32 and c not in "\n\t\r") or c == "\ufffd")
    return bad > 0 and bad >= 0.05 * len(chars) or texty < 0.6 * len(chars)


def _names_something(text: str) -> bool:
    """A number, or a capitalised word that does not start a sentence: a direct factual answer."""
    if re.search(r"\d", text):
        return True
    return bool(re.search(r"(?<![.!?]\s)(?<!^)(?<![.!?])\s+[A-Z][a-z]", text.strip()))


def quality_issues(prompt: str, answer: str) -> list[str]:
    """The list of problems with ``answer`` to ``prompt`` (empty list: acceptable). See module doc."""
    if not isinstance(answer, str) or not answer.strip():
        return ["empty"]
    issues: list[str] = []
    text = answer.translate(_APOS)
    if _is_garbage(text):
        issues.append("garbage")
    tokens = words(text)
    if len(tokens) < MIN_WORDS:
        issues.append("too_short")
    sents = Counter(s.lower() for s in sentences(text) if len(s.split()) >= 3)
    if (_has_loop(tokens) or (sents and max(sents.values()) >= 3)
            or (len(tokens) >= 30 and len(set(tokens)) / len(tokens) < MIN_UNIQUE_RATIO)):
        issues.append("repetition")
    if any(p.search(text) for p in REFUSALS):
        issues.append("refusal")
    prompt_content = _content(words(prompt or ""))
    if (len(prompt_content) >= 2 and len(tokens) <= OFF_TOPIC_MAX_WORDS
            and not prompt_content & _content(tokens) and "too_short" not in issues
            and not _names_something(text)):
        issues.append("off_topic")
    return issues


def is_acceptable(prompt: str, answer: str) -> bool:
    """True when the answer has none of the quality issues."""
    return not quality_issues(prompt, answer)
