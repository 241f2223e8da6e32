"""The unfinished end of an answer the token budget cut off: what a person editing it deletes first.

The profile reads an edit against the answer without it: deleting "... This phenomenon occurs because" says
nothing about how long the user wants answers (the quick eval's follow-up user, whose edits only added a closing
question, was profiled as wanting short answers).
"""

from __future__ import annotations

import re

from asls_mlx.profiling.content import ended
from asls_mlx.profiling.features import BULLET_LINE

BARE_MARKER = re.compile(r"^\s*(?:[-*\u2022+]|\d+[.)])\s*$")  # a list item's number or bullet and nothing after it
_FINISHED = re.compile(r"[.!?:;)\]\"'*`]\s*$")
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*(?=\s|$)")


def drop_unfinished(answer: str) -> str:
    """What a person editing an answer cut off by the token budget deletes first: its unfinished end.

    Prose goes back to the last sentence end of its last line (the whole line when it has none); an open code block
    loses its partial last line and is closed; a list item keeps its finished sentences, or all of itself when it has
    none (its head is the item); a bare list marker on the last line goes with the lead-in before it ("Here are
    some tips:\n\n1."). An answer short enough to have ended (``content.ended``) or ending in punctuation
    is returned as it is. Without this, an edit appended the follow-up question to "... This phenomenon occurs
    because" and taught the fragment with it."""
    text = (answer or "").rstrip()
    lines = text.split("\n")
    if len(lines) > 1 and BARE_MARKER.match(lines[-1]):  # "Here are some tips:\n\n1." promises what never came
        text = _without_lead_in("\n".join(lines[:-1]).rstrip())
        return text if text else answer
    if not text or ended(text) or _FINISHED.search(text):
        return answer
    if text.count("```") % 2:
        return "\n".join(lines[:-1]).rstrip() + "\n```" if len(lines) > 1 else answer
    last = lines[-1]
    item = BULLET_LINE.match(last)
    ends = [m.end() for m in _SENTENCE_END.finditer(last) if not item or m.start() >= item.end()]
    if item and not ends:
        return answer
    kept = lines[:-1] + [last[:ends[-1]]] if ends else lines[:-1]
    out = "\n".join(kept).rstrip()
    return out if out else answer


def _without_lead_in(text: str) -> str:
    """``text`` without a last sentence that ends in ":" (a lead-in to what the budget cut off)."""
    if not text.endswith(":"):
        return text
    ends = [m.end() for m in _SENTENCE_END.finditer(text[:-1])]
    return text[: ends[-1]].rstrip() if ends else text
