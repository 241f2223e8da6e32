"""Generation engine: model loading (incl. the embedded default), chat templates, streaming, adapters."""

from asls_mlx.engine.generate import ChatEngine, GenerationChunk, SamplingOptions
from asls_mlx.engine.models import DEFAULT_MODEL, ModelInfo, list_models, load_model, weights_dir

__all__ = [
    "ChatEngine",
    "GenerationChunk",
    "SamplingOptions",
    "DEFAULT_MODEL",
    "ModelInfo",
    "list_models",
    "load_model",
    "weights_dir",
]
