"""asls_mlx: a personal assistant that learns its user, on the user's own machine (ASLS on MLX).

    from asls_mlx import Assistant
    with Assistant(user="sam") as a:
        print(a.chat("What is the capital of France?"))

The public API is the names in ``__all__`` plus two modules: ``asls_mlx.evaluation`` (the simulated-user
benchmark behind ``asls eval``) and ``asls_mlx.diagnostics`` (what ``asls doctor`` checks). The ``asls``
command uses nothing else.
"""

from os import PathLike

import warnings as _warnings

# Must run before anything imports mlx.core: it decides which BLAS MLX's CPU backend uses.
from asls_mlx import blas as _blas

if _blas.load().name == "unknown" and "openblas" not in (_blas.resolved_library() or "").lower():
    # mlx came first (a notebook's `import mlx.core` above `import asls_mlx`): its matmuls are bound to the
    # reference BLAS for the life of the process, and training would silently run many times slower.
    _warnings.warn("asls_mlx: mlx was imported before asls_mlx, so MLX's CPU matmuls use the slow reference "
                   "BLAS (about 40x slower training). Import asls_mlx first (restart the kernel or process, "
                   "then `import asls_mlx` before mlx or mlx_lm).", RuntimeWarning, stacklevel=2)
# tqdm (pulled in by mlx-lm's dependencies) warns "IProgress not found" in a notebook without ipywidgets;
# asls draws no tqdm bars, so the warning only alarms.
_warnings.filterwarnings("ignore", message="IProgress not found")

from asls_mlx.errors import ASLSError  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "ASLSError", "Assistant", "AssistantConfig", "ConversationAssistant", "ImportSummary", "PairCounts", "Reply", "RunSummary", "SessionSummary",
    "TrainOutcome", "TrainingProgress", "TrainingStatus", "UserSummary", "__version__", "cancel_training", "default_model_dir",
    "delete_user", "export_adapter", "export_hf_model", "fuse_adapter", "import_history", "import_user", "last_update_overhead_s", "list_models", "list_users",
    "pair_counts", "require_user", "train_now", "training_runs", "training_status", "user_name",
]
_LAZY = {  # public name -> the module that defines it (imported on first use: `asls --help` stays fast)
    **dict.fromkeys(("UserSummary", "delete_user", "list_users", "require_user", "user_name"), "users"),
    **dict.fromkeys(("PairCounts", "RunSummary", "TrainOutcome", "TrainingStatus", "cancel_training", "last_update_overhead_s",
                     "pair_counts", "train_now", "training_runs", "training_status"), "training"),
    **dict.fromkeys(("ImportSummary", "import_history"), "history_import"),
}


def import_user(path: str | PathLike, rename: str | None = None) -> str:
    """Import a bundle written by ``asls export`` / ``Assistant.export`` into the local history, all or
    nothing, without opening a chat for anyone; returns the user name it was stored under."""
    from pathlib import Path

    from asls_mlx.store import open_store

    with open_store() as store:
        return store.import_user(Path(path), rename=rename)


def __getattr__(name: str):
    # The assistant pulls in mlx and mlx-lm; import it only when asked for, so `asls --help` stays fast.
    if name == "AssistantConfig":
        from asls_mlx.config import AssistantConfig

        return AssistantConfig
    if name in ("Assistant", "Reply", "SessionSummary", "TrainingProgress"):
        from asls_mlx import assistant

        return getattr(assistant, name)
    if name in ("export_adapter", "export_hf_model", "fuse_adapter"):  # adapters for PEFT/vLLM, the fused model
        from asls_mlx import adapter_export

        return getattr(adapter_export, name)
    if name == "ConversationAssistant":  # the assistant behind `asls serve`: whole conversations in, per user
        from asls_mlx.conversation import ConversationAssistant

        return ConversationAssistant
    if name in ("default_model_dir", "list_models"):  # the embedded model (converted on first use) and the others
        from asls_mlx.engine import models

        return getattr(models, name)
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"asls_mlx.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'asls_mlx' has no attribute {name!r}")
