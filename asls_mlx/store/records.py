"""Plain dataclasses for the rows the store hands out, and the text normaliser behind pair hashes."""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class User:
    id: int
    name: str
    created_at: float


@dataclass(frozen=True)
class Session:
    id: int
    user_id: int
    started_at: float
    ended_at: float | None
    processed: bool


@dataclass(frozen=True)
class Message:
    """One chat message. ``superseded_by`` is set when a regeneration replaced this answer."""

    id: int
    session_id: int
    role: str
    content: str
    parent_id: int | None
    superseded_by: int | None
    edited_content: str | None
    created_at: float

    @property
    def text(self) -> str:
        """What the user ended up with: their edit if they made one, else the original."""
        return self.edited_content if self.edited_content is not None else self.content

    @property
    def active(self) -> bool:
        return self.superseded_by is None


@dataclass(frozen=True)
class Feedback:
    id: int
    message_id: int
    kind: str
    payload: dict[str, Any]
    confidence: float
    created_at: float


@dataclass(frozen=True)
class ProfileSnapshot:
    id: int
    user_id: int
    version: int
    session_id: int | None
    data: dict[str, Any]
    created_at: float


@dataclass(frozen=True)
class AdapterVersion:
    id: int
    user_id: int
    version: int
    path: str
    base_model: str
    base_hash: str | None
    status: str
    metrics: dict[str, Any]
    parent_version: int | None
    created_at: float


@dataclass(frozen=True)
class TrainingRun:
    id: int
    user_id: int
    started_at: float
    ended_at: float | None
    status: str
    reason: str | None
    metrics: dict[str, Any]
    parent_version: int | None
    adapter_version: int | None
    pair_ids: tuple[int, ...] = field(default=())
    session_ids: tuple[int, ...] = field(default=())


@dataclass
class PreferencePair:
    """A contrastive example mined from the user's behaviour (nobody labels anything).

    The store's own record: profiling mines these, the store keeps them, adaptation trains on them.

    prompt: the user's message the answers respond to (single turn).
    chosen: the preferred answer. For an unpaired thumbs example (``rejected is None``, KTO-style) it is
        the one answer, and ``label`` says whether it was liked (+1) or disliked (-1).
    rejected: the dispreferred answer, or None for an unpaired example.
    source: where it came from (one of ``schema.PAIR_SOURCES``): edit, regenerate, thumbs, correction,
        self (profile-ranked samples), explicit.
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


_SPACE = re.compile(r"\s+")


def normalize_text(text: str | None) -> str:
    """Case-, width- and whitespace-insensitive form of a text, so near-identical pairs dedupe."""
    if text is None:
        return ""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text)).strip().casefold()


def pair_hash(prompt: str, chosen: str, rejected: str | None, label: int = 0) -> str:
    """Stable identity of a pair: the same prompt/chosen/rejected (up to normalisation) is one pair."""
    key = json.dumps(
        [normalize_text(prompt), normalize_text(chosen),
         None if rejected is None else normalize_text(rejected), int(label)],
        ensure_ascii=False,
    )
    return hashlib.sha256(key.encode("utf-8")).hexdigest()
