"""The gate's answers kept between updates (``adaptation.gate_memory``): an update does not decode again what
the same weights answered under the same system prompt, a forgotten session's prompts leave the file, and the
file is the user's (owner-only, gone with a forget)."""

import json
import stat

import mlx.core as mx
import pytest

from asls_mlx import Assistant, AssistantConfig
from asls_mlx.adaptation.gate_memory import FILE_NAME, GateMemory, weights_name
from asls_mlx.adaptation.lora import lora_parameters
from asls_mlx.session_update import Learner, train_and_gate, user_dir

SYSTEM = "You are a helpful assistant."


def test_kept_answers_come_back_per_system_prompt_and_weights(tmp_path):
    path = tmp_path / FILE_NAME
    memory = GateMemory(path, "model A")
    memory.keep(SYSTEM, "base", {"Q1": "A1"})
    memory.keep(SYSTEM, "v1", {"Q1": "B1", "Q2": "B2"})
    memory.keep(SYSTEM + "\nKeep answers short (about 25 words).", "v1", {"Q1": "C1"})
    memory.save()
    again = GateMemory(path, "model A")
    assert again.answers(SYSTEM, "base") == {"Q1": "A1"} and again.answers(SYSTEM, "v1") == {"Q1": "B1", "Q2": "B2"}
    assert again.answers(SYSTEM + "\nKeep answers short (about 25 words).", "v1") == {"Q1": "C1"}
    assert again.answers(SYSTEM, "v2") == {} and again.answers("another prompt", "base") == {}
    assert GateMemory(path, "model B").answers(SYSTEM, "base") == {}  # other base weights or gate options: nothing
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert weights_name(None) == "base" and weights_name(3) == "v3" and weights_name(3, 1.5) == "v3@1.500000"


def test_the_newest_versions_and_system_prompts_stay(tmp_path):
    memory = GateMemory(tmp_path / FILE_NAME, "m")
    for v in (1, 2, 3):
        memory.keep(SYSTEM, weights_name(v), {"Q": f"v{v}"})
    memory.keep(SYSTEM, "base", {"Q": "base"})
    assert [memory.answers(SYSTEM, f"v{v}") for v in (1, 2, 3)] == [{}, {"Q": "v2"}, {"Q": "v3"}]
    assert memory.answers(SYSTEM, "base") == {"Q": "base"}
    for n in (1, 2, 3):
        memory.keep(f"system {n}", "base", {"Q": str(n)})
    assert [memory.answers(f"system {n}", "base") for n in (1, 2, 3)] == [{}, {"Q": "2"}, {"Q": "3"}]


def test_a_broken_file_only_costs_the_decoding(tmp_path):
    path = tmp_path / FILE_NAME
    for text in ("{not json", json.dumps({"format": 1, "setting": "x", "systems": []}), "[]"):
        path.write_text(text)
        assert GateMemory(path, "m").answers(SYSTEM, "base") == {}


def test_relevance_scores_are_computed_once_and_kept_for_the_next_update(tmp_path):
    calls = []

    def relevance(prompts, answers):
        calls.append(list(zip(prompts, answers)))
        return [len(a) / 10 for a in answers]

    memory = GateMemory(tmp_path / FILE_NAME, "m")
    pmi = memory.remembered(relevance)
    assert pmi(["Q1", "Q2"], ["one", "three"]) == [0.3, 0.5]
    assert pmi(["Q2", "Q3"], ["three", "x"]) == [0.5, 0.1] and calls[-1] == [("Q3", "x")]
    memory.keep_only({"Q1", "Q2"})  # Q3's pair was deleted
    memory.save()
    calls.clear()
    assert GateMemory(tmp_path / FILE_NAME, "m").remembered(relevance)(["Q1", "Q3"], ["one", "x"]) == [0.3, 0.1]
    assert calls == [[("Q3", "x")]]


def _signature(model, lora=None) -> tuple | str:
    """Which weights answer (the model's, or a row's own ``lora``): "base" while every LoRA B is 0, else the B
    matrices' sums."""
    weights = lora_parameters(model) if lora is None else lora
    sums = tuple(round(float(mx.sum(mx.abs(v))), 4) for k, v in sorted(weights.items()) if "lora_b" in k)
    return "base" if not any(sums) else sums


def _session(a, prompts):
    for q in prompts:
        a.chat(q)
        a.edit("A short answer about " + q.lower().rstrip("?.") + ".")
    a.end_session(train="none")
    return a.store.sessions(a.user.id)[-1].id


@pytest.fixture
def decodes(monkeypatch):
    """Every (weights, system prompt, prompt) the gate decodes."""
    from asls_mlx import session_update

    seen: list[tuple] = []
    real = session_update.greedy_answers

    def spy(engine, prompts, system, **kw):
        loras = kw.get("loras") or [None] * len(prompts)
        seen.extend((_signature(engine.model, lora), system, q) for q, lora in zip(prompts, loras))
        return real(engine, prompts, system, **kw)

    monkeypatch.setattr(session_update, "greedy_answers", spy)
    return seen


def test_a_later_update_does_not_decode_again_what_the_same_weights_answered(tiny_model_dir, decodes):
    config = AssistantConfig(max_tokens=8, train_budget_s=20, self_labelled=False, profile_in_prompt=False)
    with Assistant(user="kept", model=str(tiny_model_dir), config=config) as a:
        learner = Learner(a.store, a.user, a.engine, a.config)
        first = train_and_gate(learner, [_session(a, ["What is a comet?", "How do tides work?", "Name a red fruit."])])
        assert first.answers["old"] and first.answers["base"] == first.answers["old"]  # no adapter yet: the base's
        active = first.answers["new"] if first.committed else first.answers["old"]
        second = train_and_gate(learner, [_session(a, ["What is a planet?", "How do rivers form?"])])
        # the second update judged against the active weights' answers to the first one's prompts and probes ...
        reused = set(active) & set(second.answers["old"])
        assert len(reused) > len(set(active)) // 2, second.reason
        assert all(second.answers["old"][q] == active[q] for q in reused)
        # ... read from the user's file, not decoded again (nor the base model's)
        assert decodes and len(set(decodes)) == len(decodes)
        assert (user_dir(a.store, a.user) / FILE_NAME).is_file()


def test_forgetting_a_session_deletes_the_kept_answers_and_an_update_drops_a_deleted_pairs(tiny_model_dir):
    config = AssistantConfig(max_tokens=8, train_budget_s=20, self_labelled=False, profile_in_prompt=False)
    with Assistant(user="forgets", model=str(tiny_model_dir), config=config) as a:
        learner = Learner(a.store, a.user, a.engine, a.config)
        path = user_dir(a.store, a.user) / FILE_NAME
        sid = _session(a, ["What is a comet?", "How do tides work?"])
        train_and_gate(learner, [sid])
        assert "What is a comet?" in path.read_text()
        a.forget(session_id=sid)
        assert not path.exists()
        train_and_gate(learner, [_session(a, ["What is a planet?"])])
        text = path.read_text()
        assert "What is a planet?" in text and "What is a comet?" not in text
