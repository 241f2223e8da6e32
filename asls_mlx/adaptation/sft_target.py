"""What the SFT term imitates of a pair whose chosen answer is the rejected one plus a line the user added.

The SFT term (``LearningConfig.sft_weight`` x the NLL of the chosen answer) is a mean over the chosen answer's
tokens: for a closing question or an "In short:" line the user added to a ~100-token answer, ~15 of them carry
the lesson and the rest are the model's own words. With ``LearningConfig.sft_on_change`` the term imitates the
added line alone. A line added at the end: the answers' shared head becomes context (``batching.encode_pair``);
DPO's log-ratios of a shared head cancel, so the preference is unchanged. A line added at the start: the chosen
answer keeps its whole text for the preference term, and ``with_sft_rows`` adds rows that select only the line's
tokens for the SFT term. A rewrite is neither: its whole text is the lesson.
"""

from __future__ import annotations

import os

import mlx.core as mx
import numpy as np

ADDED_LINE_MAX_CHARS = 200  # a closing question or a one-line summary, not a paragraph
# An opening line added: the rest of the chosen answer is the rejected one's head, give or take, and most of it (an
# edit may drop an unfinished last sentence; a correction that keeps the code and drops its explanation is a rewrite).
KEPT_SHARE = 0.9
KEPT_OF_ANSWER = 0.7


def adds_one_line(chosen: str, rejected: str) -> bool:
    """``chosen`` is ``rejected``'s head (from its start to a line break) plus one new short line: the user added a
    closing question or a summary line to the answer. A rewrite (the answers part mid-line, or the chosen one goes on
    for several lines) is not: its whole text is the lesson."""
    head = os.path.commonprefix([chosen, rejected])
    if not chosen[len(head):].startswith("\n"):
        line_start = head.rfind("\n") + 1
        if line_start == 0 or " " in head[line_start:].strip():
            return False  # the answers part mid-line: a rewrite
        head = head[:line_start]  # they part within a line's first word: the line is new
    added = chosen[len(head):]
    if not head.strip():
        return False
    lines = [line for line in added.splitlines() if line.strip(" `*_#-")]
    return len(lines) == 1 and len(added.strip()) <= ADDED_LINE_MAX_CHARS


def added_opening(chosen: str, rejected: str) -> str | None:
    """The line the user put before the answer ("In short: ...\\n\\n" then the answer as it was, or its head when
    the edit also dropped an unfinished last sentence), with its line breaks; None when ``chosen`` is no such
    answer."""
    line, sep, rest = chosen.partition("\n")
    kept, answer = rest.lstrip("\n"), rejected.lstrip()
    if not sep or not line.strip() or len(line.strip()) > ADDED_LINE_MAX_CHARS or not kept or not answer:
        return None
    shared = len(os.path.commonprefix([kept, answer]))
    if shared < KEPT_SHARE * len(kept) or shared < KEPT_OF_ANSWER * len(answer) or answer.startswith(line.strip()):
        return None  # not the answer as it was, or the same opening
    if line.rstrip().endswith(":"):
        return None  # a lead-in ("Here's an example using Python:") announces the rest: no line of its own
    return chosen[:len(chosen) - len(kept)]


def with_sft_rows(batch, sft_tokens: list[int | None]):
    """``batch`` (a ``Batch`` or ``PairedBatch`` of pairs: chosen rows, then rejected rows) with one more row per
    pair in ``select`` and ``counts``: the chosen answer's first ``sft_tokens[i]`` tokens (all of them for None).
    The SFT term reads those rows (``losses``); the model's inputs and the preference rows are unchanged."""
    select = np.array(batch.select)
    n = len(sft_tokens)
    rows = np.zeros((n, select.shape[1]), np.float32)
    for i, k in enumerate(sft_tokens):
        tokens = np.flatnonzero(select[i])
        rows[i, tokens[:k] if k else tokens] = 1.0
    full = np.concatenate([select, rows])
    return type(batch)(**{**vars(batch), "select": mx.array(full), "counts": mx.array(full.sum(1))})
