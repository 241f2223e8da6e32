"""asls_mlx: a personal assistant that learns its user, on the user's own machine (ASLS on MLX).

    from asls_mlx import Assistant
    with Assistant(user="sam") as a:
        print(a.chat("What is the capital of France?"))
"""

# Must run before anything imports mlx.core: it decides which BLAS MLX's CPU backend uses.
from asls_mlx import blas as _blas

_blas.load()

from asls_mlx.errors import ASLSError  # noqa: E402

__version__ = "0.1.0"

__all__ = ["ASLSError", "Assistant", "AssistantConfig", "Reply", "SessionSummary", "__version__"]


def __getattr__(name: str):
    # The assistant pulls in mlx and mlx-lm; import it only when asked for, so `asls --help` stays fast.
    if name in ("Assistant", "AssistantConfig", "Reply", "SessionSummary"):
        from asls_mlx import assistant

        return getattr(assistant, name)
    raise AttributeError(f"module 'asls_mlx' has no attribute {name!r}")
