"""Open preferences: what a person may want that the profile has no feature for.

These rules are learnt only from the user's edits and corrections (``personas.OPEN_PERSONAS``); each is a
score (in [0, 1]), an edit toward it that keeps the answer's content (it adds a line or respells words) and is
checked on the embedded model's real answers:

- ``follow_up``: the answer ends with a one-line follow-up question to the user (its own line, at most
  ``FOLLOW_UP_WORDS`` words, after the answer itself, asking the user something: ``additions.asks_the_user``). The
  edit appends one built from the prompt.
- ``british``: British spelling: none of ``AMERICAN_TO_BRITISH``'s words in the prose (code, inline code and
  links are left alone: renaming ``color`` in a program breaks it). The edit respells them; -0.25 a word.
- ``in_short``: the first line is "In short:" and a one-sentence summary (``IN_SHORT_WORDS`` words at most).
  Not the TL;DR persona's "TL;DR:" opening: a "TL;DR:" line scores 0 here, and the edit relabels it.
"""

from __future__ import annotations

import re

from asls_mlx.profiling.additions import asks_the_user
from asls_mlx.profiling.features import CODE_BLOCK, is_coding_prompt, word_count
from asls_mlx.profiling.quality import strip_template

FOLLOW_UP_WORDS = 20  # a follow-up question longer than this is a paragraph, not a one-line question
IN_SHORT_WORDS = 25  # an "In short:" line longer than this is not a one-sentence summary
IN_SHORT_MIN_WORDS = 3  # "In short: yes." says nothing a reader can take away

# -- follow-up question ------------------------------------------------------------------------------


def _lines(answer: str) -> list[str]:
    return [ln.strip() for ln in (answer or "").strip().splitlines() if ln.strip()]


def ends_with_follow_up(answer: str) -> bool:
    """The last line is a question to the user of at most ``FOLLOW_UP_WORDS`` words, after at least one line of
    answer (a reply that is only a question asks instead of answering) and outside a code block. A question that
    asks the user nothing ("How about the contract is being sold?") is not the follow-up this person wants."""
    lines = _lines(answer)
    if len(lines) < 2 or lines[-1].startswith("```"):
        return False
    last = lines[-1].strip("*_ ")
    return last.endswith("?") and 1 <= word_count(last) <= FOLLOW_UP_WORDS and asks_the_user(last)


def score_follow_up(prompt: str, answer: str) -> float:
    return 1.0 if ends_with_follow_up(answer) else 0.0


# The first pattern that matches the prompt picks the question; "{topic}" is filled from the prompt.
_FOLLOW_UPS: list[tuple[re.Pattern, str]] = [(re.compile(rx, re.IGNORECASE), q) for rx, q in (
    (r"\b(?:write|draft|reply|respond|answer|compose)\b.*\b(?:e-?mail|letter|message|note)\b|^\W*(?:e-?mail|reply)\b",
     "Would you like me to make it shorter or change its tone?"),
    (r"\b(?:citation|reference|apa|mla|chicago style|bibliography)\b",
     "Would you like the same reference in another citation style?"),
    (r"\b(?:rewrite|rephrase|reword|shorten|make (?:it|this) (?:more )?polite|proofread|simplify)\b",
     "Would you like another version with a different tone?"),
    (r"\b(?:classify|sentiment|categori[sz]e|label)\b", "Would you like me to classify a few more texts?"),
    (r"\b(?:extract|pull out|find all)\b", "Would you like these in a table or a spreadsheet format?"),
    (r"\b(?:summari[sz]e|summary)\b", "Would you like a longer summary with the key details?"),
)]
_CODE_FOLLOW_UP = "Would you like me to add a few tests or explain any line?"
_GENERIC_FOLLOW_UP = "Would you like more detail on any part of this?"
_TOPIC_LEAD = re.compile(
    r"^(?:please |can you |could you )*(?:explain|describe|tell me about|give me an overview of|"
    r"what (?:is|are|was|were)|who (?:is|was|were))\s+", re.IGNORECASE)
