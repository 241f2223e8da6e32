"""Does an answer that was asked to pull things out of a pasted text still carry any of them?

"Pull out every amount of money in this paragraph: ..." answered "This sentence provides information about a
specific expense associated with planning a trip." is on topic (the base model's PMI calls it relevant), long
enough not to be hollow, and fits a user who wants short answers — yet it does not do the task. A concise
user's adapter learnt exactly that answer; the embedded base model lists the amounts. Whether an extraction is
complete cannot be checked without a reference, but one that names none of the input's items — its numbers,
e-mail addresses and mid-sentence names — has certainly dropped the content: that is the ``content_dropped``
quality issue. On the bundled extraction prompts the base model's greedy answers name at least one item in 11
of 12 (the twelfth lists countries where cities were asked: wrong too); a quarter of its samples at
temperature 0.8 name none. Asked for every amount, date or number ("Pull out every amount of money"), the answer
must carry each of the input's numbers (by value: "2024-03-15" and "March 15, 2024" carry "3/15/2024"): adapters
named "120 dollars" for "$1,200", or read the text back with its last amount rewritten away; the base model names
all four amounts.

A request to shorten a text ("Make this paragraph shorter without losing anything important") is judged the same
way: "We want to make sure everyone knows about the upcoming schedule updates." keeps neither day of the elevator
notice it shortens. Other rewrites, summaries and requests for a gist ("extract the key points") are not judged this way: a polite
rewrite of "Your dog barked all night AGAIN" legitimately shares few of its words.

A summary that reads the input back ("Here's a one-sentence summary: \"Many people think that goldfish have a
memory of only three seconds, but studies have shown ...\"", the input's first sentences word for word) is
``copied_input``: most of its four-word sequences (``COPY_SHARE``, and at least ``COPY_MIN_SHARED`` of them) are the
input's. On the stored quick evals the base model's summary shares 3% with its input, the adapters' real summaries
0-35%, their copies 42-89% (some with a word changed here and there: "believe" for "think").

A list asked for by its length ("Give me a list of seven things to pack ...") and answered, to its end, with
fewer items is ``too_few_items``: a concise user's adapter learnt to answer that prompt with its first item
alone ("1. A tent with a waterproof exterior ...", then the end of the answer), which every other check scored
as a fine short answer. Items are counted generously (list lines; else sentences, or the parts of a sentence
between commas and "and"), and only an answer too short to have been cut off by the token budget is judged:
the base model's long lists are cut mid-item, and sometimes at a full stop, by the eval's budget.

Asked to write a message that states facts ("saying the Thursday meeting is moved to Friday at 10:00 in room 4B"),
an answer that leaves one of them out is ``facts_missing``: the facts are the instruction's numbers and times, and its
names, days and months (capitalised mid-sentence, or after a title: "Mr. Alvarez"). Adapters wrote "The upcoming
Thursday meeting will be held on Thursday ..." and "10:30am"; the base model states all three within the eval's 96
tokens. A message cut off by the budget is judged too: one that spent 65 words without the news went astray (on
every stored answer, those went on about "a project I led" or "a significant milestone"). A user's own edit is exempt.

Asked to write an e-mail, a letter or a message, an answer that is only its header ("Subject: Delayed Launch
Date (October 23) - Email to Ms. Patel" and nothing more) is ``no_body``: fewer than ``MIN_BODY_WORDS`` words once
its Subject/To/From/Date lines and its form fields ("Phone: ...", "[Your Name]") are removed. The stored quick evals hold 13 such answers from adapters (a concise
user thumbs up a short answer) and none from the base model.
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
# "Pull out every amount of money", "Extract all the names and the dates": each of the input's numbers is asked for.
EVERY = re.compile(r"\b(?:every|all|each)\b", re.IGNORECASE)
# "Extract the email addresses and phone numbers": each of them is asked for, with or without "every".
_EMAILS_ASKED = re.compile(r"\be-?mail(?: address(?:es)?|s)\b", re.IGNORECASE)
_PHONES_ASKED = re.compile(r"\b(?:phone|telephone|mobile) numbers?\b", re.IGNORECASE)
NUMBER_KIND = re.compile(r"\b(?:amounts?|money|prices?|costs?|numbers?|dates?|times?|figures?|quantit(?:y|ies)|"
                         r"deadlines?)\b", re.IGNORECASE)
# The input starts after the instruction's colon or line break (five or more words), or is quoted.
_INPUT_AFTER = re.compile(r"(?:(?<!\d):|\n)\s*((?:\S+\s+){4,}\S[\s\S]*)$")  # not a time's colon ("10:00")
_QUOTED = re.compile(r"\"([^\"]{20,})\"?")
# Items: e-mail addresses, numbers of two or more characters ("12", "1,200", "14:35", "3/15/2024"; a lone digit
# is too common to say anything), and capitalised words that do not start a sentence (names, places, days).
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_ITEM = re.compile(EMAIL.pattern + r"|\d[\d.,:/]*\d")
_NAME = re.compile(r"(?<=[a-z,;]\s)[A-Z][a-z]+")
MIN_ITEMS = 2  # one item may be the only thing an honest answer gets wrong

NUMBER_WORDS = {w: n for n, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve".split())}
# "List five ...", "Give me a list of seven things", "Name six painters", "Suggest 3 ways": the count asked for.
_COUNT_ASKED = re.compile(r"\b(?:list|give|name|suggest|recommend|provide|offer|share|brainstorm|come up with)"
                          r"(?:\s+(?:me|us))?(?:\s+(?:a list of|the))?\s+(" + "|".join(list(NUMBER_WORDS)[2:]) +
                          r"|[2-9]|1\d|20)\s+[A-Za-z]", re.IGNORECASE)
# A list marker at a line's start or after a space: "1. Tent", "... sandwiches 2) fruit".
INLINE_MARKER = re.compile(r"(?<!\S)(\d{1,2})[.)](?=\s)")
_LIST_LINE = re.compile(r"^\s*(?:[-*\u2022]|\d{1,2}[.)]|[a-z][.)])\s+\S", re.MULTILINE)
# "Make this shorter", "Shorten this to one sentence", "Trim this down": a rewrite that must keep what matters.
SHORTEN = re.compile(r"\b(?:shorter|shorten|condense|trim|cut (?:it|this|that) down|more concise|in fewer words)\b",
                     re.IGNORECASE)
SUMMARY = re.compile(r"\b(?:summar(?:y|ize|ise)|tl;?dr|gist|in (?:one|a single) (?:sentence|line))\b", re.IGNORECASE)
SHINGLE_WORDS = 4
COPY_SHARE = 0.4
COPY_MIN_SHARED = 12  # a short summary may rightly reuse a phrase or two ("they can remember things for months")
# "Write an email to ...", "Draft a short note ...", "Reply to this email ..." (not "a regex that matches an email").
WRITE_MESSAGE = re.compile(r"\b(?:write|draft|compose)\b(?:\s+(?:me|us))?\s+(?:an?|the|my|this)\s+(?:[\w-]+\s+){0,3}?"
                           r"(?:e-?mail|letter|message|note|invitation)\b(?!\s+address)|"
                           r"\brepl(?:y|ies)\s+to\s+(?:this|the|her|his|my|an?)\s+(?:\w+\s+){0,2}?"
                           r"(?:e-?mail|letter|message)\b", re.IGNORECASE)
_HEADER_LINE = re.compile(r"^\W*(?:subject|to|from|date|cc|re)\W*:.*$", re.IGNORECASE | re.MULTILINE)
# A form's field ("Company Name: Project WhiteCream", "Phone: +1 246 ...", "[Your Name]"): a short label and a short
# value, or a placeholder. A thumbed-up "e-mail" of seven such lines and no sentence to Ms. Patel passed as a body.
# The value's words are split by whitespace only: with the space optional (``(?:[ \t]*\S+){0,8}``) a line of more than
# eight words after a 60-character one tried every way to cut that word in eight, for hours (a code answer's
# "for c in sentence: ..." line in the standard eval).
_FIELD_LINE = re.compile(r"^\W*(?:[A-Za-z][\w'.-]*(?:[ \t]+[\w'.-]+){0,3}[ \t]*:(?:[ \t]*\S+(?:[ \t]+\S+){0,7})?"
                         r"|\[[^\]\n]*\])\W*$", re.MULTILINE)
MIN_BODY_WORDS = 8
UNCUT_MAX_WORDS = 45  # the smallest budget any answer gets (96 tokens) holds ~65 words: a shorter one ended


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


def emails(text: str) -> set[str]:
    """The e-mail addresses in ``text``, lower-case."""
    return {e.lower() for e in EMAIL.findall(text)}


def drops_content(prompt: str, answer: str) -> bool:
    """An extraction prompt, or a request to shorten, whose input has at least MIN_ITEMS items, answered without any;
    or, asked for every number of a kind (amounts, phone numbers) or for the e-mail addresses, without one of them."""
    instruction, pasted = split_instruction(prompt or "")
    asked = (EXTRACTION.search(instruction) and not GIST.search(instruction)) or SHORTEN.search(instruction)
    if pasted is None or not asked:
        return False
    wanted = items(pasted)
    if len(wanted) < MIN_ITEMS:
        return False
    # In the answer a name may start a line or a list item ("- Lisbon"): any word counts there.
    said = items(answer) | {w.lower() for w in re.findall(r"[A-Za-z]+", answer)}
    if not wanted & said:
        return True
    if _EMAILS_ASKED.search(instruction) and emails(pasted) - emails(answer):
        return True
    every = EVERY.search(instruction) or _PHONES_ASKED.search(instruction)
    every_number = every and NUMBER_KIND.search(instruction) and not SHORTEN.search(instruction)
    return bool(every_number and _numbers(pasted) - _numbers(answer))


_MONTHS = {m: n for n, m in enumerate("january february march april may june july august september october november "
                                      "december".split(), 1)}
MONTH = re.compile(r"\b(" + "|".join(m.title() for m in _MONTHS) + r")\b")  # capitalised: "you may" is no month


def digits(text: str) -> set[int]:
    """The numbers written in digits, by value: "$1,200" is 1200, "15th" is 15, "10:00" is 10 and 0."""
    return {int(d) for d in re.findall(r"\d+", text.replace(",", ""))}


def _numbers(text: str) -> set[int]:
    # by value, so that a date written anew still carries its numbers: "3/15/2024" in "2024-03-15" or "March 15, 2024"
    return digits(text) | {_MONTHS[m.lower()] for m in MONTH.findall(text)}


def items_asked(prompt: str) -> int | None:
    """How many items the prompt asks for ("List five ..." -> 5); None when it asks for no count."""
    m = _COUNT_ASKED.search(prompt or "")
    if not m:
        return None
    n = m.group(1).lower()
    return NUMBER_WORDS[n] if n in NUMBER_WORDS else int(n)


def _numbered_inline(answer: str) -> int:
    # "1. Strawberries, 2. Oranges, and 3. Grapes" on one line: the longest run 1, 2, ... of its markers.
    numbers = {int(n) for n in INLINE_MARKER.findall(answer)}
    return next(k for k in range(len(numbers) + 1) if k + 1 not in numbers)


def items_given(answer: str) -> int:
    """The items an answer gives, counted generously: its list lines or its numbered items written on one line
    ("1. Strawberries, 2. Oranges, and 3. Grapes"), or else the most of its sentences or of the comma/"and"-separated
    parts of one sentence."""
    listed = max(len(_LIST_LINE.findall(answer)), _numbered_inline(answer))
    if listed:
        return listed
    sents = [s for s in re.split(r"(?<=[.!?])\s+|\n+", answer) if s.strip()]
    parts = max((len(re.split(r",|;|\band\b|\bor\b", s)) for s in sents), default=0)
    return max(len(sents), parts)


def ended(answer: str) -> bool:
    """Whether the answer surely ended as written: too short to have been cut off by any token budget. (A
    long one closed by a full stop may still be cut there: 96 tokens ran out after item 4 of 7, at a period.)"""
    return len(answer.split()) <= UNCUT_MAX_WORDS


def gives_items_asked(prompt: str, answer: str) -> bool:
    """A list asked for by its length ("Name three fruits ..."), answered with at least that many items: "Oranges,
    lemons and limes." shares no word with its prompt and is still its answer."""
    wanted = items_asked(prompt)
    return wanted is not None and items_given(answer) >= wanted


