"""Generation engine: model loading (incl. the embedded default), chat templates, streaming, adapters,
and the backend each model computes with (``backend_of``: CPU kernels and NumPy loops, or pure MLX)."""

from asls_mlx.engine.generate import ChatEngine, GenerationChunk, SamplingOptions
from asls_mlx.engine.models import DEFAULT_MODEL, ModelInfo, list_models, load_model, weights_dir

__all__ = [
    "ChatEngine",
    "GenerationChunk",
    "SamplingOptions",
    "DEFAULT_MODEL",
    "ModelInfo",
    "backend_of",
    "list_models",
    "load_model",
    "select_backend",
    "weights_dir",
]


def __getattr__(name: str):
    # the backends import mlx and mlx-lm: only when asked for, so listing models stays fast
    if name in ("backend_of", "select_backend"):
        from asls_mlx.engine import backend_choice

        return getattr(backend_choice, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
