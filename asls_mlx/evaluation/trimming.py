"""How a simulated user trims an answer: what the token budget cut off goes first (``drop_unfinished``), then what
is over the words the user wants. Each keeps the answer's own layout and never ends on a promise ("Here are some
tips:") it does not keep.
"""

from __future__ import annotations

import re

from asls_mlx.profiling.features import BULLET_LINE, CODE_BLOCK, sentences, word_count
from asls_mlx.profiling.unfinished import BARE_MARKER


def _units(text: str) -> list[tuple[str, int, bool]]:
    """``text``'s sentences and whole code blocks in order: (unit, end offset in ``text``, is code)."""
    out, pos = [], 0
    for block in [*CODE_BLOCK.finditer(text), None]:
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
    while kept > 1 and BARE_MARKER.match(units[kept - 1][0]):
        kept -= 1  # a list marker the cut left alone: "... better sleep:\n\n1."
    if kept > 1 and not units[kept - 1][2] and units[kept - 1][0].rstrip().endswith(":"):
        kept -= 1  # "Here are some tips:" without the tips that followed it
    if not kept:  # the first sentence alone is too long: cut it at the word limit and close it
        cut = " ".join(units[0][0].split()[: max(limit - 1, 1)]).rstrip(",;:-")
        return cut if cut.endswith((".", "!", "?")) else cut + "."
    return text[: units[kept - 1][1]].rstrip()


# An item's head ends at punctuation, but not at the comma of "$1,200" or the colon of "10:00": cut there, the
# simulated user's edit wrote "The venue costs $1" and taught it as the user's own answer.
_ITEM_HEAD_END = re.compile(r"(?<!\d)[:,]|[:,](?!\d)|[;(]|\s[-\u2013\u2014]\s|\.(?:\s|$)")
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
