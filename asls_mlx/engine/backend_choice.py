"""Which backend computes for a model: chosen once, when the model is loaded.

The rule (``select_backend``): on MLX's CPU device the CPU backend (``engine/cpu/``), unless
``ASLS_FAST_KERNELS`` is off; everywhere else, and with it off, pure MLX (``MlxBackend``), so the
CPU with the variable off runs what Metal and CUDA run. ``load_model`` gives each model its backend
(``use_backend``), which prepares it; ``backend_of`` answers for a model. A model loaded elsewhere
(e.g. by ``mlx_lm.load``) is left as it was loaded: it generates, samples and scores with the rule's
backend, without the kernels that preparing it would install.
"""

from __future__ import annotations

import os
import weakref

import mlx.core as mx
import mlx.nn as nn

from asls_mlx.engine.backend import Backend
from asls_mlx.engine.cpu import CpuBackend
from asls_mlx.engine.mlx_backend import MlxBackend

ENV_FAST_KERNELS = "ASLS_FAST_KERNELS"  # "off" (or 0, false): pure MLX on the CPU too

_chosen: dict[int, Backend] = {}  # id(model) -> its backend, while the model lives


def gpu_available() -> bool:
    """Whether MLX computes on a GPU here (Metal or CUDA)."""
    return mx.metal.is_available() or (hasattr(mx, "cuda") and mx.cuda.is_available())


def select_backend(device: mx.Device | None = None) -> Backend:
    """The backend for models on ``device`` (MLX's default device unless given)."""
    device = device or mx.default_device()
    if device.type == mx.cpu and os.environ.get(ENV_FAST_KERNELS, "on").lower() not in ("0", "off", "false"):
        return CpuBackend()
    return MlxBackend()


def use_backend(model: nn.Module, backend: Backend | None = None) -> Backend:
    """Give ``model`` ``backend`` (``select_backend()``'s unless given), undoing what its previous one changed."""
    backend = backend or select_backend()
    previous = _chosen.get(id(model))
    if previous is not None:
        previous.release(model)
    elif _weakly_held(model):
        weakref.finalize(model, _chosen.pop, id(model), None)  # forget it with the model
    backend.prepare(model)
    _chosen[id(model)] = backend
    return backend


def backend_of(model: nn.Module) -> Backend:
    """The backend ``model`` computes with: the one it was given at load, else the rule's."""
    backend = _chosen.get(id(model))
    return backend if backend is not None else select_backend()


def release_backend(model: nn.Module) -> None:
    """Undo everything ``model``'s backend changed in it and its mlx-lm module: it computes with
    MLX's own ops (pure MLX) from now on."""
    use_backend(model, MlxBackend())


def _weakly_held(model: nn.Module) -> bool:
    try:
        weakref.ref(model)
    except TypeError:
        return False
    return True
