"""Evaluation: simulated users with hidden preferences, the paper's ablation arms, metrics, ``asls eval``.

Also what a notebook needs to judge answers the way the benchmark does (``quality_issues``, ``word_count``)
and its prompt sets (``load_prompts``, ``persona_prompts``).
"""

from asls_mlx.data_files import load_prompts
from asls_mlx.evaluation.metrics import edit_cost, score_heldout, sessions_to_recover
from asls_mlx.evaluation.personas import PERSONAS, Persona, get_persona
from asls_mlx.evaluation.results import EvalResult
from asls_mlx.evaluation.runner import ARMS, main_eval, persona_prompts, run_eval
from asls_mlx.evaluation.simulate import FeedbackPolicy, simulate_session
from asls_mlx.profiling import quality_issues
from asls_mlx.profiling.features import word_count

__all__ = [
    "ARMS",
    "EvalResult",
    "FeedbackPolicy",
    "PERSONAS",
    "Persona",
    "edit_cost",
    "get_persona",
    "load_prompts",
    "main_eval",
    "persona_prompts",
    "quality_issues",
    "run_eval",
    "score_heldout",
    "sessions_to_recover",
    "simulate_session",
    "word_count",
]
