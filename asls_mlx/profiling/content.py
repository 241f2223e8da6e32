"""Does an answer that was asked to pull things out of a pasted text still carry any of them?

"Pull out every amount of money in this paragraph: ..." answered "This sentence provides information about a
specific expense associated with planning a trip." is on topic (the base model's PMI calls it relevant), long
enough not to be hollow, and fits a user who wants short answers — yet it does not do the task. A concise
user's adapter learnt exactly that answer; the embedded base model lists the amounts. Whether an extraction is
complete cannot be checked without a reference, but one that names none of the input's items — its numbers,
e-mail addresses and mid-sentence names — has certainly dropped the content: that is the ``content_dropped``
quality issue. On the bundled extraction prompts the base model's greedy answers name at least one item in 11
of 12 (the twelfth lists countries where cities were asked: wrong too); a quarter of its samples at
temperature 0.8 name none.

Rewrites, summaries and requests for a gist ("extract the key points") are not judged this way: a polite
rewrite of "Your dog barked all night AGAIN" legitimately shares few of its words.
"""

from __future__ import annotations

import re

from asls_mlx.profiling.features import STRAIGHT_APOSTROPHES

# The instruction asks for items of the input, all of them or named kinds ("the meeting date, time and place").
EXTRACTION = re.compile(r"\b(?:extract|pull out|list (?:all|every|each|the \w+ (?:mentioned|named|in))|"
                        r"find (?:all|every|each)|identify (?:all|every|each))\b", re.IGNORECASE)
# ... unless what it asks for is a gist, which may name nothing of the input ("extract the key points").
GIST = re.compile(r"\b(?:(?:key|main|central) (?:points?|ideas?|themes?|arguments?|messages?|takeaways?)|takeaways?|"
                  r"lessons?|gist|summary|moral)\b", re.IGNORECASE)
# The input starts after the instruction's colon or line break (five or more words), or is quoted.
_INPUT_AFTER = re.compile(r"[:\n]\s*((?:\S+\s+){4,}\S[\s\S]*)$")
_QUOTED = re.compile(r"\"([^\"]{20,})\"?")
# Items: e-mail addresses, numbers of two or more characters ("12", "1,200", "14:35", "3/15/2024"; a lone digit
# is too common to say anything), and capitalised words that do not start a sentence (names, places, days).
_ITEM = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+|\d[\d.,:/]*\d")
_NAME = re.compile(r"(?<=[a-z,;]\s)[A-Z][a-z]+")
MIN_ITEMS = 2  # one item may be the only thing an honest answer gets wrong


def split_instruction(prompt: str) -> tuple[str, str | None]:
    """(the instruction, the pasted input it works on; None when there is none)."""
    m = _INPUT_AFTER.search(prompt)
    if m:
        return prompt[:m.start()], m.group(1)
    q = _QUOTED.search(prompt)
    return (prompt[:q.start()], q.group(1)) if q else (prompt, None)


def items(text: str) -> set[str]:
    """The checkable items of ``text``, normalised ("$1,200" -> "1200", "Maria" -> "maria")."""
    text = text.translate(STRAIGHT_APOSTROPHES)
    found = {re.sub(r"[.,]$", "", i).replace(",", "").lower() for i in _ITEM.findall(text)}
    return found | {n.lower() for n in _NAME.findall(text)}


def drops_content(prompt: str, answer: str) -> bool:
    """An extraction prompt whose input has at least MIN_ITEMS items, answered without any of them."""
    instruction, pasted = split_instruction(prompt or "")
    if pasted is None or not EXTRACTION.search(instruction) or GIST.search(instruction):
        return False
    wanted = items(pasted)
    if len(wanted) < MIN_ITEMS:
        return False
    # In the answer a name may start a line or a list item ("- Lisbon"): any word counts there.
    said = items(answer) | {w.lower() for w in re.findall(r"[A-Za-z]+", answer)}
    return not wanted & said
