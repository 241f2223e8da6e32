"""Acknowledgements of a follow-up ("You're right, I'll keep it short."): part of that turn, not of an answer."""

from __future__ import annotations

import re

_APOS = str.maketrans({"’": "'", "‘": "'"})
_ACK_SENTENCE = re.compile(
    r"^\s*(?:"
    # an opener alone: "You're right,", "Sure!", "My apologies for the confusion."
    r"(?:(?:you're|you are) (?:right|correct|absolutely right)|sure|of course|certainly|absolutely|okay|ok|got it|"
    r"understood|noted|my apologies|apologies|i apologi[sz]e|sorry)\b"
    r"(?: for (?:the|any|my) (?:confusion|mistake|error|misunderstanding))?[.!,:]+"
    # "I'll make sure to provide more concise answers.", "Let me keep it brief:"
    r"|(?:i'll|i will|let me) (?:make sure|keep|be|try|give|provide|shorten|rewrite|make)\b[^.!?:\n]*"
    r"(?:concise|short|brief|clear|simple|answer|response|version)[^.!?:\n]*[.!?:]+"
    # "Here's a shorter version:"
    r"|here(?:'s| is) (?:a|an|the|my) (?:shorter|more concise|concise|briefer|brief|revised|simpler|corrected|updated|"
    r"rewritten|short)\b[^.!?:\n]*[.!?:]+"
    r")\s*", re.IGNORECASE)


def strip_acknowledgement(answer: str, max_sentences: int = 3) -> str:
    """``answer`` without the sentences that only acknowledge a follow-up ("You're right, I'll make sure to provide
    more concise answers. Here's a shorter version:"): said after "shorter please" they belong to that turn; as
    the preferred answer to the first prompt they taught the adapter to open every answer so (quick eval,
    concise user: two updates rejected for answers that were only that acknowledgement)."""
    text = answer.translate(_APOS)
    stripped = False
    for _ in range(max_sentences):
        m = _ACK_SENTENCE.match(text)
        if not m or not m.end():
            break
        text, stripped = text[m.end():], True
    if not stripped:
        return answer
    text = text.strip()
    return text[:1].upper() + text[1:]