_HOW_TO = re.compile(r"^(?:please )?how (?:do|can|should|would|could) (?:i|we|you|one) (.+)$", re.IGNORECASE)
_PRONOUNS = {"i": "you", "my": "your", "me": "you", "mine": "yours", "i'm": "you're", "am": "are"}
TOPIC_MAX_WORDS = 8


def _topic(prompt: str) -> str:
    """The prompt's subject in a few words ("how photosynthesis works"), or "" when there is no short one."""
    first = re.split(r"[:\n]", (prompt or "").strip(), maxsplit=1)[0]
    first = re.split(r"(?<=[.?!])\s", first, maxsplit=1)[0].rstrip(" ?.!")
    first = re.split(r"[,;]| and (?:how|why|when|what|where|who)\b| in (?:a few|one|two|three) (?:words|sentences)",
                     first, maxsplit=1, flags=re.IGNORECASE)[0].strip()
    how = _HOW_TO.match(first)
    text = "how to " + how.group(1) if how else _TOPIC_LEAD.sub("", first)
    tokens = [_PRONOUNS.get(t.lower(), t) for t in text.split()]
    if not tokens or len(tokens) > TOPIC_MAX_WORDS or text == first and not how and first[:1].isupper():
        return ""  # an instruction we could not trim to its subject ("Write a haiku ...") gets the generic line
    return " ".join(tokens)


def follow_up_question(prompt: str) -> str:
    """A one-line follow-up question about ``prompt`` ("Would you like to know more about ...?")."""
    if is_coding_prompt(prompt):  # first: "a regex that matches an email address" is about code
        return _CODE_FOLLOW_UP
    for pattern, question in _FOLLOW_UPS:
        if pattern.search(prompt or ""):
            return question
    topic = _topic(prompt)
    return f"Would you like to know more about {topic}?" if topic else _GENERIC_FOLLOW_UP


def append_follow_up(prompt: str, answer: str) -> str:
    """The answer with a follow-up question as its last line (unchanged when it already ends with one)."""
    if ends_with_follow_up(answer):
        return answer
    return f"{(answer or '').rstrip()}\n\n{follow_up_question(prompt)}"


# -- British spelling --------------------------------------------------------------------------------

# -ize / -yze verbs and their forms: organize -> organise, organization -> organisation, analyzed -> analysed.
_IZE_STEMS = ("organ real recogn apolog summar optim priorit emphas minim maxim categor custom memor critic util "
              "standard special final visual personal general author character stabil modern normal symbol "
              "synchron civil global capital familiar harmon central legal neutral fertil sanit energ mobil").split()
_IZE_FORMS = {"ize": "ise", "izes": "ises", "ized": "ised", "izing": "ising", "ization": "isation",
              "izations": "isations", "izer": "iser", "izers": "isers"}
