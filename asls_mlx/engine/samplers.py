"""Token samplers: mlx-lm's top-p + top-k chain, drawn among the top k candidates only.

mlx-lm's top-p sorts every row's 49k log-probs at every decoding step, and its categorical draw
makes Gumbel noise for all 49k. With a top-k cut in the chain, the kept tokens are always among the
k most likely, so only those k matter: an ``argpartition`` (O(V)) picks them, the nucleus follows
from their sorted cumulative mass, and the draw is among them. The kept set is the one mlx-lm's
``make_sampler(temp, top_p=p, top_k=k)`` keeps and each token's probability is the same (masked
tokens have none); the random draws differ from mlx-lm's for the same seed. The CPU backend
finds the candidates with NumPy's ``argpartition``, several times faster there than MLX's
(``host_top_k``, which ``ChatEngine`` takes from the backend).

The CPU backend's loops hold NumPy logits: ``HostSampler.host(logits)`` samples them and
``HostProcessor.host`` changes them in place, without the MLX log-softmax and the copies to MLX and
back. Measurements: docs/performance.md.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable

import mlx.core as mx
import numpy as np
from mlx_lm.sample_utils import make_repetition_penalty, make_sampler as mlx_lm_make_sampler

Sampler = Callable[[mx.array], mx.array]


class HostSampler(ABC):
    """A sampler of MLX log-probs (as mlx-lm's loops call it) that also samples NumPy logits."""

    @abstractmethod
    def __call__(self, logprobs: mx.array) -> mx.array: ...

    @abstractmethod
    def host(self, logits: np.ndarray) -> np.ndarray:
        """One token per row of ``logits`` (rows, V), which may serve as scratch space."""


class HostProcessor(ABC):
    """A logits processor (as mlx-lm's loops call it) that also changes one row of NumPy logits in place."""

    @abstractmethod
    def __call__(self, tokens: mx.array, logits: mx.array) -> mx.array: ...

    @abstractmethod
    def host(self, tokens: list[int], logits: np.ndarray) -> None: ...


def top_k_candidates(logprobs: mx.array, top_k: int, host: bool = False) -> tuple[mx.array, mx.array]:
    """The ``top_k`` most likely tokens of each row (in no particular order) and their log-probs,
    found with NumPy's ``argpartition`` when ``host`` (faster on the CPU), else MLX's."""
    if host:
        x = np.asarray(logprobs.astype(mx.float32))
        index = np.argpartition(-x, top_k - 1, axis=-1)[..., :top_k]
        return mx.array(index), mx.array(np.take_along_axis(x, index, axis=-1))
    index = mx.argpartition(-logprobs, kth=top_k - 1, axis=-1)[..., :top_k]
    return index, mx.take_along_axis(logprobs, index, axis=-1)


@mx.compile
def _nucleus(candidates: mx.array, top_p: mx.array) -> mx.array:
    """``candidates`` with those outside the top-p nucleus set to -inf.

    The log-probs must be normalised over the whole vocabulary (mlx-lm's loops pass ``logits -
    logsumexp``), so the mass above each candidate is a sum over more likely candidates only; ties at
    the threshold are kept, as mlx-lm's mask keeps them.
    """
    ascending = mx.sort(candidates, axis=-1)
    mass_above = mx.cumsum(mx.exp(ascending), axis=-1, reverse=True, inclusive=False)
    # the most likely candidate has nothing above it, so at most top_k - 1 are dropped
    dropped = (mass_above >= top_p).sum(axis=-1, keepdims=True)
    threshold = mx.take_along_axis(ascending, dropped, axis=-1)
    return mx.where(candidates < threshold, -float("inf"), candidates)


def _cut(candidates: mx.array, top_p: float) -> mx.array:
    return _nucleus(candidates, mx.array(top_p, dtype=candidates.dtype))


def nucleus_top_k(logprobs: mx.array, top_p: float, top_k: int, host: bool = False) -> tuple[mx.array, mx.array]:
    """The top-k candidates (token ids, log-probs) with those outside the top-p nucleus at -inf:
    what ``TopKSampler`` draws among."""
    index, candidates = top_k_candidates(logprobs, top_k, host)
    return index, _cut(candidates, top_p)


def _draw(index: mx.array, candidates: mx.array, temp: float) -> mx.array:
    choice = mx.random.categorical(candidates * (1 / temp), axis=-1)
    return mx.take_along_axis(index, choice[..., None], axis=-1).squeeze(-1)


def host_top_k(logits: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]:
    """``top_k_candidates`` of NumPy logits (rows, V): ids and log-probs normalised over the whole
    vocabulary. ``logits`` is used as scratch space (the batch hands over a fresh array)."""
    # the call ``top_k_candidates`` makes on the log-probs (these values shifted by the row's
    # logsumexp): the same candidates, in the same order unless the shift's rounding tied two values
    # (then a seeded draw may pick another token than from MLX log-probs; the distribution is the same)
    index = np.argpartition(-logits, top_k - 1, axis=-1)[:, :top_k]
    candidates = np.take_along_axis(logits, index, axis=-1)
    peak = logits.max(axis=-1, keepdims=True)
    np.subtract(logits, peak, out=logits)
    np.exp(logits, out=logits)
    return index, candidates - (peak + np.log(logits.sum(axis=-1, keepdims=True)))


class TopKSampler(HostSampler):
    """Draws among the top k (after the top-p cut when ``0 < top_p < 1``) at temperature ``temp``:
    ``__call__`` on MLX log-probs as mlx-lm's loops give them (candidates found with NumPy when
    ``host_top_k``), ``host`` on NumPy logits."""

    def __init__(self, temp: float, top_p: float, top_k: int, host_top_k: bool = False):
        self.temp, self.top_p, self.top_k, self.host_top_k = temp, top_p, top_k, host_top_k
        self.nucleus = 0 < top_p < 1

    def __call__(self, logprobs: mx.array) -> mx.array:
        if self.top_k >= logprobs.shape[-1]:
            return mlx_lm_make_sampler(temp=self.temp, top_p=self.top_p if self.nucleus else 0.0)(logprobs)
        index, candidates = top_k_candidates(logprobs, self.top_k, self.host_top_k)
        return self._draw(index, candidates)

    def host(self, logits: np.ndarray) -> np.ndarray:
        if self.top_k >= logits.shape[-1]:
            x = mx.array(logits)
            return np.asarray(self(x - mx.logsumexp(x, axis=-1, keepdims=True)))
        index, candidates = host_top_k(logits, self.top_k)
        return np.asarray(self._draw(mx.array(index), mx.array(candidates)))

    def _draw(self, index: mx.array, candidates: mx.array) -> mx.array:
        return _draw(index, _cut(candidates, self.top_p) if self.nucleus else candidates, self.temp)


class GreedySampler(HostSampler):
    """The most likely token (mlx-lm's temp 0 sampler); ``host`` on NumPy logits."""

    def __call__(self, logprobs: mx.array) -> mx.array:
        return mx.argmax(logprobs, axis=-1)

    def host(self, logits: np.ndarray) -> np.ndarray:
        return logits.argmax(axis=-1)


def make_sampler(temp: float = 0.0, top_p: float = 1.0, top_k: int = 0, host_top_k: bool = False) -> Sampler:
    """A ``sampler(logprobs) -> tokens`` for mlx-lm's generation loops.

    temp 0 is greedy. With ``top_k`` smaller than the vocabulary the draw is among the top k, after
    the top-p cut when ``0 < top_p < 1``; otherwise this is mlx-lm's own sampler. Ours also sample
    NumPy logits (``HostSampler``). ``host_top_k``: the backend's choice (``Backend.host_top_k``).
    """
    if temp <= 0:
        return GreedySampler()
    if top_k <= 0:
        return mlx_lm_make_sampler(temp=temp, top_p=top_p if 0 < top_p < 1 else 0.0)
    return TopKSampler(temp, top_p, top_k, host_top_k)


class RepetitionPenalty(HostProcessor):
    """mlx-lm's repetition penalty (``make_repetition_penalty``) as a logits processor, which can also
    penalise one row of NumPy logits in place (``host``): the CPU backend's batch applies it to its
    rows in a fraction of the time one MLX processor call per row takes to build its graph."""

    def __init__(self, penalty: float, context_size: int = 20, history: list[int] = ()):
        """``history``: the tokens before the ones a loop passes in (the prompt's cached part), so an
        answer does not depend on how much of its prompt came from the cache."""
        self.penalty, self.context_size = penalty, context_size
        self.history = list(history)[-context_size:] if context_size else []
        self._mlx = make_repetition_penalty(penalty, context_size)

    def window(self, tokens) -> list[int]:
        """The tokens penalised: the last ``context_size`` of the history and ``tokens``."""
        return (self.history + list(tokens))[-self.context_size:] if self.context_size else []

    def __call__(self, tokens: mx.array, logits: mx.array) -> mx.array:
        recent = self.window(tokens.reshape(-1).tolist()[-self.context_size:] if self.context_size else [])
        return self._mlx(mx.array(recent, dtype=mx.int32), logits) if recent else logits

    def host(self, tokens: list[int], logits: np.ndarray) -> None:
        recent = self.window(tokens[-self.context_size:] if self.context_size else [])
        if recent:
            recent = np.asarray(recent)
            picked = logits[recent]
            logits[recent] = np.where(picked < 0, picked * self.penalty, picked / self.penalty)


class ScaleLogits(HostProcessor):
    """Logits times ``factor`` (a processor; ``host`` scales a NumPy row in place)."""

    def __init__(self, factor: float):
        self.factor = factor

    def __call__(self, tokens: mx.array, logits: mx.array) -> mx.array:
        return logits * self.factor

    def host(self, tokens: list[int], logits: np.ndarray) -> None:
        logits *= np.float32(self.factor)
