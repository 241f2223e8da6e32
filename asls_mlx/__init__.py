"""asls_mlx: a personal assistant that learns its user, on the user's own machine (ASLS on MLX)."""

# Must run before anything imports mlx.core: it decides which BLAS MLX's CPU backend uses.
from asls_mlx import blas as _blas

_blas.load()

from asls_mlx.errors import ASLSError  # noqa: E402

__version__ = "0.1.0"

__all__ = ["ASLSError", "__version__"]
