"""The commit gate's answers and their relevance scores, kept in the user's directory between updates.

Every update judges the new adapter's greedy answers against the active version's and the base model's, to the
same prompts (held-out prompts, then the newest) and the same probe questions. Greedy answers of fixed weights
under a fixed system prompt do not change, so decoding them again at every update (a fresh process each time)
was ~20 s of the update spent on answers already seen. They are kept here per setting (base weights, gate
options), per system prompt (the user's profile goes into it) and per weights ("base", "v3"); the base model's
PMI of each (prompt, answer) as well. This is user data (the user's prompts, answers shaped by their profile):
it lives in the user's directory, goes when the user does, and is written atomically, owner-only. A missing or
unreadable file only costs the decoding.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from asls_mlx.adaptation.answer_check import remembered_pmi
from asls_mlx.adaptation.gate import RelevanceFn
from asls_mlx.paths import atomic_write_text

FORMAT = 1
FILE_NAME = "gate-answers.json"  # in the user's directory
KEPT_SYSTEMS = 2  # the user's latest system prompts (a profile that changes back and forth)
KEPT_VERSIONS = 2  # adapter versions per system prompt, besides the base model (a rollback, a kept old one)

def weights_name(version: int | None, created_at: float | None = None) -> str:
    """The key of an adapter version's answers ("base" without one); with the time it was recorded, a number that
    came back after a forget cannot read the answers of the weights it named before."""
    if version is None:
        return "base"
    return f"v{version}" if created_at is None else f"v{version}@{created_at:.6f}"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


class GateMemory:
    """Kept answers and PMI for one setting (``setting``: what else the answers depend on: the base weights'
    fingerprint, the gate's options, the relevance check's system prompt)."""

    def __init__(self, path: Path | str, setting: str):
        self.path, self.setting = Path(path), _digest(setting)
        self._systems: dict[str, dict[str, dict[str, str]]] = {}
        self._pmi: dict[tuple[str, str], float] = {}
        self._pmi_used: dict[tuple[str, str], float] = {}
        self._load()

    def _load(self) -> None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if data.get("format") != FORMAT or data.get("setting") != self.setting:
                return
            self._systems = {s: {w: dict(a) for w, a in by.items()} for s, by in data["systems"].items()}
            self._pmi = {(q, a): float(x) for q, a, x in data["pmi"]}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            self._systems, self._pmi = {}, {}

    def answers(self, system: str, weights: str) -> dict[str, str]:
        """The kept answers of ``weights`` under ``system`` (prompt -> answer; {} when none)."""
        return dict(self._systems.get(_digest(system), {}).get(weights, {}))

    def keep(self, system: str, weights: str, answers: dict[str, str]) -> None:
        """Add ``answers`` of ``weights`` under ``system`` (the newest system prompt and version stay)."""
        if not answers:
            return
        key = _digest(system)
        by_weights = self._systems.pop(key, {})
        by_weights[weights] = {**by_weights.pop(weights, {}), **answers}
        versions = [w for w in by_weights if w != "base"]
        for old in versions[:-KEPT_VERSIONS]:
            del by_weights[old]
        self._systems[key] = by_weights  # last: the newest
        for old in list(self._systems)[:-KEPT_SYSTEMS]:
            del self._systems[old]

    def remembered(self, relevance: RelevanceFn) -> RelevanceFn:
        """``relevance`` reading kept scores first; what it computes or reads is kept at ``save()``."""
        known = remembered_pmi(relevance, self._pmi)

        def pmi(prompts: list[str], answers: list[str]) -> list[float]:
            scores = known(prompts, answers)
            self._pmi_used.update(zip(zip(prompts, answers), scores))
            return scores
        return pmi

    def keep_only(self, prompts: set[str]) -> None:
        """Drop what was kept for any other prompt (a forgotten session's, a deleted pair's)."""
        for by_weights in self._systems.values():
            for weights, answers in by_weights.items():
                by_weights[weights] = {q: a for q, a in answers.items() if q in prompts}
        self._pmi_used = {(q, a): x for (q, a), x in self._pmi_used.items() if q in prompts}

    def save(self) -> None:
        """Write what is kept; the scores kept are this update's (the next judges mostly the same answers)."""
        data = {"format": FORMAT, "setting": self.setting, "systems": self._systems,
                "pmi": [[q, a, x] for (q, a), x in self._pmi_used.items()]}
        try:
            atomic_write_text(self.path, json.dumps(data, ensure_ascii=False))
        except OSError:  # a full or read-only disk costs the decoding next time, nothing else
            pass


__all__ = ["FILE_NAME", "GateMemory", "weights_name"]
