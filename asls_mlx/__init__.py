"""asls_mlx: a personal assistant that learns its user, on the user's own machine (ASLS on MLX).

    from asls_mlx import Assistant
    with Assistant(user="sam") as a:
        print(a.chat("What is the capital of France?"))

The public API is the names in ``__all__`` plus two modules: ``asls_mlx.evaluation`` (the simulated-user
benchmark behind ``asls eval``) and ``asls_mlx.diagnostics`` (what ``asls doctor`` checks). The ``asls``
command uses nothing else.
"""

from os import PathLike

# Must run before anything imports mlx.core: it decides which BLAS MLX's CPU backend uses.
from asls_mlx import blas as _blas

_blas.load()

from asls_mlx.errors import ASLSError  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "ASLSError", "Assistant", "AssistantConfig", "ConversationAssistant", "ImportSummary", "PairCounts", "Reply", "RunSummary", "SessionSummary",
    "TrainOutcome", "TrainingStatus", "UserSummary", "__version__", "cancel_training", "default_model_dir",
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
    if name in ("Assistant", "Reply", "SessionSummary"):
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
