"""The CPU kernels of engine.fastmath agree with MLX's native ops, forward and backward."""

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest

from asls_mlx.engine import fastmath


def close(a, b, tol):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.max(np.abs(a - b)) <= tol * max(1.0, np.max(np.abs(b)))


def test_exp_matches_exp_and_never_leaves_denormals():
    x = mx.concatenate([mx.linspace(-41.5, 0.0, 100_001), mx.array([-41.7, -70.0, -88.0, -200.0, -1e30])])
    got = np.asarray(fastmath.exp_nonpositive(x), dtype=np.float64)
    want = np.exp(np.asarray(x, dtype=np.float64))
    rel = np.abs(got[:-5] - want[:-5]) / want[:-5]
    assert rel.max() < 5e-6  # grows with |x|: x * log2(e) rounds
    rel_near_max = rel[-10_000:]  # x in [-4.2, 0], the entries that carry a softmax
    assert rel_near_max.max() < 1e-6
    # far below: exactly 0, never a denormal; the smallest nonzero result is ~2**-60, so products
    # with gradients stay normal floats too (denormals slow x86 GEMMs ~50x)
    assert (got[-5:] == 0).all() and got[:-5].min() >= 2.0**-60
    g = mx.grad(lambda z: fastmath.exp_nonpositive(z).sum())(x[:100])
    assert close(g, mx.exp(x[:100]), 3e-6)
    assert (np.asarray(mx.grad(lambda z: fastmath.exp_nonpositive(z).sum())(x[-5:])) == 0).all()


@pytest.mark.parametrize("compiled", [False, True])
def test_swiglu_forward_and_grads(compiled):
    mx.random.seed(0)
    gate, up, w = (mx.random.normal((64, 96)) * 6 for _ in range(3))

    def loss(fn):
        f = lambda g, u: (fn(g, u) * w).sum()  # noqa: E731
        vg = mx.value_and_grad(f, argnums=(0, 1))
        return mx.compile(vg) if compiled else vg

    (v1, (dg1, du1)) = loss(fastmath.swiglu)(gate, up)
    (v2, (dg2, du2)) = loss(lambda g, u: nn.silu(g) * u)(gate, up)
    assert close(v1, v2, 1e-5)
    assert close(dg1, dg2, 1e-5) and close(du1, du2, 1e-5)
    assert close(fastmath.swiglu(gate, up), nn.silu(gate) * up, 1e-6)


def test_softmax_with_grads():
    mx.random.seed(1)
    x = mx.random.normal((16, 300)) * 8
    w = mx.random.normal((16, 300))
    assert close(fastmath.softmax(x), mx.softmax(x, axis=-1), 1e-6)
    g1 = mx.grad(lambda z: (fastmath.softmax(z) * w).sum())(x)
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

    v1, g1 = vg(fastmath.logsumexp)(x)
    v2, g2 = vg(lambda z: mx.logsumexp(z, axis=-1))(x)
    assert close(fastmath.logsumexp(x), mx.logsumexp(x, axis=-1), 1e-6)
    # exp(x - lse) at |x| ~ 1000 carries the float32 rounding of x - lse (ulp 6e-5)
    assert close(v1, v2, 1e-6) and close(g1, g2, 2e-5)
    assert np.isfinite(np.asarray(g1)).all()
    assert fastmath.logsumexp(x, keepdims=True).shape == (35, 1)
    # other axes and dtypes take MLX's own op
    assert close(fastmath.logsumexp(x[:4, :8], axis=0), mx.logsumexp(x[:4, :8], axis=0), 1e-6)


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

    ours = lambda q, k, v: fastmath.attention(q, k, v, scale, mask)  # noqa: E731
    native = lambda q, k, v: mx.fast.scaled_dot_product_attention(q, k, v, scale=scale, mask=mask)  # noqa: E731
    assert close(ours(q, k, v), native(q, k, v), 1e-5)
    g1 = mx.grad(f(ours), argnums=(0, 1, 2))(q, k, v)
    g2 = mx.grad(f(native), argnums=(0, 1, 2))(q, k, v)
    for a, b in zip(g1, g2):
        assert close(a, b, 1e-4)


