"""The CPU backend's NumPy answer scoring gives the log-probs the MLX forward gives, row by row."""

from contextlib import nullcontext

import pytest

from asls_mlx.adaptation.logprobs import rows_logps
from asls_mlx.adaptation.lora import adapter_disabled
from asls_mlx.engine.backend_choice import backend_of
from asls_mlx.engine.cpu import answer_scores
from asls_mlx.engine.mlx_backend import MlxBackend
from test_batch_answers import fast_model  # noqa: F401  (the CPU backend's tiny model with a random adapter)

SHARED = [5, 9, 33, 60, 7]
ROWS = [  # prompts shared by several answers, of several lengths; a one-token answer; a prompt of one token
    (SHARED + [81, 14, 2], [40, 41, 42, 2]),
    (SHARED + [81, 14, 2], [7, 7]),
    (SHARED + [120, 3], [40, 41, 42, 2]),
    (SHARED + [44] * 9, [3]),
    ([17], [99, 98, 97, 96, 95, 94, 93]),
]


@pytest.fixture()
def model(fast_model):
    return fast_model[0]


@pytest.mark.parametrize("stack,head_rows", [(2048, 256), (4, 3)])  # one stack; several stacks and head blocks
def test_numpy_scores_equal_the_mlx_forward(model, stack, head_rows, monkeypatch):
    monkeypatch.setattr(answer_scores, "STACK_POSITIONS", stack)
    monkeypatch.setattr(answer_scores, "HEAD_ROWS", head_rows)
    for disabled in (False, True):  # with the adapter, and the base model (every LoRA scale 0)
        with adapter_disabled(model) if disabled else nullcontext():
            expected = rows_logps(model, ROWS).tolist()
            got = backend_of(model).answer_logps(model, ROWS)
        assert got == pytest.approx(expected, abs=2e-4)
    assert len(set(round(x, 3) for x in got)) == len(ROWS)  # the rows really differ: a real comparison


def test_pure_mlx_backend_leaves_scoring_to_the_caller(model):
    assert MlxBackend().answer_logps(model, ROWS) is None


def test_an_empty_answer_is_refused(model):
    with pytest.raises(ValueError, match="at least one token"):
        answer_scores.answer_logps(model, [([1, 2], [])])

