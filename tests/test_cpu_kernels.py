"""The CPU backend's kernels (engine.cpu.cpu_kernels) and what it patches into a model (engine.cpu.patches)
agree with MLX's native ops, forward and backward; the patches are undone cleanly."""

import mlx.core as mx
import mlx.nn as nn
import mlx_lm
import numpy as np
import pytest

from asls_mlx.engine.cpu import cpu_kernels as kernels
from asls_mlx.engine.cpu import patches


def close(a, b, tol):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.max(np.abs(a - b)) <= tol * max(1.0, np.max(np.abs(b)))


def test_exp_matches_exp_and_never_leaves_denormals():
    x = mx.concatenate([mx.linspace(-41.5, 0.0, 100_001), mx.array([-41.7, -70.0, -88.0, -200.0, -1e30])])
    got = np.asarray(kernels.exp_nonpositive(x), dtype=np.float64)
    want = np.exp(np.asarray(x, dtype=np.float64))
    rel = np.abs(got[:-5] - want[:-5]) / want[:-5]
    assert rel.max() < 5e-6  # grows with |x|: x * log2(e) rounds
    rel_near_max = rel[-10_000:]  # x in [-4.2, 0], the entries that carry a softmax
    assert rel_near_max.max() < 1e-6
    # far below: exactly 0, never a denormal; the smallest nonzero result is ~2**-60, so products
    # with gradients stay normal floats too (denormals slow x86 GEMMs ~50x)
    assert (got[-5:] == 0).all() and got[:-5].min() >= 2.0**-60
    g = mx.grad(lambda z: kernels.exp_nonpositive(z).sum())(x[:100])
    assert close(g, mx.exp(x[:100]), 3e-6)
    assert (np.asarray(mx.grad(lambda z: kernels.exp_nonpositive(z).sum())(x[-5:])) == 0).all()


@pytest.mark.parametrize("compiled", [False, True])
def test_swiglu_forward_and_grads(compiled):
    mx.random.seed(0)
    gate, up, w = (mx.random.normal((64, 96)) * 6 for _ in range(3))

    def loss(fn):
        f = lambda g, u: (fn(g, u) * w).sum()  # noqa: E731
        vg = mx.value_and_grad(f, argnums=(0, 1))
        return mx.compile(vg) if compiled else vg

    (v1, (dg1, du1)) = loss(kernels.swiglu)(gate, up)
    (v2, (dg2, du2)) = loss(lambda g, u: nn.silu(g) * u)(gate, up)
    assert close(v1, v2, 1e-5)
    assert close(dg1, dg2, 1e-5) and close(du1, du2, 1e-5)
    assert close(kernels.swiglu(gate, up), nn.silu(gate) * up, 1e-6)


def test_softmax_with_grads():
    mx.random.seed(1)
    x = mx.random.normal((16, 300)) * 8
    w = mx.random.normal((16, 300))
    assert close(kernels.softmax(x), mx.softmax(x, axis=-1), 1e-6)
    g1 = mx.grad(lambda z: (kernels.softmax(z) * w).sum())(x)
    g2 = mx.grad(lambda z: (mx.softmax(z, axis=-1) * w).sum())(x)
    assert close(g1, g2, 1e-5)


@pytest.mark.parametrize("compiled", [False, True])
def test_logsumexp_forward_and_grads(compiled):
    mx.random.seed(1)
    x = mx.random.normal((33, 5000)) * 8
    x = mx.concatenate([x, x[:1] * 20, x[:1] + 1000.0])  # a tail far below the max; large logits
    w = mx.random.normal((35,))

    def vg(fn):
        f = mx.value_and_grad(lambda z: (fn(z) * w).sum())
        return mx.compile(f) if compiled else f

    v1, g1 = vg(kernels.logsumexp)(x)
    v2, g2 = vg(lambda z: mx.logsumexp(z, axis=-1))(x)
    assert close(kernels.logsumexp(x), mx.logsumexp(x, axis=-1), 1e-6)
    # exp(x - lse) at |x| ~ 1000 carries the float32 rounding of x - lse (ulp 6e-5)
    assert close(v1, v2, 1e-6) and close(g1, g2, 2e-5)
    assert np.isfinite(np.asarray(g1)).all()
    assert kernels.logsumexp(x, keepdims=True).shape == (35, 1)
    # other axes and dtypes take MLX's own op
    assert close(kernels.logsumexp(x[:4, :8], axis=0), mx.logsumexp(x[:4, :8], axis=0), 1e-6)