def too_few_items(prompt: str, answer: str) -> bool:
    """A list asked for by its length, answered to the end with fewer items."""
    wanted = items_asked(prompt)
    return wanted is not None and ended(answer) and items_given(answer) < wanted


def _shingles(text: str, n: int = SHINGLE_WORDS) -> set[tuple[str, ...]]:
    w = re.findall(r"[a-z0-9']+", text.translate(STRAIGHT_APOSTROPHES).lower())
    return {tuple(w[i:i + n]) for i in range(len(w) - n + 1)}


def copies_input(prompt: str, answer: str) -> bool:
    """A request to summarise a pasted text, answered mostly with that text's own word sequences."""
    instruction, pasted = split_instruction(prompt or "")
    if pasted is None or not SUMMARY.search(instruction):
        return False
    said = _shingles(answer)
    shared = len(said & _shingles(pasted))
    return shared >= COPY_MIN_SHARED and shared / len(said) >= COPY_SHARE


def no_body(prompt: str, answer: str) -> bool:
    """Asked to write or reply to an e-mail, letter or message: the answer is its header lines and little else."""
    instruction, _ = split_instruction(prompt or "")
    if not WRITE_MESSAGE.search(instruction):
        return False
    body = _FIELD_LINE.sub(" ", _HEADER_LINE.sub(" ", answer or ""))
    return len(body.split()) < MIN_BODY_WORDS