def test_patched_model_gives_the_same_logits_and_grads(tiny_model):
    model, _ = tiny_model
    tokens = mx.array([[5, 9, 33, 60, 7, 81, 12, 3], [44, 2, 19, 19, 101, 5, 6, 7]])

    def loss(m, x):
        logits = m(x[:, :-1])
        return nn.losses.cross_entropy(logits, x[:, 1:]).mean()

    fastmath.restore_native_kernels(model)
    native_logits = model(tokens)
    native_loss, native_grads = nn.value_and_grad(model, loss)(model, tokens)
    assert fastmath.use_fast_kernels(model, mx.Device(mx.cpu))
    assert not fastmath.use_fast_kernels(model, mx.Device(mx.cpu))  # already on: nothing changes
    fast_logits = model(tokens)
    fast_loss, fast_grads = nn.value_and_grad(model, loss)(model, tokens)
    assert close(fast_logits, native_logits, 1e-4)
    assert close(fast_loss, native_loss, 1e-5)
    from mlx.utils import tree_flatten

    for (name, a), (_, b) in zip(tree_flatten(fast_grads), tree_flatten(native_grads)):
        assert close(a, b, 1e-3), name


def test_one_row_decode_through_matvec_gives_the_same_logits(tiny_model):
    from mlx_lm.models.cache import make_prompt_cache

    model, _ = tiny_model
    prompt = mx.array([[5, 9, 33, 60, 7, 81]])

    def decode():
        cache = make_prompt_cache(model)
        logits = [model(prompt, cache=cache)[:, -1]]
        for token in (12, 3, 44):
            logits.append(model(mx.array([[token]]), cache=cache)[:, -1])  # one row: the GEMV path
        return mx.concatenate(logits)

    fastmath.restore_native_kernels(model)
    assert not any(isinstance(m, fastmath.MatvecLinear) for _, m in model.named_modules())
    native = decode()
    fastmath.use_fast_kernels(model, mx.Device(mx.cpu))
    assert isinstance(model.model.layers[0].mlp.down_proj, fastmath.MatvecLinear)
    assert isinstance(model.model.embed_tokens, fastmath.MatvecEmbedding)
    assert close(decode(), native, 1e-5)
    with fastmath.host_matvec():  # the generation loops: NumPy GEMVs on views of the weights
        assert close(decode(), native, 1e-5)


def test_host_matvec_follows_replaced_weights_and_stays_out_of_gradients():
    layer = nn.Linear(8, 5)
    layer.__class__ = fastmath.MatvecLinear
    x = mx.random.normal((1, 1, 8))
    with fastmath.host_matvec():
        assert close(layer(x), x @ layer.weight.T + layer.bias, 1e-6)
        layer.weight = layer.weight * 2  # a reloaded adapter/model replaces the arrays
        assert close(layer(x), x @ layer.weight.T + layer.bias, 1e-6)
        assert layer(x).shape == (1, 1, 5)
    # outside the generation loops the one-row path stays in MLX, so gradients flow through it
    grad = mx.grad(lambda v: layer(v).sum())(x)
    assert close(grad, layer.weight.sum(axis=0).reshape(1, 1, 8), 1e-5)


def test_not_applied_on_gpu(tiny_model):
    model, _ = tiny_model
    fastmath.restore_native_kernels(model)
    assert not fastmath.use_fast_kernels(model, mx.Device(mx.gpu))
    import sys

    module = sys.modules[type(model).__module__]
    assert not hasattr(module.swiglu, "_asls_native")
    assert type(model.model.layers[0].mlp.down_proj) is nn.Linear
    fastmath.use_fast_kernels(model, mx.Device(mx.cpu))
