"""Does an answer do what was asked, or only offer it, announce it, or miss the form the task asks for?

Answers that read well and still leave the task undone, each seen in the adapters' answers on the stored quick
evals and caught by no other check:

- ``deferred``: the answer offers the task instead of doing it. Asked for an MLA 9 citation, the follow-up user's
  adapter wrote a blurb about the book and closed "Would you like me to provide the MLA 9 citation?"; asked to
  shorten a paragraph, "... Would you like me to make the paragraph shorter with some key details?". An offer is a
  closing "Would you like me to / Shall I / Do you want me to ..." (an action the assistant proposes; "Would you
  like to know more?" proposes nothing it should have done). It defers the task when at least half of its content
  words are the instruction's — the pasted input's words do not count ("Would you like me to add the title?" can
  follow a citation) — and it asks for nothing beyond the task ("more", "longer", "another", ...).
- also ``deferred``: asked for a number ("How many millilitres are in 2 litres?", "What is 6 times 9?"), the answer
  closes with an offer to work it out: "... divide the volume by the density of water. Would you like me to
  calculate it for you?" (the follow-up user's adapters, on the correctness set's conversions and sums; no base
  model answer in the stored evals closes so). One that shows a result ("2 kg * 1000 g = 2000 g.") did the work,
  however oddly it then offers it.
- also ``deferred``: the answer announces what never comes: "Here's a one-sentence summary of the paragraph:"
  followed by nothing, or by nothing but questions — an answer of lead-ins and questions alone. (An answer long
  enough to have been cut off by the token budget right after its colon is not judged; prose moved after the code
  it introduced, "... For example:" last, still has its code.)
- ``not_shorter``: asked to make a pasted text shorter, the answer (less its lead-in and closing questions) has at
  least ``NOT_SHORTER`` of the input's words. The embedded base model reads the elevator notice back with three words
  more (60 vs 57); a third of the adapters' answers to it did the same. (A shortened text that keeps none of the
  input's names and numbers is ``content_dropped``, see ``profiling.content``.)
- ``no_citation``: asked to write or convert a reference in a citation style (MLA, APA, Chicago, Harvard), the
  answer never puts an author's surname first ("Finch, Laura." / "Finch, L."), which all of these styles do for
  the first author (a prompt that names no one is not judged; one whose author is an organisation would be
  misjudged: every bundled citation prompt names a person). The embedded base model fails this often too ("The Quiet Coast is a novel by Laura Finch"):
  it is correctness where correctness can be checked, not only a sign of adaptation.

The follow-up persona's own closing questions ("Want me to go deeper on any part of this?") and the base model's
("Would you like to know more about ...?") are offers of more, not deferrals: the tests hold them.
"""

from __future__ import annotations

import re

from asls_mlx.profiling.content import SHORTEN, ended, split_instruction
from asls_mlx.profiling.features import STOPWORDS, STRAIGHT_APOSTROPHES, word_count, words

# An action the assistant proposes to take: the thing it offers is what follows.
OFFER = re.compile(r"^\W*(?:so,? )?(?:would you like me to|do you want me to|(?:do you )?want me to|shall i|should i|"
                   r"would it help if i|i can|i could|let me know if you(?:'d| would) like me to)\s+(.*)$", re.I)
# An offer of more than the task, or of a change to what was given: a follow-up, not a deferral.
BEYOND = re.compile(r"\b(?:more|longer|further|another|other|additional|else|deeper|expand|elaborate|extra|also|"
                    r"any (?:part|line|point|step|section)|clarify|tweak|adjust|change|modify|tailor|example|"
                    r"examples|next|again|different|alternative)\b", re.I)
# A question whose answer is a number, and an offer to produce one.
ASKS_FOR_NUMBER = re.compile(r"\bhow (?:many|much|long|far|old)\b|\b(?:calculate|compute|convert)\b|"
                             r"\d\s*(?:[-+*/×÷]|times\b|plus\b|minus\b|divided\b|multiplied\b|percent\b|%)", re.I)
WORK_OUT = re.compile(r"(?:calculat|comput|conver|solv)\w*|(?:work|figure) (?:it |this |that )?out\b|"
                      r"do the (?:math|maths|calculation|conversion|sum)\b", re.I)  # the action offered, first
SHOWS_RESULT = re.compile(r"=\s*\$?-?\d")
# Verbs of offering and their fillers carry nothing of what is offered.
_OFFER_WORDS = frozenset("provide give write create make help share show draft prepare put offer send "
                         "generate produce come up with you your some few".split())