_YZE_STEMS = ("anal", "paral", "catal")
_YZE_FORMS = {"yze": "yse", "yzes": "yses", "yzed": "ysed", "yzing": "ysing", "yzer": "yser"}
_WORDS = """
color:colour colors:colours colored:coloured coloring:colouring colorful:colourful colorless:colourless
favor:favour favors:favours favored:favoured favorable:favourable favorite:favourite favorites:favourites
honor:honour honors:honours honored:honoured honorable:honourable behavior:behaviour behaviors:behaviours
behavioral:behavioural neighbor:neighbour neighbors:neighbours neighboring:neighbouring
neighborhood:neighbourhood neighborhoods:neighbourhoods labor:labour labored:laboured flavor:flavour
flavors:flavours flavored:flavoured humor:humour harbor:harbour harbors:harbours rumor:rumour rumors:rumours
vapor:vapour endeavor:endeavour endeavors:endeavours odor:odour odors:odours rigor:rigour armor:armour
savior:saviour parlor:parlour
center:centre centers:centres centered:centred centering:centring theater:theatre theaters:theatres
liter:litre liters:litres fiber:fibre fibers:fibres kilometer:kilometre kilometers:kilometres
centimeter:centimetre centimeters:centimetres millimeter:millimetre millimeters:millimetres somber:sombre
caliber:calibre luster:lustre meager:meagre saber:sabre
catalog:catalogue catalogs:catalogues cataloged:catalogued cataloging:cataloguing analog:analogue
homolog:homologue
defense:defence defenses:defences offense:offence offenses:offences pretense:pretence
traveling:travelling traveled:travelled traveler:traveller travelers:travellers canceled:cancelled
canceling:cancelling modeling:modelling modeled:modelled labeled:labelled labeling:labelling fueled:fuelled
fueling:fuelling leveled:levelled signaled:signalled signaling:signalling counselor:counsellor
counselors:counsellors marvelous:marvellous jewelry:jewellery
gray:grey aluminum:aluminium mold:mould moldy:mouldy plow:plough skeptical:sceptical skeptic:sceptic
pajamas:pyjamas maneuver:manoeuvre maneuvers:manoeuvres enrollment:enrolment fulfillment:fulfilment
installment:instalment cozy:cosy mustache:moustache airplane:aeroplane airplanes:aeroplanes artifact:artefact
artifacts:artefacts
"""
AMERICAN_TO_BRITISH: dict[str, str] = dict(pair.split(":") for pair in _WORDS.split())
AMERICAN_TO_BRITISH.update({s + a: s + b for s in _IZE_STEMS for a, b in _IZE_FORMS.items()})
AMERICAN_TO_BRITISH.update({s + a: s + b for s in _YZE_STEMS for a, b in _YZE_FORMS.items()})
_AMERICAN = re.compile(r"\b(?:" + "|".join(sorted(AMERICAN_TO_BRITISH, key=len, reverse=True)) + r")\b",
                       re.IGNORECASE)
# Left as written: code blocks, inline code and links (a program's names and a URL are not prose).
_PROTECTED = re.compile(r"```.*?(?:```|\Z)|`[^`\n]+`|https?://\S+", re.DOTALL)


def _prose_parts(answer: str) -> list[tuple[str, bool]]:
    """(segment, is_prose) in order; joined they give the answer back."""
    parts, pos = [], 0
    for m in _PROTECTED.finditer(answer or ""):
        parts += [(answer[pos:m.start()], True), (m.group(0), False)]
        pos = m.end()
    return parts + [((answer or "")[pos:], True)]


def american_spellings(answer: str) -> list[str]:
    """The American spellings in the answer's prose, as written."""
    return [m.group(0) for text, prose in _prose_parts(answer) if prose for m in _AMERICAN.finditer(text)]


_VARIANT = re.compile(r"\b(?:" + "|".join(sorted(set(AMERICAN_TO_BRITISH) | set(AMERICAN_TO_BRITISH.values()),
                                                   key=len, reverse=True)) + r")\b", re.IGNORECASE)


def has_spelling_variant(answer: str) -> bool:
    """Whether the answer's prose has a word spelt differently in British and American English (in either
    spelling): only then can it show which spelling the writer uses."""
    return any(_VARIANT.search(text) for text, prose in _prose_parts(answer) if prose)


def score_british(prompt: str, answer: str) -> float:
    return max(0.0, 1.0 - 0.25 * len(american_spellings(answer)))


def _respell(match: re.Match) -> str:
    word = match.group(0)
    british = AMERICAN_TO_BRITISH[word.lower()]
    if word.isupper() and len(word) > 1:
        return british.upper()
    return british[0].upper() + british[1:] if word[0].isupper() else british


def to_british(answer: str) -> str:
    """The answer with its prose respelled the British way (code, inline code and links untouched)."""
    return "".join(_AMERICAN.sub(_respell, text) if prose else text for text, prose in _prose_parts(answer))


# -- "In short:" first -------------------------------------------------------------------------------

