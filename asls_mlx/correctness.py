"""Correctness kept: a bundled set of short questions with accepted answers, and a checker that judges
an answer the way a person would: right, wrong, or not an answer at all.

At the bottom of the package (it imports nothing of asls): the evaluation scores the correctness set with it
(``asls_mlx.evaluation.correctness``), and the commit gate judges its probe questions with it
(``asls_mlx/data/gate_probes.jsonl``: six other questions the base model answers right, so an adapter that
forgets what the base model knew is rejected whatever the user's session asked).

Personalization may make answers fit the user's style while they stop doing the task; style metrics do
not notice. This set measures whether the adapted assistant still answers what the base model answers.
Base accuracy 36.9% (52/141) on 141 questions, embedded model (SmolLM2-135M-Instruct), greedy, 64 tokens.
(System prompt "You are a helpful assistant."; facts 71%, arithmetic 18%, conversion 11%, definition 52%,
transformation 32%.)

The set (``asls_mlx/data/correctness.jsonl``, written for asls, CC0): per line ``id``, ``category`` (one of
``CATEGORIES``), ``question``, ``accepted`` (every form a correct answer may take: "12", "twelve"), and
optionally ``case_sensitive`` (true where case is the task: "write 'orange' in capital letters") and
``allow`` (other numbers a correct answer may state: a conversion factor, the Fahrenheit equivalent).

The checker (``judge``; ``is_correct`` is ``judge(...) == "correct"``), in this order:
- ``empty``: nothing but whitespace.
- ``refusal``: declines or disclaims knowing ("I'm sorry, I can't", "I don't know", "I'm not sure",
  "As an AI", "there is no single answer"), even when a candidate follows: a guess wrapped in a
  disclaimer is not an answer the user can rely on.
- ``hollow``: nothing is left once the question's echo (every run of 3 or more tokens copied from the
  question) is removed, or only filler is ("The answer is:"). Echo removal also means an accepted answer
  that occurs inside the question ("What is 7 times 1?") counts only when the answer states it again.
- ``wrong``: no accepted answer occurs as a whole word or phrase in what is left. Tokens are words,
  numbers and arithmetic signs; case is folded unless the item is case-sensitive; punctuation around
  words is ignored; numbers compare by value ("1,000" == "1000", "12.0" == "12"); a number written in
  words matches only where ``accepted`` lists that form.
- ``hedge``: the answer offers several candidates. Two simple rules:
  (1) where an accepted answer is a number, the answer states another number (digits) as a result, and
  that number is neither accepted, nor in the question, nor in the item's ``allow``: "42, or maybe 44",
  "5 * 5 = 25, so 5^2 is 100". Stated as a result: right after "=", "is", "are", "be", "equals",
  "equal to", "or", "maybe", "about", ... (``_RESULT_MARKERS``). Numbers in the working ("multiply both
  sides by 10: 3 * 25 = 75") are no candidates: a person reads the stated result.
  (2) every occurrence of the accepted answer is joined by "or" or "/" to another candidate: "Sydney or
  Canberra", "mice/mouses". An answer that also rejects a wrong candidate ("Canberra, not Sydney")
  passes: rule 2 needs the joining word.
- ``correct``: otherwise.

Known leniency: an answer that names the accepted term while asserting another ("the largest planet is
Neptune ... including Jupiter") counts as correct. Hand-checked on the base model's 64-token answers,
8 of the 52 "correct" verdicts are such (a person's base accuracy: about 31%); of the 80 "wrong" ones,
two are near misses a person might pass ("antonymy", "Sunflowers!"). Long, rambling answers mention
more terms, so the leniency favours them over short styled ones: compare base and adapted answers
decoded with the same token budget. A first-or-last-sentence rule would fix 5 of those 8 but fails
styled answers that open with "Sure!" and close with a follow-up question, so the checker has none.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from importlib import resources

DEFAULT_SYSTEM = "You are a helpful assistant."
MAX_TOKENS = 64
CATEGORIES = ("facts", "arithmetic", "conversion", "definition", "transformation")
VERDICTS = ("correct", "empty", "refusal", "hollow", "wrong", "hedge")
MIN_ECHO_RUN = 3  # "capital of France" is an echo; a shared single word ("Paris", "7") is not

_CHARS = str.maketrans({"’": "'", "‘": "'", "−": "-", "–": "-", "—": "-", "×": "*", "÷": "/", "≈": "="})
_WORD_HYPHEN = re.compile(r"(?<=[^\W\d_])-(?=[^\W\d_])")  # "forty-two" and "forty two" compare equal
_TOKEN = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|[^\W\d_]+(?:'[^\W\d_]+)*|[+\-*/=%]")
_OR = frozenset({"or", "/"})
_RESULT_MARKERS = frozenset(
    "= is are was were be equals or maybe perhaps possibly probably approximately about around roughly "
    "nearly almost makes gives answer result total".split()
)
_EQUAL_WORDS = frozenset({"equal", "equals", "amounts", "comes"})  # "equal to 75": "to" marks a result
_FILLER = frozenset(
    "the answer is are it its it's a an sure here here's this that final result solution response "
    "certainly of course okay ok well so yes my to your correct".split()
)
_REFUSALS = [re.compile(p) for p in (
    r"\bi(?: am|'m)? (?:sorry|afraid),? (?:but )?i(?: am|'m)? (?:can't|cannot|can not|won't|unable|not able)",
    r"\bi (?:can't|cannot|can not|won't|am unable to|am not able to|'m unable to|'m not able to) "
    r"(?:answer|help|assist|provide|tell|say|determine|calculate|give|know)",
    r"\bi (?:don't|do not) (?:know|have (?:enough |the |any )?(?:information|data|access))",
    r"\bi(?: am|'m) not (?:sure|certain)\b",
    r"\bas an ai\b",
    r"\bthere(?:'s| is) no (?:single|definitive|one|clear|simple|correct)\b[^.]*\banswer",
    r"^\W*it depends\b",
)]


@dataclass(frozen=True)
class CorrectnessItem:
    """One question of the set: the forms a correct answer may take, and how to compare them."""

    id: str
    category: str
    question: str
    accepted: tuple[str, ...]
    case_sensitive: bool = False
    allow: tuple[str, ...] = ()


def load_correctness_set() -> list[CorrectnessItem]:
    """The bundled questions (``asls_mlx/data/correctness.jsonl``), in file order."""
    return _load_items("correctness.jsonl")


def load_gate_probes() -> list[CorrectnessItem]:
    """The commit gate's probe questions (``asls_mlx/data/gate_probes.jsonl``): not in the correctness set, so
    the evaluation never scores what the gate selected adapters on."""
    return _load_items("gate_probes.jsonl")


def _load_items(name: str) -> list[CorrectnessItem]:
    text = resources.files("asls_mlx").joinpath(f"data/{name}").read_text(encoding="utf-8")
    items = []
    for line in text.splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        item = CorrectnessItem(id=row["id"], category=row["category"], question=row["question"],
                               accepted=tuple(row["accepted"]), case_sensitive=bool(row.get("case_sensitive")),
                               allow=tuple(row.get("allow", ())))
        if item.category not in CATEGORIES or not item.accepted:
            raise ValueError(f"correctness item {item.id}: unknown category or no accepted answer")
        items.append(item)
    return items


def _number_key(text: str) -> str:
    try:
        return format(Decimal(text.replace(",", "")).normalize(), "f")
    except InvalidOperation:
        return text


def _is_number(key: str) -> bool:
    return key[:1].isdigit()


def tokens(text: str, case_sensitive: bool = False) -> list[str]:
    """The comparison keys of ``text``: words (case-folded unless ``case_sensitive``), numbers by value,
    arithmetic signs; other punctuation dropped."""
    text = _WORD_HYPHEN.sub(" ", (text or "").translate(_CHARS))
    keys = []
    for tok in _TOKEN.findall(text):
        if tok[0].isdigit():
            keys.append(_number_key(tok))
        else:
            keys.append(tok if case_sensitive else tok.casefold())
    return keys


def _strip_echo(answer: list[str], question: list[str]) -> list[str | None]:
    """``answer`` with every token inside a run of ``MIN_ECHO_RUN``+ tokens copied from the question
    replaced by None (a gap no phrase can match across)."""
    echo = [False] * len(answer)
    prev = [0] * (len(question) + 1)
    for i, a in enumerate(answer):
        cur = [0] * (len(question) + 1)
        for j, q in enumerate(question):
            if a == q:
                cur[j + 1] = prev[j] + 1
                if cur[j + 1] >= MIN_ECHO_RUN:
                    echo[i - cur[j + 1] + 1 : i + 1] = [True] * cur[j + 1]
        prev = cur
    return [None if e else a for a, e in zip(answer, echo)]


def _matches(rest: list[str | None], phrase: list[str]) -> list[int]:
    n = len(phrase)
    return [i for i in range(len(rest) - n + 1) if n and rest[i : i + n] == phrase]


def _stated_numbers(keys: list[str]) -> set[str]:
    """The numbers ``keys`` states as results: those right after a result marker (module doc)."""
    out = set()
    for i in range(1, len(keys)):
        prev = keys[i - 1].casefold()
        if _is_number(keys[i]) and (prev in _RESULT_MARKERS
                                    or (prev == "to" and i >= 2 and keys[i - 2].casefold() in _EQUAL_WORDS)):
            out.add(keys[i])
    return out


def _joined_by_or(rest: list[str | None], start: int, end: int, accepted_keys: set[str]) -> bool:
    """Is the phrase at ``rest[start:end]`` offered as one of several candidates ("X or Y", "X/Y")?"""
    def other(k):
        return k is not None and k.casefold() not in _OR and k not in accepted_keys
    before = start >= 2 and rest[start - 1] is not None and rest[start - 1].casefold() in _OR and other(rest[start - 2])
    after = (end + 1 < len(rest) and rest[end] is not None and rest[end].casefold() in _OR
             and other(rest[end + 1]))
    return before or after


def _as_item(item_or_accepted, question: str) -> CorrectnessItem:
    if isinstance(item_or_accepted, CorrectnessItem):
        return item_or_accepted
    accepted = (item_or_accepted,) if isinstance(item_or_accepted, str) else tuple(item_or_accepted)
    return CorrectnessItem(id="", category="", question=question, accepted=accepted)


def judge(item_or_accepted: CorrectnessItem | Sequence[str] | str, answer: str, question: str = "") -> str:
    """The verdict on ``answer`` (one of ``VERDICTS``; see the module doc for each rule). Given accepted
    answers instead of an item, ``question`` (optional) is what echo and number rules compare with."""
    item = _as_item(item_or_accepted, question)
    if not isinstance(answer, str) or not answer.strip():
        return "empty"
    folded = answer.translate(_CHARS).casefold()
    if any(p.search(folded) for p in _REFUSALS):
        return "refusal"
    cs = item.case_sensitive
    q_keys = tokens(item.question, cs)
    rest = _strip_echo(tokens(answer, cs), q_keys)
    if all(k is None or k.casefold() in _FILLER for k in rest):
        return "hollow"
    phrases = [tokens(a, cs) for a in item.accepted]
    accepted_keys = {k for p in phrases for k in p}
    spans = [(i, i + len(p)) for p in phrases for i in _matches(rest, p)]
    if not spans:
        return "wrong"
    if any(all(_is_number(k) for k in p) for p in phrases if p):
        allowed = accepted_keys | set(q_keys) | {_number_key(a) for a in item.allow}
        if _stated_numbers(tokens(answer, cs)) - allowed:
            return "hedge"
    if all(_joined_by_or(rest, s, e, accepted_keys) for s, e in spans):
        return "hedge"
    return "correct"


def is_correct(item_or_accepted: CorrectnessItem | Sequence[str] | str, answer: str, question: str = "") -> bool:
    """True when ``answer`` states an accepted answer plainly: not empty, refused, hollow or hedged."""
    return judge(item_or_accepted, answer, question) == "correct"
