"""The preference pair: the unit the profiling layer hands to the adaptation layer."""

from __future__ import annotations

from dataclasses import dataclass

SOURCES = ("edit", "regenerate", "thumbs", "correction", "self", "explicit")


@dataclass
class PreferencePair:
    """A contrastive example mined from the user's behaviour (nobody labels anything).

    prompt: the user's message the answers respond to (single turn).
    chosen: the preferred answer. For an unpaired thumbs example (``rejected is None``, KTO-style) it is
        the one answer, and ``label`` says whether it was liked (+1) or disliked (-1).
    rejected: the dispreferred answer, or None for an unpaired example.
    source: where it came from: edit, regenerate, thumbs, correction, self (profile-ranked samples),
        explicit.
    weight: confidence in the preference, used to weight the loss (edit 1.0 ... self ~0.5 x margin).
    split: 'train' or 'val' (held out: training never sees it).
    label: 0 for a pair; +1/-1 for an unpaired example.
    message_ids: the messages it was mined from (provenance, for forget).
    session_id: the session it was mined in.
    id: the row id once stored.
    """

    prompt: str
    chosen: str
    rejected: str | None
    source: str
    weight: float
    split: str = "train"
    label: int = 0
    message_ids: tuple = ()
    session_id: int | None = None
    id: int | None = None

    @property
    def paired(self) -> bool:
        """True for a (chosen, rejected) pair, False for an unpaired KTO-style example."""
        return self.rejected is not None
