"""The fast nucleus sampler keeps exactly the tokens mlx-lm's top-p + top-k chain keeps, with the same probabilities."""

import mlx.core as mx
import numpy as np
import pytest
from mlx_lm.sample_utils import apply_top_k, apply_top_p, make_repetition_penalty

from asls_mlx.engine.samplers import (
    RepetitionPenalty, ScaleLogits, host_top_k, make_sampler, nucleus_top_k, top_k_candidates,
)


def _logprobs(scale: float, rows: int = 24, vocab: int = 4096, seed: int = 0) -> mx.array:
    logits = mx.random.normal((rows, vocab), key=mx.random.key(seed)) * scale
    return logits - mx.logsumexp(logits, axis=-1, keepdims=True)


def _kept_mask(lp, top_p, top_k, host=False):
    """Our kept candidates scattered back over the vocabulary: True where a token can be drawn."""
    index, kept = nucleus_top_k(lp, top_p, top_k, host)
    mask = np.zeros(lp.shape, bool)
    np.put_along_axis(mask, np.asarray(index), ~np.isinf(np.asarray(kept)), axis=-1)
    return mask, index, kept


@pytest.mark.parametrize("scale", [0.5, 3.0, 8.0])  # flat: top-k binds; peaked: the nucleus is smaller than k
@pytest.mark.parametrize("top_p,top_k", [(0.95, 64), (0.5, 256), (0.9, 1)])
@pytest.mark.parametrize("host", [False, True])  # candidates found by MLX (pure-MLX backend) or NumPy (CPU backend)
def test_kept_tokens_equal_mlx_lm_top_p_then_top_k(scale, top_p, top_k, host):
    lp = _logprobs(scale)
    mask, index, kept = _kept_mask(lp, top_p, top_k, host)
    reference = apply_top_k(apply_top_p(lp, top_p), top_k)
    assert (mask == ~np.isinf(np.asarray(reference))).all()
    finite = ~np.isinf(np.asarray(kept))
    assert np.array_equal(np.asarray(kept)[finite], np.take_along_axis(np.asarray(lp), np.asarray(index), -1)[finite])
    assert mask.sum(-1).max() <= top_k and mask.sum(-1).min() >= 1


def test_nucleus_smaller_than_k_is_found():
    mask, _, _ = _kept_mask(_logprobs(8.0), 0.9, 256)
    assert mask.sum(-1).max() < 256  # the top-p cut, not top-k, decided these rows


@pytest.mark.parametrize("host_top_k", [False, True])
def test_top_p_top_k_draws_from_mlx_lm_distribution_and_repeats_with_a_seed(host_top_k):
    """Drawn among the candidates only: each token as likely as under mlx-lm's masked softmax."""
    vocab, temp, top_p, top_k, draws = 60, 0.8, 0.8, 12, 40_000
    logits = mx.random.normal((1, vocab), key=mx.random.key(8)) * 3
    lp = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
    mx.random.seed(5)
    tokens = np.asarray(make_sampler(temp, top_p, top_k, host_top_k)(mx.repeat(lp, draws, axis=0)))
    mx.random.seed(5)
    assert np.array_equal(np.asarray(make_sampler(temp, top_p, top_k, host_top_k)(mx.repeat(lp, draws, axis=0))), tokens)
    masked = np.asarray(apply_top_k(apply_top_p(lp, top_p), top_k))[0] / temp
    want = np.exp(masked - masked.max())
    want /= want.sum()
    got = np.bincount(tokens, minlength=vocab) / draws
    assert set(np.flatnonzero(got)) <= set(np.flatnonzero(want))
    assert 2 <= len(np.flatnonzero(want)) < top_k  # the nucleus cut something here
    assert np.abs(got - want).max() < 0.01  # ~4 standard errors at 40k draws


