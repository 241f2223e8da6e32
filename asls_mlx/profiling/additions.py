"""Corrections that ask to add something to an answer ("end with a follow-up question please", "start with 'In
short:'"): the preferred answer is the first answer with that addition, not the model's whole second answer.

Asked so, a 135M model mostly stops answering the first prompt ("You're ready to continue your conversation.
What would you like to know next?"); as the chosen side of a pair such an answer teaches the adapter to drop the
content (the quick eval's follow-up user: adapters whose answers only asked back). What the user asked for is the
part the second answer adds: its question, its "In short:" line. Composed onto the first answer, the pair differs
in exactly that part, as the user's own edit would.
"""

from __future__ import annotations

import re

from asls_mlx.profiling.features import sentences, word_count
from asls_mlx.profiling.unfinished import BARE_MARKER

MAX_ADDITION_WORDS = 25  # a "question" or "In short:" line longer than this is a paragraph, not the addition asked for
_END_WITH_QUESTION = re.compile(r"\b(?:end|finish|close)\b.*\bquestions?\b", re.IGNORECASE)
_OPEN_WITH_IN_SHORT = re.compile(r"\b(?:start|begin|open)\b.*\bin short\b", re.IGNORECASE)
_IN_SHORT_LINE = re.compile(r"^\s*(?:\*\*)?in short:", re.IGNORECASE)
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*(?=\s)")
# A follow-up question asks the person something ("Would you like ...?", "Shall I ...?", "Want more?"). A question
# that addresses no one ("How about the contract is being sold?", "What is the capital of France?") makes a claim or
# quizzes: composed onto an answer it taught an adapter to answer "Extract every date ..." with "The contract is
# being sold." (quick eval, follow-up user, seed 0: all three of its updates rejected for that answer).
_ASKS_THE_USER = re.compile(
    r"\b(?:you|your|yours|yourself|i|me|let's)\b"
    r"|^\W*(?:want|need|anything|any|more|other|further)\b", re.IGNORECASE)


def compose_correction(request: str, original: str, corrected: str) -> str | None:
    """The answer ``request`` asked for: ``original`` with the part ``corrected`` adds (its last question, or its
    "In short:" first line). ``corrected`` itself when ``request`` asks for no addition; None when the second answer
    does not make the addition asked for, or ``original`` already had it (no preference to learn)."""
    if _END_WITH_QUESTION.search(request or ""):
        if _closing_question(original.strip().splitlines()[-1] if original.strip() else ""):
            return None
        question = _closing_question(corrected)
        return f"{_whole_sentences(original)}\n\n{question}" if question else None
    if _OPEN_WITH_IN_SHORT.search(request or ""):
        if _IN_SHORT_LINE.match(original or ""):
            return None
        first = (corrected or "").strip().splitlines()[0] if (corrected or "").strip() else ""
        if not _IN_SHORT_LINE.match(first) or not 3 <= word_count(first) <= MAX_ADDITION_WORDS:
            return None
        return f"{first.strip()}\n\n{(original or '').strip()}"
    return corrected


def asks_the_user(question: str) -> bool:
    """``question`` asks the person something (second person, an offer, a bare "Anything else?")."""
    return bool(_ASKS_THE_USER.search(question or ""))


def _closing_question(text: str) -> str | None:
    """The last question sentence of ``text`` if it is a one-line follow-up question: short, asking the user."""
    for sentence in reversed(sentences(text)):
        if sentence.endswith("?"):
            return sentence if word_count(sentence) <= MAX_ADDITION_WORDS and asks_the_user(sentence) else None
    return None


def _whole_sentences(text: str) -> str:
    """``text`` without a last sentence cut off by the token limit (prose only: code is left as it is), so the
    addition follows a finished answer."""
    text = (text or "").rstrip()
    if "```" in text or not text or text[-1] in ".!?\"')]:":
        return text
    # "2." opening a list item ends no sentence: cut there, "... sound waves.\n\n2." kept a bare list number before
    # the closing question (quick eval, follow-up user, seed 0)
    ends = [m for m in _SENTENCE_END.finditer(text)
            if not BARE_MARKER.match(text[text.rfind("\n", 0, m.start()) + 1:m.end()])]
    if not ends or ends[-1].end() < len(text) / 3:
        return text
    return text[: ends[-1].end()]
