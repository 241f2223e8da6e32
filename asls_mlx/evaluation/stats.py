"""Confidence intervals for the eval: the percentile bootstrap over answers (persona x seed x prompt).

An eval's figures are means over a few dozen answers per persona; one run of 6 prompts moves by 0.2 from
one seed to the next. Each mean is reported with its 95% interval, and a comparison of two arms is paired:
the same persona, seed and prompt answered by both, resampled together, so the interval of the difference is
much tighter than the two intervals suggest.
"""

from __future__ import annotations

import random

BOOTSTRAP_SAMPLES = 2000


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def bootstrap_ci(values: list[float], level: float = 0.95, samples: int = BOOTSTRAP_SAMPLES,
                 seed: int = 0) -> tuple[float, float, float]:
    """(mean, low, high): the mean of ``values`` and its percentile-bootstrap interval (nan without values)."""
    xs = [v for v in values if v is not None and v == v]
    if not xs:
        return float("nan"), float("nan"), float("nan")
    rng = random.Random(seed)
    n = len(xs)
    means = sorted(_mean([xs[rng.randrange(n)] for _ in range(n)]) for _ in range(samples))
    tail = (1.0 - level) / 2
    return _mean(xs), means[int(tail * samples)], means[min(samples - 1, int((1.0 - tail) * samples))]


def paired_delta_ci(a: list[float], b: list[float], level: float = 0.95, samples: int = BOOTSTRAP_SAMPLES,
                    seed: int = 0) -> tuple[float, float, float]:
    """(mean of a - b, low, high) over pairs (a[i], b[i]) resampled together; pairs with a missing side drop."""
    diffs = [x - y for x, y in zip(a, b) if x is not None and y is not None and x == x and y == y]
    return bootstrap_ci(diffs, level, samples, seed)


def excludes_zero(ci: tuple[float, float, float]) -> bool:
    """Whether the interval (mean, low, high) lies entirely above or below 0."""
    _, low, high = ci
    return low > 0 or high < 0


__all__ = ["BOOTSTRAP_SAMPLES", "bootstrap_ci", "excludes_zero", "paired_delta_ci"]
