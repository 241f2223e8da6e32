"""Pairs from the profile's length: an answer the user turned down, cut to the length they keep.

A user whose edits and "shorter please" taught the profile a short length (``Profile.target_words``) turns down a
long answer in more ways than by editing it: a regeneration, a thumbs-down, a correction the model answered at the
same length again. Those say "not this" and nothing about what instead. Cut to its opening whole sentences at
about the user's length, such an answer is what the user's own edits make of one (they keep the opening and drop
the rest), so it becomes the chosen side of a pair against the answer as it was: the model's own words, about its
prompt, only shorter. Only prose answers to plain questions are cut: a message, a list, code or a text pasted in
to work on has a form that cutting breaks. The chosen answer then passes mining's checks like any model answer.
"""

from __future__ import annotations

from asls_mlx.profiling.content import WRITE_MESSAGE, items_asked, split_instruction
from asls_mlx.profiling.features import CODE_BLOCK, has_bullets, sentences, word_count
from asls_mlx.profiling.profile import Profile, length_kind
from asls_mlx.profiling.unfinished import drop_unfinished

# Cut only answers at least this many times the user's length: a little over it is the user's to shorten.
MIN_RATIO = 2.0
# The cut keeps whole sentences while they stay within this many times the user's length (the first always).
SLACK = 1.25


def short_length(profile: Profile | None) -> int | None:
    """The user's preferred length in words when the profile claims short answers, else None."""
    words = profile.target_words if profile is not None else None
    return words if words is not None and length_kind(words) == "short" else None


def trimmed(prompt: str, answer: str, words: int) -> str | None:
    """``answer``'s opening whole sentences, about ``words`` words; None when the prompt or the answer is not one
    to cut (see the module doc), or the cut would not make the answer at most half as long."""
    instruction, pasted = split_instruction(prompt)
    if pasted is not None or WRITE_MESSAGE.search(instruction) or items_asked(instruction) is not None:
        return None
    text = drop_unfinished(answer or "")
    if CODE_BLOCK.search(text) or has_bullets(text) or "|" in text or word_count(answer) < MIN_RATIO * words:
        return None
    kept: list[str] = []
    count = 0
    for sentence in sentences(text):
        n = word_count(sentence)
        if kept and count + n > SLACK * words:
            break
        kept.append(sentence)
        count += n
    if not kept or count * MIN_RATIO > word_count(answer) or not kept[-1].endswith((".", "!", "?")):
        return None
    return " ".join(kept)


__all__ = ["MIN_RATIO", "SLACK", "short_length", "trimmed"]
