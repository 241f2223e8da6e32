"""How a simulated user trims an answer: what the token budget cut off goes first, then what is over the words the
user wants. Each keeps the answer's own layout and never ends on a promise ("Here are some tips:") it does not keep.
"""

from __future__ import annotations

import re

from asls_mlx.profiling.content import ended
from asls_mlx.profiling.features import BULLET_LINE, sentences, word_count

_CODE_BLOCK = re.compile(r"```.*?(?:```|\Z)", re.DOTALL)
_BARE_MARKER = re.compile(r"^\s*(?:[-*\u2022+]|\d+[.)])\s*$")


def _units(text: str) -> list[tuple[str, int, bool]]:
    """``text``'s sentences and whole code blocks in order: (unit, end offset in ``text``, is code)."""
    out, pos = [], 0
    for block in [*_CODE_BLOCK.finditer(text), None]:
        prose = text[pos: block.start() if block else len(text)]
        at = pos
        for unit in sentences(prose):
            at = text.find(unit, at) + len(unit)
            out.append((unit, at, False))
        if block:
            out.append((block.group(), block.end(), True))
            pos = block.end()
    return out


def truncate_words(answer: str, limit: int) -> str:
    """Keep whole sentences up to ``limit`` words, cut where they end in the answer itself (its lines, an e-mail's
    layout stay as they were: sentences joined into one line made an e-mail all Subject line and code a line that
    does not parse); a code block is kept whole or not at all (the first one always: it is the answer); cut the first
    sentence if it alone is over. (A list answer is shortened item by item instead: ``shorten_list_items``.)"""
    if word_count(answer) <= limit:
        return answer
    text = answer.strip()
    units = _units(text)
    kept, total = 0, 0
    for unit, _, is_code in units:
        if total + word_count(unit) > limit:
            if is_code and not any(code for _, _, code in units[:kept]):
                kept += 1  # the answer's code, however long
            break
        kept, total = kept + 1, total + word_count(unit)
    while kept > 1 and _BARE_MARKER.match(units[kept - 1][0]):
        kept -= 1  # a list marker the cut left alone: "... better sleep:\n\n1."
    if kept > 1 and not units[kept - 1][2] and units[kept - 1][0].rstrip().endswith(":"):
        kept -= 1  # "Here are some tips:" without the tips that followed it
    if not kept:  # the first sentence alone is too long: cut it at the word limit and close it
        cut = " ".join(units[0][0].split()[: max(limit - 1, 1)]).rstrip(",;:-")
        return cut if cut.endswith((".", "!", "?")) else cut + "."
    return text[: units[kept - 1][1]].rstrip()


_ITEM_HEAD_END = re.compile(r"[:,;(]|\s[-\u2013\u2014]\s|\.(?:\s|$)")
MIN_ITEM_WORDS = 2


def shorten_list_items(answer: str, limit: int) -> str:
    """A list answer within ``limit`` words that keeps every item: each list line cut to its head ("1. A tent
    with a waterproof exterior, preferably ..." -> "1. A tent with a waterproof exterior"), the lead-in dropped;
    an answer without list lines is trimmed by sentences (``truncate_words``)."""
    if word_count(answer) <= limit:
        return answer
    lines = [ln.strip() for ln in answer.splitlines() if BULLET_LINE.match(ln)]
    if len(lines) < 2:
        return truncate_words(answer, limit)
    per_item = max(MIN_ITEM_WORDS, limit // len(lines) - 1)
    kept = []
    for line in lines:
        marker, body = line.split(maxsplit=1)
        head = _ITEM_HEAD_END.split(body.replace("**", ""), maxsplit=1)[0].split()
        kept.append(f"{marker} {' '.join(head[:per_item])}")
    return "\n".join(kept)


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
    if len(lines) > 1 and _BARE_MARKER.match(lines[-1]):  # "Here are some tips:\n\n1." promises what never came
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
