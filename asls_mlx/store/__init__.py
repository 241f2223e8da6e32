"""SQLite history of chats, feedback, profiles, preference pairs, adapter versions and training runs."""

from asls_mlx.store.accounts import UserSummary, delete_user, user_summaries
from asls_mlx.store.bundle import export_user, import_user
from asls_mlx.store.db import Store, open_store
from asls_mlx.store.forget import ForgetSummary, forget
from asls_mlx.store.records import (
    AdapterVersion,
    Feedback,
    Message,
    PreferencePair,
    ProfileSnapshot,
    Session,
    TrainingRun,
    User,
    normalize_text,
    pair_hash,
)
from asls_mlx.store.schema import PAIR_SOURCES, SCHEMA_VERSION

__all__ = [
    "AdapterVersion", "Feedback", "ForgetSummary", "Message", "PAIR_SOURCES", "PreferencePair", "ProfileSnapshot",
    "SCHEMA_VERSION", "Session", "Store", "TrainingRun", "User", "UserSummary", "delete_user", "export_user", "forget",
    "import_user", "normalize_text", "open_store", "pair_hash", "user_summaries",
]
