"""MLX kernels that run fast on MLX's CPU backend: exp, SwiGLU, softmax attention, logsumexp.

MLX's CPU exp/sigmoid/tanh are scalar and single-threaded, while a compiled chain of mul/add runs
several times faster per element, so in a training step SiLU and the attention softmax cost more
than the matrix products. Here the softmax's exp is built from exponent bits and a polynomial
(relative error < 1e-6 near the maximum), SwiGLU's sigmoid from a rational tanh, and each function
gets its own VJP, so the backward never differentiates the bit tricks. The CPU backend alone uses
them (``patches`` installs them in a model); on Metal and CUDA MLX's own ops are fused GPU kernels.
Measurements: docs/performance.md.
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx

_LOG2E = 1.4426950408889634
_LN2 = 0.6931471805599453
# exp(r) on r in (-ln 2, 0]: degree-5 least-squares fit in relative error (< 1e-7); as 2**f on
# (-1, 0] with f = r / ln 2
_EXP = [0.9999999232135747, 0.9999927728684899, 0.4998856943327096, 0.16598811736493035,
        0.03979842942007598, 0.005863129095593486]
_EXP2 = [c * _LN2**k for k, c in enumerate(_EXP)]
# Results below 2**-60 (~8.7e-19, e**-41.6) are exactly 0: negligible next to a softmax's or
# log-sum-exp's largest term (1), and never denormal. Denormals make x86 GEMMs ~50x slower, and
# they come from products (a lower floor times a small gradient is one); nonzero results times
# anything above 2**-66 stay normal.
_EXP2_FLOOR = -60.0


def _exp_shallow(d: mx.array) -> mx.array:
    """exp(d) for d <= 0 in few dependent steps: relative error < 1e-6 for d > -7,
    < 5e-6 down to -41.5, exactly 0 below -41.6 (``_EXP2_FLOOR``).

    MLX fuses at most 11 dependent elementwise ops into one CPU kernel and materialises an array
    between kernels, so the evaluation order matters more than the op count: a base-2 reduction
    (2**n from exponent bits, a plain int cast instead of floor) and Estrin's scheme for the
    polynomial run at ~2 ns per element where a Horner chain takes ~5 and MLX's exp ~12. The error
    grows with |d| (d * log2(e) rounds), which softmax and log-sum-exp do not notice.
    """
    t = d * _LOG2E
    # 2**-127 has exponent bits 0, so the result below is exactly 0 (a select on the result
    # instead split the fused kernel in two: 3x slower)
    t = mx.where(t > _EXP2_FLOOR, t, -127.0)
    n = t.astype(mx.int32)
    f = t - n.astype(mx.float32)
    f2 = f * f
    c = _EXP2
    p = (c[0] + c[1] * f) + f2 * (c[2] + c[3] * f) + (f2 * f2) * (c[4] + c[5] * f)
    return p * mx.left_shift(n + 127, 23).view(mx.float32)


_exp_kernel = mx.compile(_exp_shallow)  # not shapeless: MLX cannot infer the shape of a bit view


@mx.custom_function
def exp_nonpositive(x: mx.array) -> mx.array:
    """exp(x) for float32 x <= 0 (the softmax case); exactly 0 below e**-41.6."""
    return _exp_kernel(x)


@exp_nonpositive.vjp
def _exp_vjp(primals, cotangent, output):
    return cotangent * output


# tanh(x) = x P(x^2) / Q(x^2) on [-7.9053, 7.9053] (Eigen's float tanh; |tanh| rounds to 1 outside):
# only mul/add and one division, so the sigmoid of SwiGLU costs ~2 ns per element instead of ~15
_TANH_P = [4.89352455891786e-03, 6.37261928875436e-04, 1.48572235717979e-05, 5.12229709037114e-08,
           -8.60467152213735e-11, 2.00018790482477e-13, -2.76076847742355e-16]
_TANH_Q = [4.89352518554385e-03, 2.26843463243900e-03, 1.18534705686654e-04, 1.19825839466702e-06]


@mx.compile
def _sigmoid(x: mx.array) -> mx.array:
    """sigmoid(x) = (1 + tanh(x / 2)) / 2, absolute error < 1e-7."""
    t = mx.clip(0.5 * x, -7.90531110763549805, 7.90531110763549805)
    t2 = t * t
    p = _TANH_P[6]
    for c in _TANH_P[5::-1]:
        p = p * t2 + c
    q = _TANH_Q[3]
    for c in _TANH_Q[2::-1]:
        q = q * t2 + c
    return 0.5 + 0.5 * (t * p / q)


@mx.compile
def _swiglu_kernel(gate: mx.array, up: mx.array) -> mx.array:
    return gate * _sigmoid(gate) * up


@mx.compile
def _swiglu_grads(gate: mx.array, up: mx.array, cotangent: mx.array) -> tuple[mx.array, mx.array]:
    s = _sigmoid(gate)
    silu = gate * s
    return cotangent * up * (s + silu * (1.0 - s)), cotangent * silu


@mx.custom_function
def swiglu(gate: mx.array, up: mx.array) -> mx.array:
    """silu(gate) * up, the gated MLP activation of llama-style models."""
    return _swiglu_kernel(gate, up)


@swiglu.vjp
def _swiglu_vjp(primals, cotangent, output):
    gate, up = primals
    return _swiglu_grads(gate, up, cotangent)


@mx.compile
def _logsumexp_kernel(x: mx.array) -> mx.array:
    m = mx.max(x, axis=-1, keepdims=True)
    return m + mx.log(mx.sum(_exp_shallow(x - m), axis=-1, keepdims=True))


@mx.compile
def _softmax_given_lse(x: mx.array, lse: mx.array) -> mx.array:
    return _exp_shallow(x - lse)


@mx.custom_function
def _logsumexp_last(x: mx.array) -> mx.array:
    return _logsumexp_kernel(x)


@_logsumexp_last.vjp
def _logsumexp_vjp(primals, cotangent, output):
    return cotangent * _softmax_given_lse(primals, output)  # one input: MLX passes it bare


def logsumexp(x: mx.array, axis: int = -1, keepdims: bool = False) -> mx.array:
    """``mx.logsumexp`` over ``axis`` (the last by default); over the last axis of float32 ``x``
    with the fast exp above.

    The log-softmax over a 49k vocabulary is the largest elementwise cost of a training step, most
    of it MLX's scalar exp. The gradient is exp(x - lse): exact unless |x| is so large that lse
    rounds to the max (~1e30; logits never are).
    """
    if axis not in (-1, x.ndim - 1) or x.dtype != mx.float32:
        return mx.logsumexp(x, axis=axis, keepdims=keepdims)
    out = _logsumexp_last(x)
    return out if keepdims else out.squeeze(-1)


def softmax(x: mx.array, axis: int = -1) -> mx.array:
    e = exp_nonpositive(x - mx.stop_gradient(mx.max(x, axis=axis, keepdims=True)))
    return e / mx.sum(e, axis=axis, keepdims=True)


def attention(q: mx.array, k: mx.array, v: mx.array, scale: float, mask: Any = None) -> mx.array:
    """Softmax attention with grouped KV heads: q (B, H, L, D), k/v (B, Hkv, S, D) -> (B, H, L, D)."""
    B, H, L, D = q.shape
    Hkv, S = k.shape[1], k.shape[2]
    rep = H // Hkv
    # query heads sharing a KV head become extra rows of one GEMM (broadcast batched GEMMs are slow)
    scores = ((q * scale).reshape(B, Hkv, rep * L, D) @ k.swapaxes(-1, -2)).reshape(B, Hkv, rep, L, S)
    if isinstance(mask, str):
        if mask != "causal":
            raise ValueError(f"unsupported attention mask {mask!r}")
        allowed = mx.arange(S)[None] <= (mx.arange(L) + (S - L))[:, None]
        scores = mx.where(allowed, scores, mx.array(-1e30, scores.dtype))
    elif mask is not None:
        mask = mask[:, :, None] if mask.ndim == 4 else mask
        if mask.dtype == mx.bool_:
            scores = mx.where(mask, scores, mx.array(-1e30, scores.dtype))
        else:
            scores = scores + mask
    weights = softmax(scores.astype(mx.float32)).astype(v.dtype)
    out = weights.reshape(B, Hkv, rep * L, S) @ v
    return out.reshape(B, H, L, D)
