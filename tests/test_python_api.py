"""The Python API as a notebook uses it (tiny random model): per-call options, Jupyter views, a second
Assistant in the same process, progress while waiting for training, the profile during a session, removing
what it learned, and the import-order warning."""

import gc
import os
import subprocess
import sys

import pytest

from asls_mlx import Assistant, AssistantConfig, ASLSError

FAST = dict(max_tokens=12, train_budget_s=20, self_labelled=False)
EDITS = [
    ("What is the capital of France?", "Paris is the capital."),
    ("Explain photosynthesis to me", "Plants turn light into sugar."),
    ("How do I boil an egg?", "Boil it for nine minutes."),
    ("What is a good name for a cat?", "Try Milo, a classic."),
    ("Name a fruit that is red", "An apple is red."),
]


def _spy(a, monkeypatch):
    """Record the messages and sampling options of every generation."""
    seen = []
    stream, complete = a.engine.stream, a.engine.complete

    def spy_stream(messages, options):
        seen.append((messages, options))
        return stream(messages, options)

    def spy_complete(messages, options):
        seen.append((messages, options))
        return complete(messages, options)

    monkeypatch.setattr(a.engine, "stream", spy_stream)
    monkeypatch.setattr(a.engine, "complete", spy_complete)
    return seen


def test_options_apply_to_one_call_only(tiny_model_dir, monkeypatch):
    with Assistant(user="opt", model=str(tiny_model_dir), config=AssistantConfig(**FAST)) as a:
        seen = _spy(a, monkeypatch)
        reply = a.chat("hello", temperature=0.7, max_tokens=3, system="You are a pirate.")
        messages, options = seen[-1]
        assert (options.temperature, options.max_tokens) == (0.7, 3)
        assert messages[0] == {"role": "system", "content": "You are a pirate."}
        # 3 sampled tokens: a byte-level token that ends mid-character shows as U+FFFD, which re-encodes to 3 tokens
        whole = reply.text.replace("\ufffd", "")
        assert reply.finish_reason == "length" and len(a.engine.tokenizer.encode(whole, add_special_tokens=False)) <= 3 + 1
        a.chat("again")
        messages, options = seen[-1]
        assert (options.temperature, options.max_tokens) == (0.0, 12)  # back to the config's
        assert messages[0]["content"].startswith("You are a helpful assistant.")
        a.answer("one shot", max_tokens=2, system="Be brief.")
        messages, options = seen[-1]
        assert options.max_tokens == 2 and options.temperature == 0.0 and messages[0]["content"] == "Be brief."
        for bad in (dict(temperature=-1), dict(temperature="hot"), dict(max_tokens=0), dict(max_tokens=2.5),
                    dict(system=3)):
            with pytest.raises(ASLSError, match=next(iter(bad))):
                a.chat("not stored", **bad)
        assert [m.content for m in a.history() if m.role == "user"] == ["hello", "again"]


def test_jupyter_views_say_what_matters(tiny_model_dir):
    with Assistant(user="nb", model=str(tiny_model_dir), config=AssistantConfig(**FAST)) as a:
        assert "**Assistant** for nb" in a._repr_markdown_() and "no session open" in a._repr_markdown_()
        reply = a.chat("I prefer bullet points. What is lava?")
        view = reply._repr_markdown_()
        assert view.startswith(reply.text) and "base model" in view and f"message {reply.message_id}" in view
        assert "session" in a._repr_markdown_() and "Use bullet points." in a._repr_markdown_()
        profile_view = a.profile._repr_markdown_()
        assert "| bullets | wanted |" in profile_view and "Use bullet points." in profile_view
        summary = a.end_session(train="none")
        assert "0 preference pairs" not in summary._repr_markdown_() or summary.pairs_mined == 0
        assert f"**Session {summary.session_id} ended**" in summary._repr_markdown_()
        assert "bullets: unknown -> wanted" in summary._repr_markdown_()
    assert "(closed)" in a._repr_markdown_()


