"""Each loss against hand-computed values on tiny tensors."""

import math

import asls_mlx  # noqa: F401
import mlx.core as mx
import pytest

from asls_mlx.adaptation import losses


def ls(x):  # log sigmoid
    return -math.log1p(math.exp(-x))


def close(a, b, tol=1e-5):
    return abs(float(a) - float(b)) < tol


def test_dpo_matches_hand_computation_with_weights():
    pc, pr, rc, rr = mx.array([-5.0, -3.0]), mx.array([-6.0, -2.0]), mx.array([-5.5, -3.0]), mx.array([-5.5, -3.0])
    loss, m = losses.dpo_loss(pc, pr, rc, rr, beta=0.5, weights=mx.array([1.0, 3.0]))
    h = [0.5 * ((-5 + 5.5) - (-6 + 5.5)), 0.5 * ((-3 + 3) - (-2 + 3))]  # [0.5, -0.5]
    expected = (1 * -ls(h[0]) + 3 * -ls(h[1])) / 4
    assert close(loss, expected)
    assert close(m["margin"], (h[0] + 3 * h[1]) / 4)
    assert close(m["accuracy"], 0.25)


def test_dpo_at_the_reference_is_log2():
    x = mx.array([-4.0, -7.0])
    loss, _ = losses.dpo_loss(x, x + 1, x, x + 1, beta=0.1)
    assert close(loss, math.log(2))


def test_simpo():
    loss, m = losses.simpo_loss(mx.array([-1.0]), mx.array([-1.5]), beta=2.0, gamma=0.5)
    assert close(loss, -ls(2.0 * 0.5 - 0.5))
    assert close(m["margin"], 1.0)


def test_orpo():
    c, r = -0.5, -1.0
    log_odds = (c - r) - (math.log1p(-math.exp(c)) - math.log1p(-math.exp(r)))
    loss, m = losses.orpo_loss(mx.array([c]), mx.array([r]), beta=0.1)
    assert close(loss, -0.1 * ls(log_odds))
    assert close(m["log_odds"], log_odds)


def test_sft_is_weighted_mean_nll_per_token():
    loss, _ = losses.sft_loss(mx.array([-6.0, -2.0]), mx.array([3, 1]), weights=mx.array([1.0, 0.5]))
    assert close(loss, (6 * 1 + 2 * 0.5) / (3 * 1 + 1 * 0.5))


def test_kto_desirable_and_undesirable():
    pol, ref = mx.array([-2.0, -4.0, -1.0]), mx.array([-3.0, -3.0, -1.0])
    labels = mx.array([1, -1, 0])
    loss, m = losses.kto_loss(pol, ref, labels, beta=0.5, kl=0.25)
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    l_good = 1 - sig(0.5 * (1.0 - 0.25))
    l_bad = 1 - sig(0.5 * (0.25 - (-1.0)))
    assert close(loss, (l_good + l_bad) / 2)  # the label-0 example does not count
    # default reference point: max(0, mean r) = max(0, 0) = 0
    loss0, m0 = losses.kto_loss(pol, ref, labels, beta=0.5)
    assert close(m0["kl"], 0.0)
    assert close(loss0, ((1 - sig(0.5)) + (1 - sig(0.5))) / 2)


def test_retention_kl_full_and_topk():
    base = mx.log(mx.array([[0.5, 0.25, 0.25]]))
    pol_logits = mx.array([[1.0, 0.0, 0.0]])  # softmax: e/(e+2), 1/(e+2), 1/(e+2)
    q = [math.e / (math.e + 2), 1 / (math.e + 2), 1 / (math.e + 2)]
    p = [0.5, 0.25, 0.25]
    expected = sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))
    loss, _ = losses.retention_kl(pol_logits, base)
    assert close(loss, expected)
    # identical distributions: 0, also when given log-probs instead of logits
    assert close(losses.retention_kl(base, base)[0], 0.0)
    # top-1 form: bins {0, rest}
    loss_k, _ = losses.retention_kl(pol_logits, base[:, :1], base_index=mx.array([[0]]))
    expected_k = 0.5 * math.log(0.5 / q[0]) + 0.5 * math.log(0.5 / (1 - q[0]))
    assert close(loss_k, expected_k)
    # mask: the masked position does not count
    two_base = mx.concatenate([base, mx.log(mx.array([[1 / 3] * 3]))])
    two_pol = mx.concatenate([pol_logits, mx.zeros((1, 3))])
    masked, _ = losses.retention_kl(two_pol, two_base, mask=mx.array([1.0, 0.0]))
    assert close(masked, expected)


@pytest.mark.parametrize("fn", ["dpo", "simpo"])
def test_zero_weight_pairs_do_not_count(fn):
    a, b = mx.array([-1.0, -9.0]), mx.array([-2.0, -1.0])
    w = mx.array([1.0, 0.0])
    if fn == "dpo":
        full, _ = losses.dpo_loss(a, b, a * 0, b * 0, 0.1, w)
        one, _ = losses.dpo_loss(a[:1], b[:1], a[:1] * 0, b[:1] * 0, 0.1)
    else:
        full, _ = losses.simpo_loss(a, b, weights=w)
        one, _ = losses.simpo_loss(a[:1], b[:1])
    assert close(full, one)
