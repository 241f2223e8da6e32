"""User profiling layer: feedback signals -> evolving profile, and contrastive pair mining.

No model lives here: self-labelled mining samples answers through the ``generate`` function it is given.
"""

from asls_mlx.profiling.features import AnswerFeatures, answer_features
from asls_mlx.profiling.mining import mine_pairs, mine_self_labelled_pairs, split_of
from asls_mlx.profiling.profile import Feature, Profile
from asls_mlx.profiling.profile_evidence import LearnedFeature, direction, learned, live_profile, teaches
from asls_mlx.profiling.profile_update import Evidence
from asls_mlx.profiling.profile_update import load_profile, rebuild_profile, update_profile
from asls_mlx.profiling.quality import is_acceptable, quality_issues
from asls_mlx.profiling.scorer import score
from asls_mlx.profiling.session import SessionResult, process_session
from asls_mlx.profiling.signals import (
    Correction,
    Statement,
    classify_followup,
    corrections,
    detect_statements,
    infer_session_signals,
    record_feedback,
)
from asls_mlx.store.records import PreferencePair

__all__ = [
    "AnswerFeatures", "Correction", "Evidence", "Feature", "LearnedFeature", "PreferencePair", "Profile", "SessionResult", "Statement",
    "answer_features", "classify_followup", "corrections", "detect_statements", "direction", "infer_session_signals",
    "is_acceptable", "learned", "live_profile", "load_profile", "mine_pairs", "mine_self_labelled_pairs", "process_session", "quality_issues", "rebuild_profile",
    "record_feedback", "score", "split_of", "teaches", "update_profile",
]