@pytest.mark.parametrize("top_k", [1, 40])
@pytest.mark.parametrize("host", [False, True])
def test_host_candidates_equal_the_mlx_ones(top_k, host):
    """From raw NumPy logits: the same k tokens, with log-probs normalised over the whole vocabulary."""
    logits = mx.random.normal((6, 4096), key=mx.random.key(3)) * 4
    index, lp = top_k_candidates(logits - mx.logsumexp(logits, axis=-1, keepdims=True), top_k, host)
    host_index, host_lp = host_top_k(np.array(logits), top_k)
    order, host_order = np.argsort(np.asarray(index), -1), np.argsort(host_index, -1)
    assert np.array_equal(np.take_along_axis(np.asarray(index), order, -1), np.take_along_axis(host_index, host_order, -1))
    assert np.allclose(np.take_along_axis(np.asarray(lp), order, -1), np.take_along_axis(host_lp, host_order, -1), atol=1e-5)


def test_host_draws_from_the_same_distribution_and_repeat_with_a_seed():
    vocab, temp, top_p, top_k, draws = 60, 0.8, 0.8, 12, 40_000
    logits = np.asarray(mx.random.normal((1, vocab), key=mx.random.key(8)) * 3)
    sampler = make_sampler(temp, top_p, top_k, host_top_k=True)  # the CPU backend's
    mx.random.seed(5)
    tokens = sampler.host(np.repeat(logits, draws, axis=0))
    mx.random.seed(5)
    assert np.array_equal(sampler.host(np.repeat(logits, draws, axis=0)), tokens)
    lp = mx.array(logits) - mx.logsumexp(mx.array(logits), axis=-1, keepdims=True)
    masked = np.asarray(apply_top_k(apply_top_p(lp, top_p), top_k))[0] / temp
    want = np.exp(masked - masked.max())
    want /= want.sum()
    got = np.bincount(tokens, minlength=vocab) / draws
    assert set(np.flatnonzero(got)) <= set(np.flatnonzero(want)) and len(np.flatnonzero(want)) >= 2
    assert np.abs(got - want).max() < 0.01
    assert np.array_equal(make_sampler(0.0).host(logits * [[1.0]] * np.arange(1, 4)[:, None]), [logits.argmax()] * 3)
    # the same seeded draws as from MLX log-probs: same candidates, same order (no values tie here)
    rows = np.asarray(mx.random.normal((16, 4096), key=mx.random.key(9)) * 3)
    mx.random.seed(7)
    from_mlx = np.asarray(sampler(mx.array(rows) - mx.logsumexp(mx.array(rows), axis=-1, keepdims=True)))
    mx.random.seed(7)
    assert np.array_equal(sampler.host(rows.copy()), from_mlx)


def test_greedy_and_plain_fallbacks():
    lp = _logprobs(3.0)
    assert mx.array_equal(make_sampler(0.0, 0.95, 256)(lp), mx.argmax(lp, axis=-1)).item()
    # k at least the vocabulary: plain top-p, still a valid token with positive probability
    tokens = make_sampler(0.8, 0.95, 10_000)(lp)
    assert tokens.shape == (lp.shape[0],) and (mx.take_along_axis(lp, tokens[:, None], -1) > -1e9).all().item()


def test_top_k_alone_draws_from_the_top_k_distribution():
    """top_k without top_p: drawn among the k candidates only, with mlx-lm's top-k probabilities."""
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


@pytest.mark.parametrize("processor,reference", [
    (RepetitionPenalty(1.3, 6), make_repetition_penalty(1.3, 6)),
    (ScaleLogits(1e6), lambda tokens, logits: logits * 1e6),
])
def test_processors_on_numpy_rows_equal_their_mlx_form(processor, reference):
    """A context with repeats, older tokens beyond the window, logits of both signs."""
    before = np.asarray(mx.random.normal((1, 50), key=mx.random.key(2)) * 3)
    context = [4, 9, 9, 31, 2, 7, 4, 40, 12, 4]
    want = np.asarray(reference(mx.array(context), mx.array(before)))  # (mlx-lm's writes into its input)
    assert np.array_equal(np.asarray(processor(mx.array(context), mx.array(before))), want)
    row = before[0].copy()
    processor.host(context, row)
    assert np.allclose(row, want[0], rtol=1e-6)
    if isinstance(processor, RepetitionPenalty):
        before = before[0]
        recent = [2, 7, 4, 40, 12]  # the last 6 tokens
        assert (row[recent] < before[recent]).all()  # penalised: lower, whatever the sign
        assert np.array_equal(row[[9, 31, 41]], before[[9, 31, 41]])  # before the window, and never seen
