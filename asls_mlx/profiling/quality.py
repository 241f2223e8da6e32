"""The quality guard: is an answer degenerate? Used by every metric and by the adapter commit gate.

Preference training over-optimises into degenerate answers that *look* compliant: repetition loops
("the island of the island of ...") and refusals ("I'm sorry, I'm unable to assist") are short, so a
length rule alone would reward them. Each check below is deliberately simple and documented; a
degenerate answer must always count as a failure, never as a success.

Issues (the strings ``quality_issues`` returns):
- ``empty``: nothing but whitespace.
- ``garbage``: mostly non-text characters (control chars, replacement chars, symbol soup).
- ``too_short``: fewer than ``MIN_WORDS`` words: too little to address a prompt (unless a short
  question's short answer, below).
- ``repetition``: a 1..8-word n-gram repeated back to back (3 times; 4 for single words), the same
  sentence three times, or a very low share of distinct words in a long answer.
- ``refusal``: a refusal phrase ("I'm sorry, but I can't", "I'm unable to assist", "As an AI ...").
- ``off_topic``: a very short answer sharing no content word with a prompt that has several, and
  naming nothing (no mid-sentence proper noun, no number: "It is Paris." answers "capital of
  France?"). Conservative: longer answers are never called off-topic, paraphrase is common.
- ``hollow``: content-free once a template opener ("The answer is:", "Sure!", "Here is the answer:",
  "The corrected version is:") is taken off: nothing with content left, or, where the prompt asks for
  more than a word, fewer than ``HOLLOW_MIN_CONTENT`` content words.
- ``evasive``: a non-answer ("There is no single, definitive answer", "It depends") with fewer than
  ``HOLLOW_MIN_CONTENT`` content words outside it.
- ``boilerplate``: social-media or letter filler in an answer that is no letter: two or more hashtags
  ("#SleepTips #HealthEducation"), or a sign-off line ("Best regards,") when the prompt asks for no email,
  letter or message. The embedded model's own answers to 120 prompts have none; an adapter trained on answers
  that carried them (the follow-up persona's corrected answers) put them under 3 of 12 new answers.
- ``questions_only``: the answer only asks back ("How about the capital city? Is there anything else?"): no
  statement with two content words but greetings and offers of help ("Hey there, I'm here to help with your
  presentation. What's on your mind?" to "Any advice?"), unless the prompt asks for questions. The follow-up
  persona's adapter learnt to answer so (12 of 12 new answers on its quick eval, correctness 0) from corrected
  answers that were only the follow-up question.
- ``content_dropped``: asked to pull items out of a pasted text, the answer names none of them, or not each number
  when every amount or date is asked for (``profiling.content``: "This sentence provides information about an
  expense." or "120 dollars" for "Pull out every amount").
- ``too_few_items``: asked for a list of N things, the answer ends with fewer (``profiling.content``:
  "1. A tent with a waterproof exterior." and nothing more for "Give me a list of seven things to pack").
- ``copied_input``: asked to summarise a pasted text, the answer is mostly that text's own word sequences.
- ``no_label``: asked to classify with offered labels, the answer names none of them or reads the list back
  (``profiling.labels``: 'The topic of this headline is "Sports, Politics, Business, Science or Entertainment."').
- ``no_body``, ``facts_missing``: asked to write a message, the answer is its header alone ("Subject: Moving Project
  Status to Friday at 10am (Room 4B)"), or leaves out a fact it was to state ("... will be held on Thursday").
- ``deferred``, ``not_shorter``, ``no_citation`` (``profiling.task_done``): the answer offers or announces the task
  instead of doing it ("Would you like me to provide the MLA 9 citation?"), is no shorter than the text it was asked
  to shorten, or writes a requested citation without any author's surname first.
- ``facts_changed`` (``profiling.faithfulness``): asked to shorten, summarise, rewrite or extract from a pasted text,
  the answer states a day, month, number or e-mail address the text lacks ("... available on Monday through Thursday").
- ``profile_leak``: the answer talks about the user or their profile ("the user prefers", "the user's
  request", "Interested in:") or echoes text that ``Profile.render()`` produces.

A short answer to a short question ("Paris." to "What is the capital of France?", "12" to "What is
7 + 5?") is an answer: ``short_question`` says when a prompt can be answered in a word or two, and
then neither ``too_short`` nor ``hollow`` applies to an answer that names something.

Set level (not per answer): ``template_share`` and ``template_collapse`` see many unrelated answers
opening with the same words, the sign of an adapter that learnt a template instead of answers.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from functools import lru_cache
from itertools import product

from asls_mlx.profiling.acknowledgement import is_pleasantry
from asls_mlx.profiling.content import (copies_input, drops_content, facts_missing, gives_items_asked, no_body,
                                       too_few_items)
from asls_mlx.profiling.faithfulness import changes_facts
from asls_mlx.profiling.features import STOPWORDS, STRAIGHT_APOSTROPHES, sentences, words
from asls_mlx.profiling.labels import picks_no_label
from asls_mlx.profiling.profile import Feature, Profile
from asls_mlx.profiling.task_done import defers_task, no_citation, not_shorter

MIN_WORDS = 3  # "Yes." does not address a prompt; "Paris is the capital." does
OFF_TOPIC_MAX_WORDS = 6  # only very short answers can be judged off-topic by word overlap
MIN_UNIQUE_RATIO = 0.3  # in a 30+ word answer, under 30% distinct words means a loop
HOLLOW_MIN_CONTENT = 4  # "The answer is: MLA." says nothing to "convert this citation"; four content words start to
SHORT_QUESTION_MAX_WORDS = 15  # a longer prompt carries pasted input or asks for several things
ECHO_MIN_PHRASES = 2  # one rendered-profile sentence ("Use a formal tone.") occurs in ordinary advice; two are an echo
ECHO_MOST = 0.6  # ... or one that is most of the answer's words
TEMPLATE_WORDS = 3  # see template_share
TEMPLATE_MIN_COUNT = 3  # an opening shared by two answers is chance; three is a template
_HASHTAG = re.compile(r"(?:^|\s)#[A-Za-z]\w+")
_SIGN_OFF = re.compile(r"^\W*(?:best|kind|warm|warmest)? ?(?:regards|wishes|sincerely|cheers|yours truly)\b,?\s*$",
                       re.IGNORECASE | re.MULTILINE)
_LETTER_ASKED = re.compile(r"\b(?:e-?mail|letter|note|message|memo|reply|invitation|card|sign[- ]?off)\b", re.IGNORECASE)

REFUSALS = [re.compile(p, re.IGNORECASE) for p in (
    r"\b(?:i'm|i am) (?:so |very |really )?(?:sorry|afraid),? (?:but )?(?:i|i'm|i am) "
    r"(?:can't|cannot|can not|won't|unable|not able)",
    r"^\W*(?:sorry,? )?(?:i'm|i am) (?:unable|not able) to (?:help|assist|provide|answer|comply|do)",
    r"^\W*(?:sorry,? )?i (?:can't|cannot|can not|won't) (?:help|assist|provide|answer|comply|do) "
    r"(?:you )?(?:with )?(?:that|this)",
    r"\bas an ai(?: language model| assistant)?,? i (?:can't|cannot|don't|do not|am unable|am not able)",
    r"\bi (?:can't|cannot|am unable to|am not able to) (?:assist|help) with (?:that|this|your request)",
)]


def _content(tokens: list[str]) -> set[str]:
    return {t for t in tokens if len(t) >= 3 and t not in STOPWORDS}


def _has_loop(tokens: list[str]) -> bool:
    n_tokens = len(tokens)
    for n in range(1, 9):
        need = 4 if n == 1 else 3  # "very very very" happens in prose; four of a word rarely does
        span = n * need
        for i in range(0, n_tokens - span + 1):
            gram = tokens[i:i + n]
            if all(tokens[i + j * n:i + (j + 1) * n] == gram for j in range(1, need)):
                return True
    return False


def _is_garbage(text: str) -> bool:
    chars = [c for c in text if not c.isspace()]
    if not chars:
        return False
    texty = sum(1 for c in chars if c.isalnum() or c in ".,;:!?'\"()-[]{}`#*_/+=<>%$&@")
    bad = sum(1 for c in text if (ord(c) < 32 and c not in "\n\t\r") or c == "\ufffd")
    return bad > 0 and bad >= 0.05 * len(chars) or texty < 0.6 * len(chars)


def _names_something(text: str) -> bool:
    """A number, or a capitalised word that does not start a sentence: a direct factual answer."""
    if re.search(r"\d", text):
        return True
    return bool(re.search(r"(?<![.!?]\s)(?<!^)(?<![.!?])\s+[A-Z][a-z]", text.strip()))


# Openers that carry no content: taken off the front (repeatedly) before the rest is judged hollow.
TEMPLATE_OPENERS = [re.compile(r"^[\s*#>_\"'-]*" + p + r"[\s*_\"'-]*", re.IGNORECASE) for p in (
    r"(?:sure(?: thing)?|certainly|of course|absolutely|okay|ok|alright|great|no problem|happy to help|"
    r"(?:that's a |what a )?(?:great|good) question)\s*[!.,:]+",
    r"here(?:'s| is| are| you go)\b[^:.!?\n]{0,60}[:.!]",
    r"(?:below is|this is)\b[^:\n]{0,60}:",
    r"the (?:(?:short|final|correct|corrected|revised|rewritten|requested|converted|updated|simple|best|"
    r"shortened|edited|new) )?(?:answer|response|version|result|output|reply)\b[^:.!?\n]{0,30}? (?:is|would be)\b\s*:?",
    r"the requested\b[^:.!?\n]{0,40}? (?:is|are)\b\s*:?",
    r"(?:answer|response|output|result)\s*:",  # not "TL;DR:" or "In short:": a summary follows those, as users ask
    r"i(?:'d| would| will|'ll)? (?:can |be (?:happy|glad) to )?help(?: you)?(?: with (?:that|this|it))?\s*[!.,:]+",
)]
YES_NO = frozenset("yes no true false correct incorrect yep nope".split())
YES_NO_QUESTION = re.compile(r"^\W*(?:is|are|am|was|were|do|does|did|can|could|will|would|should|shall|has|have|had)\b",
                             re.IGNORECASE)
# Prompts that ask for something longer than a word or two, however short the prompt.
LONG_FORM = re.compile(
    r"\b(?:write|draft|compose|rewrite|rephrase|paraphrase|summari[sz]e|explain|describe|discuss|outline|list|compare|"
    r"plan|create|generate|suggest|recommend|improve|expand|elaborate|why|how (?:do|does|did|can|could|should|would|to)|"
    r"steps?|tips|ideas|ways|examples|pros|cons|email|letter|essay|story|poem|paragraph|speech|message|code|"
    r"function|script|program|recipe|difference)\b", re.IGNORECASE)
# Prompts whose answer is a word or two however long the pasted input ("Classify the sentiment: ...").
SHORT_FORM = re.compile(r"\b(?:classify|sentiment|categor(?:y|ize|ise)|true or false|yes or no|which (?:one|of)|"
                        r"one word|single word|pick one|choose one)\b", re.IGNORECASE)
PASTED = re.compile(r"[:\n]\s*(?:\S+\s+){4,}\S")  # five or more words after a colon or line break: input to work on
# Non-answers: a clause that says there is no answer, or "it depends" with nothing it depends on.
EVASIONS = [re.compile(p, re.IGNORECASE) for p in (
    r"\bthere (?:is|'s|isn't|is not) (?:no|not (?:a|one)) (?:single|simple|one|definitive|definite|clear|easy|"
    r"straightforward|universal|exact|right|correct|one-size-fits-all|specific)\b[^.;:!?\n]*\b(?:answers?|way|solution)\b",
    r"^\W*(?:well,? )?(?:it|that|this|the answer) (?:all |really |totally |largely )?(?:depends|varies)\b"
    r"(?: on (?:(?:many|several|various|a (?:number|variety) of|different|a few|the|your|each|what you|who you) )?"
    r"(?:factors|things|circumstances|context|situation|person|individual|case|preferences?|needs|goals|want|ask)\b)?"
    r"(?: (?:and|or|from) [a-z ]{0,30})?\W*$",
    r"\bthe answer (?:to (?:this|that|your) question )?(?:is subjective|depends on (?:many|several|various))",
    r"\bit(?: is|'s) (?:difficult|hard|impossible|not possible) to (?:say|determine|know|give an? (?:definitive|exact|"
    r"precise|single) answer)\b",
    r"\bi (?:don't|do not) (?:know|have (?:an? )?(?:answer|opinion|personal opinions?|preferences?|information))\b",
)]
# A dodge when it opens the answer, whatever follows: the base model's one evasion among 247 answers went on
# "because it involves multiple dimensions..." to "How many continents are there?"
# A hedge ("There is no single answer to this, but ...") often goes on to answer; "no definitive answer" rarely does.
DODGE_OPENER = re.compile(r"^\W*there (?:is|'s) no (?:(?:single|simple|one|clear|easy),? )?(?:definitive|definite) answer",
                          re.IGNORECASE)
# Talk about the user or their profile: an assistant answers the user, it does not describe them.
META_TALK = [re.compile(p, re.IGNORECASE) for p in (
    r"\bthe user(?:'s)? (?:prefers?|preferences?|preferred|requested|requests|request|has (?:asked|requested)|"
    r"asked (?:for|me|to)|is interested|interests?|likes|would like|profile|style|wants? (?:a|an|short|long|"
    r"detailed|brief|bullet|the answer))\b",
    r"\bcall the user\b",
    r"(?:^|[.!?\n]\s*)interested in:",
    r"\b(?:according to|based on|from|in) (?:your|the) (?:user )?profile\b",
    r"\b(?:your|the user's|the) profile (?:says|shows|states|indicates|mentions|lists)\b",
)]


def _content_words(tokens: list[str]) -> list[str]:
    """Words that carry content: long non-stopwords, and numbers of any length ("12", "3.5")."""
    return [t for t in tokens if (len(t) >= 3 and t not in STOPWORDS) or any(c.isdigit() for c in t)]


def short_question(prompt: str) -> bool:
    """Whether a word or two can answer ``prompt``: nothing asks for a longer text ("write", "explain",
    "why", "list", "email", ...), and either it asks to classify or choose, or it is at most
    SHORT_QUESTION_MAX_WORDS words with no pasted input to work on ("Convert this citation: ...")."""
    prompt = prompt or ""
    if not words(prompt) or LONG_FORM.search(prompt):
        return False
    return bool(SHORT_FORM.search(prompt)) or (len(words(prompt)) <= SHORT_QUESTION_MAX_WORDS and not PASTED.search(prompt))


def _short_answer_fits(prompt: str, tokens: list[str]) -> bool:
    """A legitimately short answer to a short question: it names something, or says yes/no to a yes/no one."""
    if not short_question(prompt):
        return False
    if _content_words(tokens):
        return True
    return bool(tokens) and tokens[0] in YES_NO and bool(YES_NO_QUESTION.match(prompt))


def strip_template(answer: str) -> tuple[str, bool]:
    """``answer`` without its content-free openers, and whether there were any."""
    rest, stripped = answer.translate(STRAIGHT_APOSTROPHES), False
    for _ in range(4):  # "Sure! Here is the answer: The answer is: ..." peels off in turns
        for opener in TEMPLATE_OPENERS:
            m = opener.match(rest)
            if m and m.end() > 0:
                rest, stripped = rest[m.end():], True
                break
        else:
            break
    return rest.strip(), stripped


def is_hollow(prompt: str, answer: str) -> bool:
    """Content-free once template openers are off; see the module doc."""
    rest, stripped = strip_template(answer)
    tokens = words(rest)
    if not stripped:
        return False
    if _short_answer_fits(prompt, tokens):
        return False
    return len(_content_words(tokens)) < (HOLLOW_MIN_CONTENT if not short_question(prompt) else 1)


def is_evasive(answer: str) -> bool:
    """Opens with a dodge (DODGE_OPENER), or has a non-answer clause and fewer than HOLLOW_MIN_CONTENT content
    words outside such clauses ("There is no single answer; common triggers are stress, ..." answers)."""
    if DODGE_OPENER.search(answer.translate(STRAIGHT_APOSTROPHES)):
        return True
    clauses = [c for c in re.split(r"[.;:!?\n]+|,\s*(?:but|however)\b", answer.translate(STRAIGHT_APOSTROPHES)) if c.strip()]
    evasive = [any(e.search(c) for e in EVASIONS) for c in clauses]
    if not any(evasive):
        return False
    rest = [t for c, e in zip(clauses, evasive) if not e for t in words(c)]
    return len(_content_words(rest)) < HOLLOW_MIN_CONTENT


def _echo_tokens(text: str) -> list[str]:
    """Words with numbers made one token, so "about 27 words" and "about 13 words" are the same phrase."""
    return ["#" if any(c.isdigit() for c in t) else t for t in words(text)]


def profile_phrases() -> tuple:
    """Every sentence ``Profile.render()`` can write, as word patterns ("*": the user's own value, "#": a
    number), from renders of profiles with each feature wanted, not wanted or unknown. Derived from
    ``render`` itself, so a change of its wording is followed."""
    slot = "qqslot"
    phrases: set = set()
    lengths = (None, 3.3, 4.8, 5.7)  # unknown, short (27 words), medium (121), long (299)
    for length, *signs in product(lengths, *[(0.0, 1.0, -1.0)] * 5):
        feats = {name: Feature(sign, 10.0, 5) for name, sign in
                 zip(("bullets", "headings", "code_first", "tldr", "formality"), signs)}
        if length is not None:
            feats["length"] = Feature(length, 10.0, 5)
        profile = Profile(**feats, topics={slot + "a": 5.0, slot + "b": 4.0}, facts={"name": slot, "language": slot})
        for sentence in sentences(profile.render()):
            tokens = tuple("*" if t.startswith(slot) else t for t in _echo_tokens(sentence))
            if sum(t != "*" for t in tokens) >= 2:  # "Answer in *." still names what it asks; a lone word does not
                phrases.add(tokens)
    return tuple(sorted(phrases))


@lru_cache(maxsize=1)
def _phrase_patterns() -> tuple:
    """``profile_phrases`` as (regex over echo tokens, fixed words), once per process (~0.3 s)."""
    return tuple((re.compile(r"(?:^| )" + " ".join(r"\S+" if t == "*" else re.escape(t) for t in p) + r"(?= |$)"),
                  sum(t != "*" for t in p)) for p in profile_phrases())


def echoed_phrases(answer: str) -> tuple[int, int, int]:
    """(how many distinct rendered-profile sentences of three or more words ``answer`` contains — "No
    headings." is ordinary prose —, the most words one of them covers, the answer's words)."""
    tokens = _echo_tokens(answer.translate(STRAIGHT_APOSTROPHES))
    joined = " ".join(tokens)
    hits = [n for pattern, n in _phrase_patterns() if pattern.search(joined)]
    return sum(n >= 3 for n in hits), max(hits, default=0), len(tokens)


def asks_back_only(prompt: str, answer: str) -> bool:
    """Questions and no statement with two content words, where the prompt asks for no questions."""
    parts = [p.strip() for p in re.findall(r"[^.!?\n]+[.!?]*", answer) if p.strip()]
    if not any(p.endswith("?") for p in parts) or re.search(r"\bquestions?\b|\bquiz\b|\bask\b", prompt or "", re.I):
        return False
    if not _content(words(prompt or "")):
        return False  # "Hi!" may be answered "Hello there, how can I help?"
    need = 1 if short_question(prompt or "") else 2  # "Ottawa." answers "What is the capital of Canada?"
    return not any(len(_content_words(words(p))) >= need for p in parts if not p.endswith("?") and not is_pleasantry(p))


def is_boilerplate(prompt: str, answer: str) -> bool:
    """Hashtags, or a letter's sign-off where no letter was asked for (see module doc)."""
    if len(_HASHTAG.findall(answer)) >= 2:
        return True
    return bool(_SIGN_OFF.search(answer)) and not _LETTER_ASKED.search(prompt or "")


def leaks_profile(answer: str) -> bool:
    """Talks about the user or their profile, or echoes rendered-profile sentences: ECHO_MIN_PHRASES of them,
    or one that makes up most of the answer ("Use bullet points." as the answer to a recipe question)."""
    text = answer.translate(STRAIGHT_APOSTROPHES)
    if any(p.search(text) for p in META_TALK):
        return True
    n_hits, longest, n_tokens = echoed_phrases(text)
    return n_hits >= ECHO_MIN_PHRASES or (longest >= 3 and longest >= ECHO_MOST * n_tokens)


# A summary label the user asked for ("TL;DR:", "In short:") is not a template: the opening starts after it.
SUMMARY_LABEL = re.compile(r"^\s*(?:\*\*)?(?:tl;?\s?dr|in short|summary|bottom line)\s*(?:\*\*)?\s*[:\-–—]\s*", re.I)


def opening(answer: str, n_words: int = TEMPLATE_WORDS) -> tuple:
    """The first ``n_words`` words of ``answer`` after a summary label, lower-cased, without punctuation or markup."""
    return tuple(words(SUMMARY_LABEL.sub("", (answer or "").translate(STRAIGHT_APOSTROPHES), count=1))[:n_words])


def template_share(answers: list[str], n_words: int = TEMPLATE_WORDS) -> float:
    """The share of ``answers`` whose opening (first ``n_words`` words) is the most common one.

    Three words, because fewer are shared by honest answers to different questions ("The", "It is"),
    while three already spell a template ("The answer is", "Sure here is", "The user prefers") and do
    not yet reach the words that answer the question ("The answer is: Paris" and "... 12" share three
    words, not four). The embedded model's own answers to the 70 built-in prompts share 19% on one word,
    9% on two, 3% on three, 1% on four. Empty answers count in the total and never form the most common
    opening."""
    if not answers:
        return 0.0
    counts = Counter(o for o in (opening(a, n_words) for a in answers) if o)
    return max(counts.values(), default=0) / len(answers)


def template_collapse(adapted: list[str], base: list[str], margin: float = 0.10,
                      n_words: int = TEMPLATE_WORDS) -> str | None:
    """The opening ``adapted`` answers collapsed to against ``base`` answers (``collapsed_opening``), or None."""
    return collapsed_opening(adapted, template_share(base, n_words), margin, n_words)


def collapsed_opening(answers: list[str], base_share: float, margin: float = 0.10,
                      n_words: int = TEMPLATE_WORDS) -> str | None:
    """The most common opening of ``answers`` (its words joined by spaces), when its share exceeds ``base_share``
    (the base model's, or the old adapter's, on the same prompts) by more than ``margin`` and at least
    TEMPLATE_MIN_COUNT answers share it (two alike in a handful is chance); else None."""
    top, n = (Counter(o for o in (opening(a, n_words) for a in answers) if o).most_common(1) or [((), 0)])[0]
    return " ".join(top) if n >= TEMPLATE_MIN_COUNT and n / len(answers) - base_share > margin + 1e-9 else None


# (issue, check(prompt, answer)) in the order the issues are listed
_ANSWER_CHECKS: tuple[tuple[str, Callable[[str, str], bool]], ...] = (
    ("hollow", is_hollow), ("evasive", lambda p, a: is_evasive(a)), ("boilerplate", is_boilerplate),
    ("questions_only", asks_back_only),
    ("content_dropped", drops_content), ("too_few_items", too_few_items), ("copied_input", copies_input),
    ("no_label", picks_no_label), ("no_body", no_body), ("facts_missing", facts_missing), ("deferred", defers_task),
    ("not_shorter", not_shorter), ("no_citation", no_citation), ("facts_changed", changes_facts),
    ("profile_leak", lambda p, a: leaks_profile(a)),
)


def quality_issues(prompt: str, answer: str) -> list[str]:
    """The list of problems with ``answer`` to ``prompt`` (empty list: acceptable). See module doc."""
    if not isinstance(answer, str) or not answer.strip():
        return ["empty"]
    issues: list[str] = []
    text = answer.translate(STRAIGHT_APOSTROPHES)
    if _is_garbage(text):
        issues.append("garbage")
    tokens = words(text)
    if len(tokens) < MIN_WORDS and not _short_answer_fits(prompt, tokens):
        issues.append("too_short")
    sents = Counter(s.lower() for s in sentences(text) if len(s.split()) >= 3)
    if (_has_loop(tokens) or (sents and max(sents.values()) >= 3)
            or (len(tokens) >= 30 and len(set(tokens)) / len(tokens) < MIN_UNIQUE_RATIO)):
        issues.append("repetition")
    if any(p.search(text) for p in REFUSALS):
        issues.append("refusal")
    prompt_content = _content(words(prompt or ""))
    if (len(prompt_content) >= 2 and len(tokens) <= OFF_TOPIC_MAX_WORDS
            and not prompt_content & _content(tokens) and len(tokens) >= MIN_WORDS
            and not _names_something(text) and not gives_items_asked(prompt, text)):
        issues.append("off_topic")
    issues += [name for name, check in _ANSWER_CHECKS if check(prompt, text)]
    return issues


def is_acceptable(prompt: str, answer: str) -> bool:
    """True when the answer has none of the quality issues."""
    return not quality_issues(prompt, answer)
