"""Each loss against hand-computed values on tiny tensors; the objectives built from them; the
learning config that names them and holds their defaults."""

import math
from dataclasses import fields, replace

import asls_mlx  # noqa: F401
import mlx.core as mx
import pytest

from adaptation_fixtures import TOPICS, fresh_model, short_pairs
from asls_mlx.adaptation import losses
from asls_mlx.adaptation.config import LOSS_NAMES, LearningConfig, TrainingArgs, adapt_schedule
from asls_mlx.adaptation.lora import lora_parameters, set_lora_weights
from asls_mlx.errors import ASLSError


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


def test_objectives_compose_the_pure_losses(tiny_model_dir):
    """Each registered objective = its preference term + sft_weight x SFT + retention_weight x KL, as written out here."""
    from asls_mlx.adaptation.logprobs import answer_logps, full_logits
    from asls_mlx.adaptation.train_data import prepare, training_examples

    assert set(losses.LOSSES) == set(LOSS_NAMES) and losses.PAIRED_LOSSES < set(LOSS_NAMES)
    general = ["The river runs to the sea and the sea is wide.", "Bread is made of flour, water and salt."]
    model, tok = fresh_model(tiny_model_dir)
    mx.random.seed(3)  # an adapter away from identity: non-zero margins and KL
    set_lora_weights(model, {k: v + 0.05 * mx.random.normal(v.shape) for k, v in lora_parameters(model).items()})
    a = TrainingArgs(sft_weight=0.3, retention_weight=0.7, beta=0.2)
    got, want = {}, {}
    for name in LOSS_NAMES:
        args = replace(a, loss=name)
        data = prepare(model, tok, training_examples(tok, short_pairs(TOPICS[:4]), (), args), args, general)
        b = next(iter(data.batches()))
        logps = answer_logps(model, b.inputs, b.positions, b.targets, b.select)
        counts = b.select.sum(1)
        kl = losses.retention_kl(full_logits(model, b.retention_inputs), b.retention_top, b.retention_mask, b.retention_index)[0]
        pc, pr, nc, nr = logps[:4], logps[4:], counts[:4], counts[4:]
        sft = losses.sft_loss(pc, nc, b.weights)[0]
        pref = {
            "dpo": lambda: losses.dpo_loss(pc, pr, b.reference_chosen, b.reference_rejected, 0.2, b.weights)[0],
            "simpo": lambda: losses.simpo_loss(pc / nc, pr / nr, a.simpo_beta, a.simpo_gamma, b.weights)[0],
            "orpo": lambda: losses.orpo_loss(pc / nc, pr / nr, 0.2, b.weights)[0],
            "sft": lambda: None,
        }[name]()
        want[name] = (losses.sft_loss(logps, counts, b.weights)[0] if pref is None else pref + 0.3 * sft) + 0.7 * kl
        value, metrics = losses.LOSSES[name](model, b, args)
        got[name] = value
        assert "retention_kl" in metrics and "sft" in metrics
        assert kl.item() > 0 and (name != "dpo" or b.reference_chosen.abs().sum().item() > 0)
    for name in LOSS_NAMES:
        assert got[name].item() == pytest.approx(want[name].item(), rel=1e-6), name


def test_an_unknown_loss_is_rejected_with_the_choices():
    for make in (LearningConfig, TrainingArgs):
        with pytest.raises(ASLSError, match="'kto'.*dpo, simpo, orpo, sft"):
            make(loss="kto")
    config = LearningConfig()
    config.loss = "ppo"
    with pytest.raises(ASLSError, match="ppo"):
        config.validate()


def test_training_args_derive_from_the_learning_config():
    config, default = LearningConfig(), TrainingArgs()
    shared = [f.name for f in fields(TrainingArgs) if hasattr(config, f.name) and f.name != "retention_length"]
    assert len(shared) >= 15 and all(getattr(default, n) == getattr(config, n) for n in shared)
    assert default.retention_length == config.retention_row() > config.retention_length  # rows hold a task anchor
    assert default.lr == config.base_lr
    assert config.training_args() == default
    custom = LearningConfig(loss="simpo", beta=0.3, max_epochs=None, time_limit_s=5.0, seed=4)
    args = custom.training_args(max_steps=4, lr=1e-4, replay_fraction=0.2)
    assert (args.loss, args.beta, args.max_epochs, args.time_limit_s, args.seed) == ("simpo", 0.3, None, 5.0, 4)
    assert (args.max_steps, args.lr, args.replay_fraction) == (4, 1e-4, 0.2)
    assert config.schedule(8, 1.0) == adapt_schedule(8, 1.0)
    assert LearningConfig(drift_adaptation=False).schedule(8, 1.0) == adapt_schedule(8, 0.0)
    assert LearningConfig(max_steps=100).schedule(10_000)[0] == config.max_steps_cap == 12
