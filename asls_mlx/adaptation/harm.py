"""Is an update worse, or only different? Sign tests over a handful of paired numbers.

A session's held-out preference pairs and the gate's prompts are few (1-6): a mean that falls on them is often
noise. These decide by a one-sided sign test over the items that moved, and only past a large fall without one.
"""

from __future__ import annotations

import math

# Held-out preference rejects an update only when a one-sided sign test on its pairs says p < 5%.
HARM_ALPHA = 0.05
# Without per-pair margins, held-out means decide only on this many pairs or more.
MIN_HELDOUT_PAIRS = 8
# A fall of the mean profile fit this large rejects on any number of gate prompts (0.9 -> 0.3 on 3 prompts);
# smaller falls must be significant by the sign test, as held-out preference (0.87 -> 0.81 on 6 is noise).
LARGE_FIT_FALL = 0.15


def sign_test_p(worse: int, better: int) -> float:
    """One-sided sign test: the chance of ``worse`` or more of ``worse + better`` changed pairs going the
    wrong way if the update changed nothing (each way 1/2)."""
    n = worse + better
    return sum(math.comb(n, k) for k in range(worse, n + 1)) / 2**n if n else 1.0


def heldout_harm(before: dict, after: dict, alpha: float = HARM_ALPHA, tie: float = 1e-6) -> str | None:
    """Why the held-out preference pairs say the new adapter is worse, or None when they do not.

    With the per-pair ``margins`` of both: a paired sign test, first on the pairs whose verdict flipped
    (right -> wrong vs wrong -> right), then on the pairs whose margin moved; harm only when p < ``alpha``.
    So 1-4 pairs can never reject on their own (4 of 4 going wrong happens 1 time in 16 by chance): a session's
    3 held-out pairs falling 1.000 -> 0.667 is noise, not evidence. Without per-pair margins (older records):
    the means, and only on ``MIN_HELDOUT_PAIRS`` pairs or more.
    """
    b, a = before.get("margins"), after.get("margins")
    if b is not None and a is not None and len(a) == len(b):
        flips_bad = sum(x > tie >= y for x, y in zip(b, a))
        flips_good = sum(y > tie >= x for x, y in zip(b, a))
        p = sign_test_p(flips_bad, flips_good)
        if p < alpha:
            return (f"held-out accuracy fell {before['accuracy']:.3f} -> {after['accuracy']:.3f} on {len(a)} pairs "
                    f"({flips_bad} turned wrong, {flips_good} right; sign test p={p:.3f})")
        fell, rose = sum(y < x - tie for x, y in zip(b, a)), sum(y > x + tie for x, y in zip(b, a))
        p = sign_test_p(fell, rose)
        if p < alpha:
            return (f"held-out reward margin fell {before['margin']:.4f} -> {after['margin']:.4f} on {len(a)} pairs "
                    f"({fell} fell, {rose} rose; sign test p={p:.3f})")
        return None
    if min(before.get("n", 0), after.get("n", 0)) < MIN_HELDOUT_PAIRS:
        return None
    if after["accuracy"] < before["accuracy"] - tie:
        return f"held-out accuracy fell {before['accuracy']:.3f} -> {after['accuracy']:.3f}"
    if after["margin"] < before["margin"] - tie:
        return f"held-out reward margin fell {before['margin']:.4f} -> {after['margin']:.4f}"
    return None


def profile_fit_harm(fits, min_gain: float = -0.02, alpha: float = HARM_ALPHA, tie: float = 1e-6) -> str | None:
    """Why the new answers fit the user's profile worse, or None when they do not. ``fits``: per prompt
    (before, after). Harm: the mean falls by more than ``-min_gain`` and either by LARGE_FIT_FALL or more, or
    significantly (one-sided sign test over the prompts whose fit moved, p < ``alpha``)."""
    if not fits:
        return None
    before = sum(b for b, _ in fits) / len(fits)
    after = sum(a for _, a in fits) / len(fits)
    if after >= before + min_gain:
        return None
    fell, rose = sum(a < b - tie for b, a in fits), sum(a > b + tie for b, a in fits)
    p = sign_test_p(fell, rose)
    if before - after >= LARGE_FIT_FALL or p < alpha:
        return (f"answers fit the profile worse ({before:.2f} -> {after:.2f} on {len(fits)} prompts; "
                f"{fell} fell, {rose} rose; sign test p={p:.3f})")
    return None


__all__ = ["HARM_ALPHA", "LARGE_FIT_FALL", "MIN_HELDOUT_PAIRS", "heldout_harm", "profile_fit_harm", "sign_test_p"]
