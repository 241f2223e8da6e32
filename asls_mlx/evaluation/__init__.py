"""Evaluation: simulated users with hidden preferences, the paper's ablation arms, metrics, ``asls eval``."""

from asls_mlx.evaluation.metrics import edit_cost, score_heldout, sessions_to_recover
from asls_mlx.evaluation.personas import PERSONAS, Persona, get_persona
from asls_mlx.evaluation.results import EvalResult
from asls_mlx.evaluation.runner import ARMS, main_eval, run_eval
from asls_mlx.evaluation.simulate import FeedbackPolicy, simulate_session

__all__ = [
    "ARMS",
    "EvalResult",
    "FeedbackPolicy",
    "PERSONAS",
    "Persona",
    "edit_cost",
    "get_persona",
    "main_eval",
    "run_eval",
    "score_heldout",
    "sessions_to_recover",
    "simulate_session",
]