@pytest.mark.parametrize("mask_kind", ["causal", "bool", "additive", None])
@pytest.mark.parametrize("L,S", [(12, 12), (5, 12)])
def test_attention_matches_native_sdpa(mask_kind, L, S):
    mx.random.seed(2)
    B, H, Hkv, D = 2, 6, 2, 16
    q = mx.random.normal((B, H, L, D))
    k, v = mx.random.normal((B, Hkv, S, D)), mx.random.normal((B, Hkv, S, D))
    mask = mask_kind
    if mask_kind == "bool":
        mask = mx.random.uniform(shape=(B, 1, L, S)) > 0.3
        mask = mask | (mx.arange(S) == 0)  # every query sees at least one key
    elif mask_kind == "additive":
        mask = mx.random.normal((B, 1, L, S))
    scale = D**-0.5

    def f(fn):
        return lambda q, k, v: (fn(q, k, v) * v.mean()).sum()

    ours = lambda q, k, v: kernels.attention(q, k, v, scale, mask)  # noqa: E731
    native = lambda q, k, v: mx.fast.scaled_dot_product_attention(q, k, v, scale=scale, mask=mask)  # noqa: E731
    assert close(ours(q, k, v), native(q, k, v), 1e-5)
    g1 = mx.grad(f(ours), argnums=(0, 1, 2))(q, k, v)
    g2 = mx.grad(f(native), argnums=(0, 1, 2))(q, k, v)
    for a, b in zip(g1, g2):
        assert close(a, b, 1e-4)


@pytest.fixture()
def model(tiny_model_dir):
    """A model of its own, left with MLX's own ops (and its mlx-lm module too) afterwards."""
    model, _ = mlx_lm.load(str(tiny_model_dir))
    patches.uninstall(model)
    yield model
    patches.uninstall(model)


def test_patched_model_gives_the_same_logits_and_grads(model):
    tokens = mx.array([[5, 9, 33, 60, 7, 81, 12, 3], [44, 2, 19, 19, 101, 5, 6, 7]])

    def loss(m, x):
        logits = m(x[:, :-1])
        return nn.losses.cross_entropy(logits, x[:, 1:]).mean()

    native_logits = model(tokens)
    native_loss, native_grads = nn.value_and_grad(model, loss)(model, tokens)
    assert patches.install(model)
    assert not patches.install(model)  # already on: nothing changes
    fast_logits = model(tokens)
    fast_loss, fast_grads = nn.value_and_grad(model, loss)(model, tokens)
    assert close(fast_logits, native_logits, 1e-4)
    assert close(fast_loss, native_loss, 1e-5)
    from mlx.utils import tree_flatten

    for (name, a), (_, b) in zip(tree_flatten(fast_grads), tree_flatten(native_grads)):
        assert close(a, b, 1e-3), name


def test_one_row_decode_through_matvec_gives_the_same_logits(model):
    from mlx_lm.models.cache import make_prompt_cache

    prompt = mx.array([[5, 9, 33, 60, 7, 81]])

    def decode():
        cache = make_prompt_cache(model)
        logits = [model(prompt, cache=cache)[:, -1]]
        for token in (12, 3, 44):
            logits.append(model(mx.array([[token]]), cache=cache)[:, -1])  # one row: the GEMV path
        return mx.concatenate(logits)

    assert not any(isinstance(m, patches.MatvecLinear) for _, m in model.named_modules())
    native = decode()
    patches.install(model)
    assert isinstance(model.model.layers[0].mlp.down_proj, patches.MatvecLinear)
    assert isinstance(model.model.embed_tokens, patches.MatvecEmbedding)
    assert close(decode(), native, 1e-5)
    with patches.host_matvec():  # the generation loops: NumPy GEMVs on views of the weights
        assert close(decode(), native, 1e-5)


def test_host_matvec_follows_replaced_weights_and_stays_out_of_gradients():
    layer = nn.Linear(8, 5)
    layer.__class__ = patches.MatvecLinear
    x = mx.random.normal((1, 1, 8))
    with patches.host_matvec():
        assert close(layer(x), x @ layer.weight.T + layer.bias, 1e-6)
        layer.weight = layer.weight * 2  # a reloaded adapter/model replaces the arrays
        assert close(layer(x), x @ layer.weight.T + layer.bias, 1e-6)
        assert layer(x).shape == (1, 1, 5)
    # outside the generation loops the one-row path stays in MLX, so gradients flow through it
    grad = mx.grad(lambda v: layer(v).sum())(x)
    assert close(grad, layer.weight.sum(axis=0).reshape(1, 1, 8), 1e-5)


def test_uninstall_leaves_native_mlx_ops(model, tiny_model_dir):
    """After ``uninstall`` the model and its mlx-lm module compute with MLX's own ops again: no
    swapped class, no patched function, no cached weight view, logits bit-equal to a model never patched."""
    import sys

    from mlx_lm.models import activations, base

    tokens = mx.array([[5, 9, 33, 60, 7, 81, 12, 3]])
    module = sys.modules[type(model).__module__]
    patches.install(model)
    assert module.swiglu is not activations.swiglu and patches.installed(model)
    with patches.host_matvec():
        model(tokens[:, :1])  # one row through NumPy: caches a view of each weight
    assert any(patches._HOST_WEIGHT in m.__dict__ for _, m in model.named_modules())
    patches.uninstall(model)
    assert not patches.installed(model)
    assert not any(patches._HOST_WEIGHT in m.__dict__ for _, m in model.named_modules())
    assert module.swiglu is activations.swiglu and module.scaled_dot_product_attention is base.scaled_dot_product_attention
    assert {type(m) for _, m in model.named_modules()}.isdisjoint({patches.MatvecLinear, patches.MatvecEmbedding})
    never_patched, _ = mlx_lm.load(str(tiny_model_dir))
    assert np.array_equal(np.asarray(model(tokens)), np.asarray(never_patched(tokens)))