def test_a_second_assistant_in_this_process_is_told_so(tiny_model_dir):
    first = Assistant(user="twin", model=str(tiny_model_dir), config=AssistantConfig(**FAST))
    with pytest.raises(ASLSError, match="already chatting in this process.*close"):
        Assistant(user="twin", model=str(tiny_model_dir))
    del first  # a notebook cell run again: the old object is dropped without close()
    gc.collect()
    Assistant(user="twin", model=str(tiny_model_dir)).close()


def test_waiting_for_training_reports_phases_and_steps(tiny_model_dir):
    heard = []
    with Assistant(user="wait", model=str(tiny_model_dir), config=AssistantConfig(**FAST)) as a:
        for q, e in EDITS:
            a.chat(q)
            a.edit(e)
        with pytest.raises(ASLSError, match="progress must be a function"):
            a.end_session(train="wait", progress="loud")
        summary = a.end_session(train="wait", progress=heard.append)
    steps = [p for p in heard if p.phase == "training" and p.total]
    phases = [(i, p.phase) for i, p in enumerate(heard) if not p.total]
    assert (heard.index(steps[0]) - 1, "training") in phases  # the phase is announced just before its steps
    assert sorted({p.step for p in steps}) == list(range(1, summary.training.steps + 1))
    assert all(p.loss is not None and p.total >= p.step for p in steps)
    assert str(steps[-1]).startswith(f"training step {summary.training.steps}/")


def test_the_profile_updates_during_the_session_and_reaches_the_prompt(tiny_model_dir, monkeypatch):
    with Assistant(user="live", model=str(tiny_model_dir), config=AssistantConfig(**FAST)) as a:
        seen = _spy(a, monkeypatch)
        a.chat("What is lava?")
        assert "bullet" not in seen[-1][0][0]["content"]
        a.chat("I prefer bullet points")
        a.chat("And what is magma?")
        assert "Use bullet points." in seen[-1][0][0]["content"]  # the same session's next answer
        assert a.profile.claims().get("bullets") is True
        features = {f.name: f for f in a.learned()}
        assert any("I prefer bullet points" in e.text for e in features["bullets"].evidence)
        a.forget_feature("bullets")
        a.chat("And what is basalt?")
        assert "bullet" not in seen[-1][0][0]["content"]
        assert "bullets" not in a.end_session(train="none").profile.claims()


def test_a_forgotten_pair_leaves_training_and_the_adapter_trained_on_it(tiny_model_dir):
    with Assistant(user="pairs", model=str(tiny_model_dir), config=AssistantConfig(**FAST)) as a:
        for q, e in EDITS:
            a.chat(q)
            a.edit(e)
        assert a.end_session(train="wait").training.committed
        used = [p for p in a.pairs() if p.split == "train"]
        assert used and a.adapter_version == 1
        summary = a.forget_pair(used[0].id)
        assert summary.pairs == 1 and summary.tainted_versions == (1,)
        assert a.adapter_version is None  # back on the base model; the other pairs wait to be trained again
        assert used[0].id not in {p.id for p in a.pairs(100)} and a.pairs_waiting() == len(used) - 1
        with pytest.raises(ASLSError, match="no preference pair"):
            a.forget_pair(used[0].id)


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-W", "default", "-c", code], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ))


def test_importing_mlx_first_is_warned_about():
    assert "imported before asls_mlx" in _python("import mlx.core; import asls_mlx").stderr
    assert "imported before asls_mlx" not in _python("import asls_mlx; import mlx.core").stderr


def test_the_notebook_widget_warning_is_silenced():
    warn = "import warnings; warnings.warn('IProgress not found. Please update jupyter and ipywidgets.')"
    assert "IProgress" in _python(warn).stderr  # what a notebook without ipywidgets shows
    assert "IProgress" not in _python("import asls_mlx; " + warn).stderr