_TITLE_NAME = re.compile(r"\b(?:Mr|Mrs|Ms|Mx|Dr|Prof)\.?\s+([A-Z][a-z]+)")
# Not facts a message states: titles, and the language it is to be written in ("Write a note in French").
_NOT_FACTS = frozenset("mr mrs ms mx dr prof english french spanish german italian portuguese dutch chinese "
                       "japanese korean arabic russian hindi".split())


def message_facts(prompt: str) -> set[str]:
    """The facts a message is asked to state (normalised as ``items``); none unless the prompt asks for a message."""
    instruction, _ = split_instruction(prompt or "")
    if not WRITE_MESSAGE.search(instruction):
        return set()
    found = items(instruction) | {n.lower() for n in _TITLE_NAME.findall(instruction)}
    return found - _NOT_FACTS


def _states(answer: str, fact: str) -> bool:
    # "21st" states 21, "10am" and "10:00 AM" state 10:00, "9:00" states 9, "$1,200" states 1200.
    forms = [re.escape(fact)] + ([re.escape(fact[:-3])] if re.fullmatch(r"\d{1,2}:00", fact) else [])
    pattern = r"(?<!\w)(?<!\d:)(?:%s)(?::00)?(?:st|nd|rd|th|\s?[ap]\.?m\.?)?(?!\w|:\d)" % "|".join(forms)
    return re.search(pattern, answer.lower().replace(",", "")) is not None


def facts_missing(prompt: str, answer: str) -> bool:
    """Asked to write a message stating facts (days, times, names, numbers), the answer leaves one out."""
    return any(not _states(answer, fact) for fact in message_facts(prompt))
