"""The fast nucleus sampler keeps exactly the tokens mlx-lm's top-p + top-k chain keeps, and draws the same ones."""

import mlx.core as mx
import pytest
from mlx_lm.sample_utils import apply_top_k, apply_top_p, make_sampler as mlx_lm_sampler

from asls_mlx.engine.samplers import apply_top_p_top_k, make_sampler


def _logprobs(scale: float, rows: int = 24, vocab: int = 4096, seed: int = 0) -> mx.array:
    logits = mx.random.normal((rows, vocab), key=mx.random.key(seed)) * scale
    return logits - mx.logsumexp(logits, axis=-1, keepdims=True)


@pytest.mark.parametrize("scale", [0.5, 3.0, 8.0])  # flat: top-k binds; peaked: the nucleus is smaller than k
@pytest.mark.parametrize("top_p,top_k", [(0.95, 64), (0.5, 256), (0.9, 1)])
def test_mask_equals_mlx_lm_top_p_then_top_k(scale, top_p, top_k):
    lp = _logprobs(scale)
    ours = apply_top_p_top_k(lp, top_p, top_k)
    reference = apply_top_k(apply_top_p(lp, top_p), top_k)
    kept = (~mx.isinf(ours)).sum(axis=-1)
    assert mx.array_equal(mx.isinf(ours), mx.isinf(reference)).item()
    assert mx.array_equal(mx.where(mx.isinf(ours), 0, ours), mx.where(mx.isinf(ours), 0, lp)).item()
    assert kept.max().item() <= top_k and kept.min().item() >= 1


def test_nucleus_smaller_than_k_is_found():
    lp = _logprobs(8.0)
    kept = (~mx.isinf(apply_top_p_top_k(lp, 0.9, 256))).sum(axis=-1)
    assert kept.max().item() < 256  # the top-p cut, not top-k, decided these rows


def test_same_seed_same_tokens_as_mlx_lm():
    lp = _logprobs(3.0, rows=64)
    mx.random.seed(11)
    ours = make_sampler(0.8, 0.95, 128)(lp)
    mx.random.seed(11)
    reference = mlx_lm_sampler(temp=0.8, top_p=0.95, top_k=128)(lp)
    assert mx.array_equal(ours, reference).item()


def test_greedy_and_plain_fallbacks():
    lp = _logprobs(3.0)
    assert mx.array_equal(make_sampler(0.0, 0.95, 256)(lp), mx.argmax(lp, axis=-1)).item()
    # k at least the vocabulary: plain top-p, still a valid token with positive probability
    tokens = make_sampler(0.8, 0.95, 10_000)(lp)
    assert tokens.shape == (lp.shape[0],) and (mx.take_along_axis(lp, tokens[:, None], -1) > -1e9).all().item()


def test_top_k_alone_draws_from_the_top_k_distribution():
    """top_k without top_p: drawn among the k candidates only, with mlx-lm's top-k probabilities."""
    import numpy as np

    vocab, k, temp, draws = 50, 5, 0.8, 40_000
    logits = mx.random.normal((1, vocab), key=mx.random.key(4)) * 2
    lp = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
    mx.random.seed(5)
    tokens = np.asarray(make_sampler(temp, 1.0, k)(mx.repeat(lp, draws, axis=0)))
    top = np.argsort(-np.asarray(lp[0]))[:k]
    assert set(np.unique(tokens)) <= set(top.tolist())
    want = np.exp(np.asarray(lp[0])[top] / temp)
    want /= want.sum()
    got = np.array([(tokens == t).mean() for t in top])
    assert np.abs(got - want).max() < 0.01  # ~4 standard errors at 40k draws