IN_SHORT = re.compile(r"^\s*(?:\*\*)?In short:(?:\*\*)?[ \t]*", re.IGNORECASE)
# Another summary label on the first line ("TL;DR:", "Summary:"): the edit relabels it instead of adding one.
_OTHER_LABEL = re.compile(r"^\s*(?:\*\*)?(?:tl;?\s?dr|summary|in short|in brief|bottom line|short answer)"
                          r"\W{0,4}?[:\-]\s*(?:\*\*)?\s*", re.IGNORECASE)


# A sentence ends at . ! ? (and any closing quote or bracket) before a capital, a quote or a digit.
_SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"'”’)\]]))\s+(?=[A-Z0-9\"“'(])")
_ENDED = re.compile(r"[.!?][\"'”’)\]]*$")
# Lines that frame an answer rather than say something: a summary is not made of them.
_FRAME = re.compile(r"^(?:subject|dear|hi|hello|hey|to|from|re)\b|[:,]$", re.IGNORECASE)


def _sentences(text: str) -> list[str]:
    return [s.strip() for line in (text or "").splitlines() for s in _SENTENCE_END.split(line) if s.strip()]


def _summary_ok(line: str) -> bool:
    return IN_SHORT_MIN_WORDS <= word_count(line) <= IN_SHORT_WORDS and len(_sentences(line)) == 1


def score_in_short(prompt: str, answer: str) -> float:
    """1.0: the first line is "In short:" and one sentence; 0.5: it opens "In short:" but the summary is
    missing, several sentences or too long; 0 otherwise."""
    lines = _lines(answer)
    if not lines:
        return 0.0
    m = IN_SHORT.match(lines[0])
    if not m:
        return 0.0
    return 1.0 if _summary_ok(lines[0][m.end():]) else 0.5


def _cut(sentence: str) -> str:
    """``sentence`` within ``IN_SHORT_WORDS`` words: cut at the last clause break that fits, else at a word."""
    w = sentence.split()
    if len(w) <= IN_SHORT_WORDS:
        return sentence if _ENDED.search(sentence) else sentence.rstrip(",;:- ") + "."
    head = " ".join(w[: IN_SHORT_WORDS - 1])
    clause = max(head.rfind(", "), head.rfind("; "), head.rfind(" - "))
    if clause > 0 and word_count(head[:clause]) >= IN_SHORT_MIN_WORDS + 3:
        head = head[:clause]
    return head.rstrip(",;:- ") + "."


def _unquote(sentence: str) -> str:
    """Without a quote mark left open at either end (pasted text quoted in the answer)."""
    for quote in ('"', "“", "”"):
        if sentence.count(quote) % 2 or quote in "“”" and sentence.count("“") != sentence.count("”"):
            sentence = sentence.removeprefix(quote).removesuffix(quote)
    return sentence.strip()


def _summary(text: str) -> str:
    """One sentence of ``text`` for the summary: the first that says something (not "Sure!", "Subject: ...",
    "Dear Ann," or "Here it is:"), without the quotes around pasted text, cut to ``IN_SHORT_WORDS`` words."""
    body, _ = strip_template(CODE_BLOCK.sub(" ", text or ""))
    found = [_unquote(s.lstrip("-*•#> ").strip()) for s in _sentences(body)]
    found = [s for s in found if word_count(s) > 0]
    said = [s for s in found if word_count(s) >= IN_SHORT_MIN_WORDS and not _FRAME.search(s)]
    return _cut((said or found or ["Here is the answer."])[0])


def prepend_in_short(answer: str) -> str:
    """An "In short: <one sentence>" first line: a summary label of another kind (TL;DR) is relabelled, an
    "In short:" line that is no one-sentence summary is redone, otherwise the line is added on top."""
    text = (answer or "").strip()
    lines = text.splitlines()
    first = lines[0] if lines else ""
    label = IN_SHORT.match(first) or _OTHER_LABEL.match(first)
    if label:
        summary, rest = first[label.end():].strip(), "\n".join(lines[1:]).strip()
        if not _summary_ok(summary):
            summary = _summary(summary + "\n" + rest)
        return f"In short: {summary}" + (f"\n\n{rest}" if rest else "")
    return f"In short: {_summary(text)}\n\n{text}"
