"""What the CPU backend changes in a model and in mlx-lm, and how it is undone.

``install`` routes a model's SwiGLU and prompt attention through ``cpu_kernels`` and gives its
``Linear`` layers and tied head a one-row path; ``uninstall`` puts MLX's own back. Nothing else in
the package patches mlx-lm or model objects.

Decoding one token multiplies every weight matrix by a single row, and MLX sends even that to a
GEMM, which streams the weights several times slower than OpenBLAS's GEMV (NumPy's) on our CPUs.
So ``MatvecLinear`` and ``MatvecEmbedding`` compute one-row inputs as ``W @ x``: inside
``host_matvec()`` (the generation loops) through NumPy on a zero-copy view of the weight,
elsewhere as MLX's ``W @ x`` (faster than ``x @ W.T``). The NumPy path evaluates its input, so it
is used only where nothing traces or differentiates the model.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from typing import Iterator

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from asls_mlx.engine.cpu.cpu_kernels import attention, swiglu

_NATIVE = "_asls_native"  # on a patched mlx-lm function: the function it replaced
_HOST_WEIGHT = "_asls_host_weight"  # on a layer: (weight array, its NumPy view)
_PATCHED = ("swiglu", "scaled_dot_product_attention")  # mlx-lm model modules import these by name


def _fast_sdpa(native):
    def scaled_dot_product_attention(queries, keys, values, cache, scale, mask, sinks=None):
        # decode (one query) is tiny and memory-bound: the native kernel is as good there
        if sinks is not None or hasattr(cache, "bits") or queries.shape[2] == 1 or queries.dtype != mx.float32:
            return native(queries, keys, values, cache=cache, scale=scale, mask=mask, sinks=sinks)
        return attention(queries, keys, values, scale, mask)

    setattr(scaled_dot_product_attention, _NATIVE, native)
    return scaled_dot_product_attention


def _fast_swiglu(native):
    def fast(gate, up):
        if gate.dtype != mx.float32 or up.dtype != mx.float32:
            return native(gate, up)
        return swiglu(gate, up)

    setattr(fast, _NATIVE, native)
    return fast


_WRAPPERS = {"swiglu": _fast_swiglu, "scaled_dot_product_attention": _fast_sdpa}
_host = threading.local()


@contextlib.contextmanager
def host_matvec() -> Iterator[None]:
    """Within: one-row float32 matmuls of the swapped layers run as NumPy GEMVs (decoding only)."""
    previous = getattr(_host, "on", False)
    _host.on = True
    try:
        yield
    finally:
        _host.on = previous


def host_weight(module: nn.Module) -> np.ndarray:
    """A NumPy view of ``module.weight`` (no copy), rebuilt when the weight array is replaced (a reload)."""
    cached = module.__dict__.get(_HOST_WEIGHT)
    if cached is None or cached[0] is not module.weight:
        cached = (module.weight, np.asarray(module.weight))
        module.__dict__[_HOST_WEIGHT] = cached
    return cached[1]


def _matvec(module: nn.Module, x: mx.array) -> mx.array | None:
    """``W @ x`` for a one-row float32 ``x`` (shape kept, last dim = W's rows); None otherwise."""
    if x.size != x.shape[-1] or x.dtype != mx.float32 or module.weight.dtype != mx.float32:
        return None
    if getattr(_host, "on", False):
        y = mx.array(host_weight(module) @ np.asarray(x).reshape(-1))
    else:
        y = module.weight @ x.reshape(-1)
    return y.reshape(*x.shape[:-1], -1)


class MatvecLinear(nn.Linear):
    """``nn.Linear`` that computes a one-row input as ``W @ x`` (a GEMV) instead of ``x @ W.T``."""

    def __call__(self, x: mx.array) -> mx.array:
        y = _matvec(self, x)
        if y is None:
            return super().__call__(x)
        return y + self["bias"] if "bias" in self else y


class MatvecEmbedding(nn.Embedding):
    """``nn.Embedding`` whose tied-head ``as_linear`` uses a GEMV for one-row inputs."""

    def as_linear(self, x: mx.array) -> mx.array:
        y = _matvec(self, x)
        return super().as_linear(x) if y is None else y


_SWAPS = ((nn.Linear, MatvecLinear), (nn.Embedding, MatvecEmbedding))


def install(model: nn.Module) -> bool:
    """Route ``model``'s SwiGLU, attention and one-row matmuls through the CPU paths; whether anything changed.

    The SwiGLU and attention swap is made in the model's mlx-lm module, so every model of that
    architecture in this process gets it (the results agree with the native ops to float32 tolerance).
    """
    changed = False
    for _, m in model.named_modules():
        for base, fast in _SWAPS:
            if type(m) is base:  # exact type: quantized and other subclasses keep their own call
                m.__class__ = fast
                changed = True
    module = sys.modules.get(type(model).__module__)
    if module is None:
        return changed
    for name in _PATCHED:
        native = getattr(module, name, None)
        if callable(native) and not hasattr(native, _NATIVE):
            setattr(module, name, _WRAPPERS[name](native))
            changed = True
    return changed


def uninstall(model: nn.Module) -> None:
    """Undo ``install``: ``model``'s layers and its mlx-lm module compute with MLX's own ops again
    (the module's functions for every model of that architecture in this process)."""
    for _, m in model.named_modules():
        for base, fast in _SWAPS:
            if type(m) is fast:
                m.__class__ = base
        m.__dict__.pop(_HOST_WEIGHT, None)
    module = sys.modules.get(type(model).__module__)
    for name in _PATCHED:
        fn = getattr(module, name, None)
        if hasattr(fn, _NATIVE):
            setattr(module, name, getattr(fn, _NATIVE))


def installed(model: nn.Module) -> bool:
    """Whether ``model``'s layers or its mlx-lm module have what ``install`` puts there."""
    module = sys.modules.get(type(model).__module__)
    if any(hasattr(getattr(module, name, None), _NATIVE) for name in _PATCHED):
        return True
    return any(type(m) in (MatvecLinear, MatvecEmbedding) for _, m in model.named_modules())