_ASKS_FOR_QUESTIONS = re.compile(r"\bquestions?\b|\bquiz\b|\bask\b", re.I)
_LEAD_IN = re.compile(r":\s*(?:\*\*)?\s*$")
CITATION_STYLE = re.compile(r"\b(?:MLA|APA|Chicago|Harvard)\b")
CITATION_WORD = re.compile(r"\b(?:citation|reference|cite|bibliography|entry|format|style)\b", re.I)
# A person's name in the prompt, "Laura Finch" / "Hannah R. Mills" (given name first), or "Okoye, C." / "Brooks,
# Martin" (surname first): the answer must write it surname first, with the given name or its initial.
_GIVEN_FIRST = re.compile(r"\b([A-Z])[a-z]+(?: [A-Z]\.)? ([A-Z][a-z'-]+)\b")
_SURNAME_FIRST = re.compile(r"\b([A-Z][a-z'-]+), ([A-Z])(?:[a-z]+\b|\.)")
_LISTED_SURNAME_FIRST = re.compile(r"\b([A-Z][a-z'-]+), ([A-Z])[a-z]*\.")  # in a prompt "Tanaka, Priya Raman" is a list
NOT_SHORTER = 0.9


def _content(text: str) -> set[str]:
    return {w for w in words(text) if w not in STOPWORDS and (len(w) >= 3 or w.isdigit())}


def _units(answer: str) -> list[str]:
    """The answer's lines split into sentences, keeping their end punctuation (a colon ends a lead-in)."""
    parts = re.findall(r"[^.!?\n]+(?:[.!?]+|$)", answer, re.MULTILINE)
    return [p.strip() for p in parts if p.strip(" \t*_#>-")]


def offers_the_task(prompt: str, answer: str) -> bool:
    """The answer's last sentence offers to do what the instruction asks (see module doc)."""
    instruction, _ = split_instruction(prompt or "")
    units = _units(answer.translate(STRAIGHT_APOSTROPHES))
    m = OFFER.match(units[-1]) if units else None
    if not m or BEYOND.search(m.group(1)):
        return False
    if ASKS_FOR_NUMBER.search(instruction) and WORK_OUT.match(m.group(1)):
        return not SHOWS_RESULT.search(answer)
    offered = _content(m.group(1)) - _OFFER_WORDS
    return bool(offered) and len(offered & _content(instruction)) * 2 >= len(offered)


def announces_only(prompt: str, answer: str) -> bool:
    """Lead-ins ending in a colon and questions, nothing else, in an answer that ended (see module doc)."""
    if _ASKS_FOR_QUESTIONS.search(prompt or "") or answer.count("```") % 2:
        return False  # an open code block was cut off by the budget: its last line may end in a colon
    prose = re.sub(r"```[\s\S]*?```", "\n(code)\n", answer.translate(STRAIGHT_APOSTROPHES))
    lines = [ln.strip() for ln in prose.split("\n") if ln.strip(" \t*_#>-")]
    leads = [bool(_LEAD_IN.search(ln)) for ln in lines]
    if not any(leads) or not all(lead or all(u.endswith("?") for u in _units(ln)) for ln, lead in zip(lines, leads)):
        return False
    return not leads[-1] or ended(answer)  # a last line cut off by the budget may end in a colon


def defers_task(prompt: str, answer: str) -> bool:
    """Offers or announces the task instead of doing it: the ``deferred`` quality issue."""
    return offers_the_task(prompt, answer) or announces_only(prompt, answer)


def not_shorter(prompt: str, answer: str) -> bool:
    """Asked to shorten a pasted text, the answer's own text is not shorter (see module doc)."""
    instruction, pasted = split_instruction(prompt or "")
    if pasted is None or not SHORTEN.search(instruction):
        return False
    body = re.sub(r"^[^\n:\"]{0,80}:", " ", answer.strip(), count=1)  # "Here's a revised version with fewer words:"
    kept = [u for u in _units(body) if not u.endswith("?")]
    return sum(word_count(u) for u in kept) >= NOT_SHORTER * word_count(pasted)


def no_citation(prompt: str, answer: str) -> bool:
    """Asked for a reference in a citation style, the answer writes none of the prompt's names surname first."""
    instruction, _ = split_instruction(prompt or "")
    if not (CITATION_STYLE.search(instruction) and CITATION_WORD.search(instruction)):
        return False
    names = {(m.group(2), m.group(1)) for m in _GIVEN_FIRST.finditer(prompt)}
    names |= {(m.group(1), m.group(2)) for m in _LISTED_SURNAME_FIRST.finditer(prompt)}
    return bool(names) and not names & {(m.group(1), m.group(2)) for m in _SURNAME_FIRST.finditer(answer)}
