"""Does an answer to a classification request pick one of the labels it was offered?

"What is the topic of this headline: sports, politics, business, science or entertainment?" answered
'The topic of this headline is "Sports, Politics, Business, Science or Entertainment."' repeats the question's
options and decides nothing; answered "This headline focuses on a local startup ..." it names none of them. Both
are on topic, long enough, and a concise user's checker scored them 1.0; neither does the task. That is the
``no_label`` quality issue: the prompt offers labels ("as positive, negative or mixed", "spam or not spam",
"(low, medium or high)") and the answer names none of them, or reads the list back: three or more labels, all
or all but one of those offered (unless each of several inputs is to be labelled, when all may rightly appear).
Labels named only in the question's alternatives restated ("To determine whether the statement is a fact or an
opinion, we need to ...") decide nothing either.
The embedded base model itself echoes the headline's options; it fails that prompt too, and is scored so.
"""

from __future__ import annotations

import re

# A request to classify: the instruction must say so before its options are read as labels.
_CLASSIFY = re.compile(r"\b(?:classify|label|categori[sz]e|sentiment|which (?:department|category|team|label)|"
                       r"what (?:emotion|topic|category|kind)|is (?:this|the \w+ of this \w+) [\w ]{1,20}? or\b|"
                       r"decide whether)", re.IGNORECASE)
_OPTION = r"(?:(?:an?|not) )?[A-Za-z][\w&/-]*"
# "positive, negative or mixed", "sports, politics, ... or entertainment", "spam or not spam", "a fact or an opinion"
_OPTIONS = re.compile(rf"({_OPTION}(?:, {_OPTION})*,? or {_OPTION})(?=[?).:,]|\s+(?:and|with)\b|\s*$)")
_EACH = re.compile(r"\b(?:each|every|all)\b", re.IGNORECASE)
# Reasoning may name every label ("mixed, due to both positive and negative aspects"); three or more of them in a
# row, joined only by commas, "or", "and" or "/", all or all but one of those offered, are the list read back
# ('"Sports, Politics, Business, Science."' for five topics).
MIN_ECHOED = 3
_JOINER = r"\s*(?:,|/|&)?\s*(?:\b(?:or|and)\b)?\s*"


def _instruction(prompt: str) -> str:
    """The prompt up to its pasted input (a line break or an opening quote): where the labels are offered."""
    return re.split(r"[\n\"\u201c]", prompt or "", maxsplit=1)[0]


def offered_labels(prompt: str) -> list[str]:
    """The labels a classification prompt offers, lower-case but for acronyms ("Classify ... as positive, negative
    or mixed" -> ["positive", "negative", "mixed"]); [] when the prompt is no classification or offers none."""
    instruction = _instruction(prompt)
    if not _CLASSIFY.search(instruction):
        return []
    found = _OPTIONS.findall(instruction)
    if not found:
        return []
    words = [w for w in re.split(r",\s*(?:or\s+)?|\s+or\s+", found[-1]) if w]
    labels = [re.sub(r"^(?:an?|the)\s+", "", w.strip()) for w in words]
    labels = [w if w.isupper() else w.lower() for w in labels]  # "IT" is an acronym, "it" a pronoun
    return labels if len(labels) >= 2 else []


def _stem_pattern(label: str) -> str:
    stem = re.escape(label[:-1] if label.endswith("s") and len(label) > 4 else label)
    pattern = rf"\b{stem}" + (r"\b" if len(label) <= 3 else "")  # "item" does not name "IT"
    return pattern if label.isupper() else f"(?i:{pattern})"  # "send it" does not name it either


def _any_label(labels: list[str]) -> str:
    """A pattern naming any of the labels, the longest first ("not spam" before "spam")."""
    return "|".join(_stem_pattern(label) for label in sorted(labels, key=len, reverse=True))


def _names(answer: str, label: str) -> bool:
    return bool(re.search(_stem_pattern(label), answer))


def picks_no_label(prompt: str, answer: str) -> bool:
    """A classification answer that names none of the offered labels, or reads their list back."""
    labels = offered_labels(prompt)
    if not labels:
        return False
    deciding = _without_alternatives(answer, labels)
    if not any(_names(deciding, label) for label in labels):
        return True
    echoed = _longest_run(answer, labels) >= max(MIN_ECHOED, len(labels) - 1)
    return echoed and not labels_each_input(prompt)


def labels_each_input(prompt: str) -> bool:
    """Whether the prompt asks to label each of several inputs ("Label each of these messages"), so that every
    label may rightly appear, in the inputs' order."""
    return bool(_EACH.search(_instruction(prompt)))


def _without_alternatives(answer: str, labels: list[str]) -> str:
    """The answer without the question's alternatives restated ("whether the statement is a fact or an opinion"):
    labels named only there decide nothing."""
    one = _any_label(labels)
    return re.sub(rf"(?:{one})\w*(?:\s*,\s*(?:an?\s+)?(?:{one})\w*)*,?\s+or\s+(?:an?\s+)?(?:{one})\w*", " ", answer)


def _longest_run(answer: str, labels: list[str]) -> int:
    """The most distinct labels named one after another, with only joiners between them."""
    one = _any_label(labels)
    best = 0
    for m in re.finditer(rf"(?:{one})\w*(?:{_JOINER}(?:{one})\w*)+", answer):
        best = max(best, sum(_names(m.group(0), label) for label in labels))
    return best


def named_labels(prompt: str, answer: str) -> list[str]:
    """The offered labels the answer names, in the order it names them (a label named again right after itself
    counts once), leaving out the question's alternatives restated: "1. Billing ... 2. Technical ..." ->
    ["billing", "technical"]."""
    labels = offered_labels(prompt)
    if not labels:
        return []
    deciding = _without_alternatives(answer or "", labels)
    longest_first = sorted(labels, key=len, reverse=True)  # "not spam" before "spam", as _any_label matches
    named: list[str] = []
    for m in re.finditer(_any_label(labels), deciding):
        label = next(label for label in longest_first if _names(m.group(0), label))
        if not named or named[-1] != label:
            named.append(label)
    return named
