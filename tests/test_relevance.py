"""The relevance check: the base model's PMI between a prompt and an answer (adaptation.relevance)."""

from __future__ import annotations

import math

import asls_mlx  # noqa: F401  (BLAS before mlx.core)
import mlx.core as mx
import pytest

from adaptation_fixtures import fresh_model
from asls_mlx.adaptation.batching import answer_ids, prompt_ids
from asls_mlx.adaptation.logprobs import rows_logps
from asls_mlx.adaptation.lora import lora_parameters, set_lora_weights
from asls_mlx.adaptation.relevance import REFERENCE_PROMPTS, answer_pmi, irrelevant, relevance_flags
from asls_mlx.profiling.quality import quality_issues


def _logp(model, tok, prompt, answer):
    return rows_logps(model, [(prompt_ids(tok, prompt), answer_ids(tok, answer))]).item()


def test_pmi_is_own_minus_log_mean_of_references_per_token(tiny_model_dir):
    model, tok = fresh_model(tiny_model_dir)
    prompt, answer = "Tell me about owls.", "Owls hunt at night."
    (pmi,) = answer_pmi(model, tok, [prompt], [answer])
    refs = [_logp(model, tok, r, answer) for r in REFERENCE_PROMPTS]
    expected = (_logp(model, tok, prompt, answer) - math.log(sum(math.exp(x) for x in refs) / len(refs)))
    assert pmi == pytest.approx(expected / len(answer_ids(tok, answer)), abs=1e-4)
    # An answer judged against its own prompt only (references = the prompt itself, skipped) needs another one.
    assert answer_pmi(model, tok, [REFERENCE_PROMPTS[0]], [answer])[0] == pytest.approx(
        answer_pmi(model, tok, [REFERENCE_PROMPTS[0]], [answer], references=REFERENCE_PROMPTS)[0])
    assert answer_pmi(model, tok, [prompt], [""]) == [-math.inf] and irrelevant(-math.inf)


def test_pmi_is_judged_by_the_base_model_whatever_adapter_is_loaded(tiny_model_dir):
    model, tok = fresh_model(tiny_model_dir)
    prompts, answers = ["Tell me about owls.", "How do I bake bread?"], ["Owls hunt at night.", "Mix flour and water."]
    base = answer_pmi(model, tok, prompts, answers)
    weights = {k: mx.random.normal(v.shape) * 0.5 for k, v in lora_parameters(model).items()}
    set_lora_weights(model, weights)
    assert _logp(model, tok, prompts[0], answers[0]) != pytest.approx(0.0)  # the adapter changes the model...
    assert answer_pmi(model, tok, prompts, answers) == pytest.approx(base, abs=1e-4)  # ...not the judge
    assert all(mx.array_equal(v, weights[k]) for k, v in lora_parameters(model).items())  # and it is back on


@pytest.mark.e2e
def test_embedded_model_tells_answers_from_swapped_and_content_free_ones(default_model_dir):
    from asls_mlx.engine import load_model

    model, tok, _ = load_model(str(default_model_dir))
    prompts = ["What is the capital of France?", "How do I boil an egg?", "What is 12 times 3?",
               "Give me a synonym for 'happy'."]
    own = ["The capital of France is Paris.", "Put the egg in boiling water for about nine minutes, then cool it.",
           "12 times 3 is 36.", "A synonym for 'happy' is 'joyful'."]
    swapped = own[2:] + own[:2]
    empty = ["The answer is:", "Sure! Here is the answer.", "I can help with that.", "The corrected version is:"]
    system = "You are a helpful assistant."
    assert relevance_flags(model, tok, prompts, own, system) == [False] * 4
    assert relevance_flags(model, tok, prompts, swapped, system) == [True] * 4
    # Content-free answers fail the relevance check or the text checks (as the eval and the gate count them).
    flags = relevance_flags(model, tok, prompts, empty, system)
    assert all(f or quality_issues(q, a) for q, a, f in zip(prompts, empty, flags)), flags
    assert sum(flags) >= 2


def test_threshold_in_use_meets_the_recorded_calibration():
    """The recorded calibration run (benchmarks/relevance_calibration.py on the embedded model) at the threshold
    in use: <= 5% of the model's own answers flagged, >= 95% of answers swapped between prompts, and every
    content-free answer flagged by the PMI or the text checks. Changing PMI_THRESHOLD without re-calibrating fails."""
    import json
    from pathlib import Path

    from asls_mlx.adaptation.relevance import PMI_THRESHOLD

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "relevance_calibration.json"
    examples = json.loads(path.read_text())["examples"]
    by_kind = {k: [e for e in examples if e["kind"] == k] for k in ("own", "swapped", "content_free")}
    assert all(len(v) >= 100 for v in by_kind.values())
    share = {k: sum(irrelevant(e["pmi"]) for e in v) / len(v) for k, v in by_kind.items()}
    assert share["own"] <= 0.05 and share["swapped"] >= 0.95, (PMI_THRESHOLD, share)
    assert all(irrelevant(e["pmi"]) or quality_issues(e["prompt"], e["answer"]) for e in by_kind["content_free"])
