"""A rejected update tried once more scaled down (``LearningConfig.retry_scale``), on the tiny random model: the gate
judges the smaller change afresh, commits it only if it passes, and the run says which share it kept and why."""

from contextlib import contextmanager
from dataclasses import replace

import mlx.core as mx
import pytest

from asls_mlx import Assistant, AssistantConfig, ASLSError
from asls_mlx.adaptation.config import LearningConfig
from asls_mlx.adaptation.gate import GateChecks
from asls_mlx.adaptation.lora import lora_parameters
from asls_mlx.adaptation.update import UpdateTarget, update_adapter
from asls_mlx.profiling import quality_issues

FAST = dict(max_tokens=12, train_budget_s=20, self_labelled=False)
EDITS = [("What is the capital of France?", "Paris is the capital."),
         ("How do I boil an egg?", "Boil it for nine minutes."),
         ("Name a fruit that is red", "An apple is red.")]
LOOP = "the island of the island of the island of the island of the island of"
SOUND = "A short, sound answer to the question asked here."


@contextmanager
def _edited_session(model_dir):
    """A user who edited three answers down, their session ended, nothing trained yet."""
    with Assistant(user="retry", model=str(model_dir), config=AssistantConfig(**FAST)) as a:
        for q, e in EDITS:
            a.chat(q)
            a.edit(e)
        a.end_session(train="none")
        yield a


def _moved(model) -> float:
    """How far the adapter is from the base model: the summed size of its B matrices (0 for the base model)."""
    return sum(float(mx.abs(v).sum()) for k, v in lora_parameters(model).items() if k.endswith("lora_b"))


def _update(a, scale, breaks_above):
    """One update whose answers loop when the adapter has moved more than ``breaks_above`` x the trained change."""
    seen = []

    def answer_fn(prompts):
        seen.append(_moved(a.engine.model))
        return [LOOP if seen[-1] > breaks_above * max(seen) else SOUND] * len(prompts)

    engine = a.engine
    config = replace(a.config.learning_config(), retry_scale=scale)
    report = update_adapter(UpdateTarget(a.store, a.user.id, engine.model, engine.tokenizer, a.repo, engine.model_id),
                            config, GateChecks(answer_fn=answer_fn, quality_issues=quality_issues))
    return report, seen


@pytest.mark.parametrize("breaks_above, committed", [(0.75, True), (0.25, False)])
def test_a_rejected_update_is_tried_again_at_half_and_committed_only_if_that_passes(tiny_model_dir, breaks_above,
                                                                                      committed):
    with _edited_session(tiny_model_dir) as a:
        report, seen = _update(a, 0.5, breaks_above)
        full, old, half = seen  # new answers, the old (base) model's (decoded once for both checks), the half's
        assert old == 0 and full > 0 and half == pytest.approx(full / 2, rel=1e-3)  # B was 0: exactly half
        assert report.committed is committed and report.scale == 0.5
        run = a.store.training_runs(a.user.id)[-1]
        assert run.metrics["scale"] == 0.5 and "repetition" in run.reason  # the whole update's failure is kept
        if committed:
            assert run.reason.startswith("0.5 of the update: ") and a.store.active_adapter(a.user.id).version == 1
            assert "0.5 of the trained change" in report.summary()
            assert _moved(a.engine.model) == pytest.approx(half, rel=1e-3)  # the live model holds the half
        else:
            assert "0.5 of the update too: " in run.reason and a.store.active_adapter(a.user.id) is None
            assert _moved(a.engine.model) == 0  # the old (base) weights are back


def test_a_retry_judges_against_the_base_models_answers_decoded_once(tiny_model_dir):
    """With an earlier adapter active the gate also compares with the base model: its answers serve the retry too."""
    with _edited_session(tiny_model_dir) as a:
        assert _update(a, 0.5, breaks_above=2.0)[0].committed  # sound answers: v1
        for q, e in EDITS:
            a.chat(q + " Tell me again.")
            a.edit(e)
        a.end_session(train="none")
        report, seen = _update(a, 0.5, breaks_above=0.9)  # the whole update loops: rejected, tried at half
        assert report.scale == 0.5 and len(seen) == 4  # new, old (v1), base, half: nothing decoded twice
        assert seen.count(0.0) == 1


def test_without_a_retry_scale_a_rejection_is_final(tiny_model_dir):
    with _edited_session(tiny_model_dir) as a:
        report, seen = _update(a, None, 0.75)
        assert not report.committed and len(seen) == 2 and report.scale == 1.0


@pytest.mark.parametrize("scale", [0.0, 1.0, 1.5, -0.5])
def test_a_retry_scale_outside_0_1_is_refused_with_what_to_use(scale):
    with pytest.raises(ASLSError, match="between 0 and 1"):
        LearningConfig(retry_scale=scale)
