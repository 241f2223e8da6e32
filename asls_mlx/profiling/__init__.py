"""User profiling layer: feedback signals -> evolving profile, and contrastive pair mining."""

from asls_mlx.profiling.types import PreferencePair

__all__ = ["PreferencePair"]
