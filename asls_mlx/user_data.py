"""A user's data as theirs: going back to an older adapter, and forgetting sessions with what was learned from them."""

from __future__ import annotations

import shutil

from asls_mlx.errors import ASLSError
from asls_mlx.store import ForgetSummary, Store, User


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
    """
    summary = store.forget(user.name, session_id=session_id, since=since, until=until, everything=everything)
    for path in summary.tainted_paths:
        shutil.rmtree(path, ignore_errors=True)
    store.requeue_pairs(user.id, summary.tainted_versions)
    active = store.active_adapter(user.id)
    if active is None or active.version in summary.tainted_versions:
        clean = store.last_clean_adapter(user.id)
        store.set_active_adapter(user.id, clean.version if clean else None)
    return summary


__all__ = ["describe_version", "forget", "rollback_version"]
