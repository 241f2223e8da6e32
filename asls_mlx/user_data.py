"""A user's data as theirs: going back to an older adapter, and forgetting sessions with what was learned from them."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass

from asls_mlx.errors import ASLSError
from asls_mlx.profiling import LearnedFeature, Profile, direction, learned, live_profile, load_profile, teaches
from asls_mlx.profiling.profile import FEATURES
from asls_mlx.session_update import forget_gate_answers
from asls_mlx.store import ForgetSummary, PreferencePair, Store, User


def rollback_version(store: Store, user: User, version: int | None = None) -> int | None:
    """Make ``version`` the active adapter (default: the one before the active one; 0 or None at the
    oldest = the base model). Returns the version now active."""
    active = store.active_adapter(user.id)
    usable = [v.version for v in store.adapter_versions(user.id) if v.status in ("active", "archived")]
    if version is None:
        older = [v for v in usable if active is None or v < active.version]
        version = older[-1] if older else 0
    if version and version not in usable:
        raise ASLSError(f"no usable adapter version {version} (see `asls adapters`)")
    store.set_active_adapter(user.id, version or None)
    return version or None


def describe_version(store: Store, user: User, version: int | None) -> str:
    """ "adapter v3 — trained on 12 new pairs, held-out preference 0.71 → 0.83" (the chat's notice on a swap)."""
    if not version:
        return "now using the base model (no adapter)"
    run = next((r for r in reversed(store.training_runs(user.id)) if r.adapter_version == version), None)
    text = f"adapter v{version}"
    m = run.metrics if run else {}
    if m.get("new_pairs"):
        text += f" — trained on {m['new_pairs']} new pairs"
    before, after = m.get("val_before") or {}, m.get("val_after") or {}
    if before.get("n") and after.get("n"):
        text += f", held-out preference {before['accuracy']:.2f} → {after['accuracy']:.2f}"
    return text


def forget(store: Store, user: User, session_id: int | None = None, since=None, until=None,
           everything: bool = False) -> ForgetSummary:
    """Forget a session, a time range or everything — and the adapters trained on it.

    The adapter folders that saw the data are deleted; what those versions learned from data that
    remains is queued to be learned again, from the last clean version, which becomes the active one.
    Features the user removed from the profile stay removed (the forget may drop the snapshot that says so).
    """
    removed = load_profile(store, user).removed
    summary = store.forget(user.name, session_id=session_id, since=since, until=until, everything=everything)
    _withdraw_tainted(store, user, summary)
    if not everything:
        _keep_removals(store, user, removed)
    return summary


def _withdraw_tainted(store: Store, user: User, summary: ForgetSummary) -> None:
    forget_gate_answers(store, user)
    for path in summary.tainted_paths:
        shutil.rmtree(path, ignore_errors=True)
    store.requeue_pairs(user.id, summary.tainted_versions)
    active = store.active_adapter(user.id)
    if active is None or active.version in summary.tainted_versions:
        clean = store.last_clean_adapter(user.id)
        store.set_active_adapter(user.id, clean.version if clean else None)


def _keep_removals(store: Store, user: User, removed: dict[str, float]) -> None:
    profile = load_profile(store, user)
    missing = {k: t for k, t in removed.items() if profile.removed.get(k) != t}
    if missing:
        for key, at in missing.items():
            profile = profile.without(key, at)
        store.save_profile(user.id, _snapshot(profile))


def _snapshot(profile: Profile) -> dict:
    data = profile.to_dict()
    data.pop("version", None)
    return data


def forget_pairs(store: Store, user: User, pair_ids: list[int]) -> ForgetSummary:
    """Take preference pairs out of training for good: delete them, and withdraw the adapters trained on
    them (as :func:`forget` does); their messages stay."""
    summary = store.forget_pairs(user.name, list(pair_ids))
    _withdraw_tainted(store, user, summary)
    return summary


@dataclass(frozen=True)
class FeatureForgotten:
    """What removing a profile feature did: what it said before, and the pairs (and adapters) it took out."""

    feature: str
    said: str
    pairs: ForgetSummary


def forget_feature(store: Store, user: User, name: str, session_id: int | None = None) -> FeatureForgotten:
    """Remove one feature ("headings", "name", a topic) from the profile: it starts over from nothing, what
    the user said before no longer counts for it (in the open session ``session_id`` too), and the pairs that
    teach it leave training (with the adapters trained on them). What the user expresses later counts again."""
    profile = live_profile(store, user, session_id)
    key = profile.feature_key(name)
    if key in FEATURES:
        said = profile.describe(key)
        lean = direction(profile, key)
        if lean is None and getattr(profile, key).weight <= 0:
            raise ASLSError(f"the profile has learned nothing about {key} (`asls profile --evidence` lists what it has)")
    else:
        lean = None
        said = "interested" if key.startswith("topic:") else profile.facts.get("name") if key == "name" else profile.language
        if said is None:
            raise ASLSError(f"the profile has no {key} to forget (`asls profile --evidence` lists what it has)")
    store.save_profile(user.id, _snapshot(load_profile(store, user).without(key, time.time())))
    teaching = [p.id for p in store.pairs(user.id, split=None) if lean is not None and teaches(p, key, lean)]
    return FeatureForgotten(key, said, forget_pairs(store, user, teaching))


class LearnedData:
    """What the profile learned, and taking part of it back: the methods :class:`~asls_mlx.Assistant` gets
    from here use its ``store``, ``user``, ``session_id`` and ``sync_adapter``."""

    def learned(self) -> list[LearnedFeature]:
        """Each feature of :attr:`profile` with its confidence and the messages, corrections and edits it
        came from (newest first): what ``/learned`` and ``asls profile --evidence`` show."""
        return learned(self.store, self.user, self.session_id)

    def pairs(self, limit: int = 20) -> list[PreferencePair]:
        """The newest preference pairs mined from this user's feedback (both splits), newest first."""
        return self.store.pairs(self.user.id, split=None)[::-1][:max(0, int(limit))]

    def forget_pair(self, pair_id: int) -> ForgetSummary:
        """Take one preference pair out of training for good (and withdraw the adapters trained on it)."""
        if isinstance(pair_id, bool) or not isinstance(pair_id, int):
            raise ASLSError(f"a pair id is a whole number (`/learned` lists them), not {pair_id!r}")
        summary = forget_pairs(self.store, self.user, [pair_id])
        self.sync_adapter()
        return summary

    def forget_feature(self, name: str) -> FeatureForgotten:
        """Remove one feature ("headings", "length", "name", a topic) from the profile: it starts over, what
        you said before no longer counts for it, and the pairs that teach it leave training."""
        result = forget_feature(self.store, self.user, name, self.session_id)
        self.sync_adapter()
        return result

    def profile_changes(self) -> list[str]:
        """What the latest session changed in the profile (empty until there are two snapshots)."""
        snapshots = self.store.profiles(self.user.id)
        if len(snapshots) < 2:
            return []
        return load_profile(self.store, self.user).diff(Profile.from_dict(snapshots[-2].data))


__all__ = ["FeatureForgotten", "LearnedData", "describe_version", "forget", "forget_feature", "forget_pairs", "rollback_version"]
