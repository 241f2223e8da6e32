"""Does a rewrite, a shortening, a summary or an extraction of a pasted text state facts the text does not have?

Asked to "Make this paragraph shorter without losing anything important" of a notice that the elevator is out
"from Monday morning until Wednesday evening of next week", concise users' adapters answered "The elevator in the
East Building will no longer be available on Monday through Thursday." and "... on Monday, March 15th": short,
on topic, naming the notice's words — and wrong. Every other check passed them; a reader would act on the wrong
day. A text reworked from an input can only carry the input's facts, so an answer that states a weekday, a month
or a number that neither the input nor the instruction has is ``facts_changed``. So is an extraction's: asked to
"Extract the email addresses and phone numbers from this signature", the base model answered "jordan.ellis@nope.com"
for "jordan.ellis@northpeak.example", and adapters "pulled out" the amounts "$120" for "$1,200" or "7% as an
additional expense" — an e-mail address the input lacks counts as well. (Names are not judged: a rewrite may greet
its reader or sign off.)

What counts as a number: digits by value ("$1,200" is 1200, "15th" is 15), number words up to twelve in the
source ("twelve" is 12, "a quarter to nine" is 8:45); not a list marker ("1." at a line's start, "2)" mid-line), a
zero (the minutes of "10:00" for an input's "10am"), a count of the answer's own words ("a revised version with only
27 words:"), and nothing inside a code block (a rewritten program may add a constant). "May" is a month only beside
a number ("May 9", "9 May").
On every stored eval's held-out answers to these prompts, the base model's state no new fact (0 of 2316, the
profile-in-prompt arm's 0 of 360); adapters' did in 26 of 522 answers of the default recipe: the elevator
notice's days changed or dated "March 15th", a goldfish summary that recalls "up to 12 weeks later". Of the 358
distinct stored answers to the eval's two extraction prompts with numbers, the base model's 1 of 2 does (the e-mail
above), profile-in-prompt's 3 of 5 and the adapters' 76 of 351: invented amounts, shares ("12% of the total cost")
and addresses.
"""

from __future__ import annotations

import re

from asls_mlx.profiling.content import (EXTRACTION, INLINE_MARKER, MONTH, NUMBER_WORDS, SHORTEN, SUMMARY, digits,
                                       emails, split_instruction)
from asls_mlx.profiling.features import CODE_BLOCK

# "Rewrite this so it sounds polite", "Please fix the grammar and spelling", "Make this more formal".
REWRITE = re.compile(r"\b(?:rewrite|rephrase|paraphrase|reword|proofread|make (?:this|it) (?:more|less|sound)|"
                     r"fix the (?:grammar|spelling))\b", re.IGNORECASE)
_WEEKDAY = re.compile(r"\b(Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)s?\b")
_DAY_AFTER = re.compile(r"\s+\d")  # "May 5" is a month, "May I ask" is not
_DAY_BEFORE = re.compile(r"\d(?:st|nd|rd|th)?\s+$")  # "9 May" is one too
# "Here's a revised version with only 27 words:" says something of the answer, not of the input.
_COUNT_OF_TEXT = re.compile(r"\b\d+\s+(?:words?|sentences?|characters?|lines?)\b", re.IGNORECASE)
# "a quarter to nine" is 8:45, "half past six" is 6:30.
_TIME_IN_WORDS = re.compile(r"\b(quarter|half) (to|past) (\d{1,2}|" + "|".join(list(NUMBER_WORDS)[1:]) + r")\b")


def _clock(part: str, way: str, hour: str) -> tuple[int, int]:
    h = NUMBER_WORDS.get(hour) or int(hour)
    minutes = 30 if part == "half" else 15 if way == "past" else 45
    return (h, minutes) if way == "past" else ((h - 2) % 12 + 1, minutes)


def _facts(text: str, words_too: bool) -> set[str]:
    text = _COUNT_OF_TEXT.sub(" ", INLINE_MARKER.sub(" ", CODE_BLOCK.sub(" ", text)))
    months = {m.group(1) for m in MONTH.finditer(text)
              if m.group(1) != "May" or _DAY_AFTER.match(text, m.end()) or _DAY_BEFORE.search(text, 0, m.start())}
    found = {f"day:{d}" for d in _WEEKDAY.findall(text)} | {f"month:{m}" for m in months}
    found |= {f"email:{e}" for e in emails(text)}
    numbers = digits(text)
    if words_too:
        numbers |= {NUMBER_WORDS[w] for w in re.findall(r"[a-z]+", text.lower()) if w in NUMBER_WORDS}
        numbers |= {n for m in _TIME_IN_WORDS.finditer(text.lower()) for n in _clock(*m.groups())}
    return found | {f"number:{n}" for n in numbers if n}


def reworks_input(prompt: str) -> bool:
    """Whether ``prompt`` asks to shorten, summarise, rewrite or extract from a text it pastes."""
    instruction, pasted = split_instruction(prompt or "")
    return pasted is not None and any(p.search(instruction) for p in (SHORTEN, SUMMARY, REWRITE, EXTRACTION))


def new_facts(prompt: str, answer: str) -> set[str]:
    """The weekdays, months, numbers and e-mail addresses ``answer`` states that ``prompt`` (instruction and input)
    does not have, as "day:Thursday", "month:March", "number:15", "email:a@b.example"; empty when the prompt asks
    for no rework of a pasted text."""
    if not reworks_input(prompt):
        return set()
    return _facts(answer or "", words_too=False) - _facts(prompt, words_too=True)


def changes_facts(prompt: str, answer: str) -> bool:
    """Asked to shorten, summarise, rewrite or extract from a pasted text, the answer states a day, month, number or
    e-mail address it lacks."""
    return bool(new_facts(prompt, answer))
