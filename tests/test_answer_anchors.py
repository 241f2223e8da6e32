"""Answer anchors: the base model's own answers to everyday questions in the retention term (off by default)."""

import re

from asls_mlx import Assistant, AssistantConfig
from asls_mlx.adaptation.base_cache import BaseCache
from asls_mlx.adaptation.config import LearningConfig
from asls_mlx.adaptation.anchors import anchor_texts, interleave
from asls_mlx.correctness import load_gate_probes
from asls_mlx.data_files import anchor_questions, load_prompts
from asls_mlx.evaluation.correctness import load_correctness_set

FAST = dict(max_tokens=12, train_budget_s=20, self_labelled=False)
NO_TASKS = LearningConfig(task_anchors=False)  # the answer anchors alone
EDITS = [("What is the capital of France?", "Paris is the capital."),
         ("How do I boil an egg?", "Boil it for nine minutes."),
         ("Name a fruit that is red", "An apple is red.")]


def _words(text: str) -> frozenset:
    return frozenset(re.findall(r"[a-z]+", text.lower()))


def test_no_anchor_question_is_one_the_gate_or_the_eval_asks():
    asked = ([p.question for p in load_gate_probes()] + [q.question for q in load_correctness_set()]
             + [r["prompt"] for r in load_prompts()])
    _assert_none_near(anchor_questions(), asked)


def _assert_none_near(questions: list[str], asked: list[str]) -> None:
    """At least 12 distinct questions, none sharing 60% of its words with one the gate or the eval asks."""
    assert len(questions) == len(set(questions)) >= 12
    for q in questions:
        closest = max(len(_words(q) & _words(a)) / len(_words(q) | _words(a)) for a in asked)
        assert closest < 0.6, q


def test_interleave_pairs_one_of_each_then_the_rest():
    assert interleave(["g0", "g1"], ["a0", "a1", "a2"]) == ["g0", "a0", "g1", "a1", "a2"]
    assert interleave(["g0", "g1", "g2"], ["a0"]) == ["g0", "a0", "g1", "g2"]


def test_anchors_are_the_base_models_answers_in_the_chat_template_and_are_kept(tiny_model_dir, tmp_path, monkeypatch):
    from asls_mlx.adaptation import anchors as answer_anchors
    from asls_mlx.engine.sampling import greedy_answers

    calls = []

    def counted(engine, prompts, system, max_tokens=48, options=None):
        calls.append(len(prompts))
        return greedy_answers(engine, prompts, system, max_tokens)

    monkeypatch.setattr(answer_anchors, "greedy_answers", counted)
    cache = BaseCache(tmp_path / "cache")
    with Assistant(user="anchors", model=str(tiny_model_dir), config=AssistantConfig(**FAST, learning=NO_TASKS)) as a:
        system = a.config.system_prompt
        texts = anchor_texts(a.engine, system, cache)
        expected = greedy_answers(a.engine, anchor_questions(), system, answer_anchors.ANSWER_TOKENS)
        for text, q, answer in zip(texts, anchor_questions(), expected):
            assert text.startswith(a.engine.tokenizer.apply_chat_template(
                [{"role": "system", "content": system}, {"role": "user", "content": q}], tokenize=False))
            assert answer in text
        _session_with_edits(a)
        assert a.end_session(train="wait").training.committed  # an adapter is active: anchors still the base's
        assert anchor_texts(a.engine, system, None) == texts
    assert calls == [len(texts), len(texts)]  # the cached call decoded nothing; the uncached one did


def _session_with_edits(a):
    for q, e in EDITS:
        a.chat(q)
        a.edit(e)


def test_an_update_trains_on_anchors_only_when_asked_and_judges_retention_on_general_text(tiny_model_dir, monkeypatch):
    from asls_mlx.adaptation import update
    from asls_mlx.data_files import general_texts

    trained, judged = [], []
    real_train, real_retention = update.train_on_pairs, update.retention_perplexity

    def train(*args, general_texts=(), **kwargs):
        trained.append(list(general_texts))
        return real_train(*args, general_texts=general_texts, **kwargs)

    def retention(model, tokenizer, texts, **kwargs):
        judged.append(list(texts))
        return real_retention(model, tokenizer, texts, **kwargs)

    monkeypatch.setattr(update, "train_on_pairs", train)
    monkeypatch.setattr(update, "retention_perplexity", retention)
    for i, on in enumerate((False, True)):
        config = AssistantConfig(**FAST, learning=LearningConfig(answer_anchors=on, task_anchors=False))
        with Assistant(user=f"anchored{i}", model=str(tiny_model_dir), config=config) as a:
            _session_with_edits(a)
            a.end_session(train="wait")
            anchors = anchor_texts(a.engine, a.config.system_prompt) if on else []
    general = general_texts()
    assert trained[0] == general and judged[0] == general
    assert trained[1] == interleave(general, anchors) and judged[1] == general
    assert trained[1][1] == anchors[0] and len(trained[1]) == len(general) + len(anchors)


def test_no_task_anchor_is_a_task_the_gate_or_the_eval_asks():
    from asls_mlx.data_files import task_anchors, task_probes

    asked = task_probes() + [p.question for p in load_gate_probes()] + [r["prompt"] for r in load_prompts()]
    _assert_none_near(task_anchors(), asked)


def test_task_anchors_hold_the_base_models_whole_answers_to_tasks_in_longer_rows(tiny_model_dir, monkeypatch):
    """With ``task_anchors`` the retention texts interleave the general texts with the base model's answers to the
    anchor tasks, decoded to TASK_ANSWER_TOKENS, and the rows grow to TASK_ANCHOR_ROW tokens to hold a list's end."""
    from asls_mlx.adaptation import anchors as answer_anchors
    from asls_mlx.adaptation.config import TASK_ANCHOR_ROW, TASK_ANSWER_TOKENS
    from asls_mlx.data_files import general_texts, task_anchors
    from asls_mlx.engine.sampling import greedy_answers
    from asls_mlx.session_update import training_texts

    budgets = []

    def recorded(engine, prompts, system, max_tokens=48, options=None):
        budgets.append(max_tokens)
        return greedy_answers(engine, prompts, system, max_tokens)

    monkeypatch.setattr(answer_anchors, "greedy_answers", recorded)
    on = AssistantConfig(**FAST, learning=LearningConfig(task_anchors=True))
    with Assistant(user="tasks", model=str(tiny_model_dir), config=on) as a:
        texts = training_texts(a.engine, a.config, general_texts())
        alone = training_texts(a.engine, AssistantConfig(**FAST, learning=NO_TASKS), general_texts())
        assert alone is None  # the general texts alone
    general, tasks = general_texts(), task_anchors()
    assert budgets == [TASK_ANSWER_TOKENS]
    assert len(texts) == len(general) + len(tasks) and texts[0] == general[0]
    assert texts == interleave(general, [t for t in texts if t not in general])
    assert all(task in text for task, text in zip(tasks, [t for t in texts if t not in general]))
    assert on.learning_config().training_args().retention_length == TASK_ANCHOR_ROW
    assert NO_TASKS.training_args().retention_length == NO_TASKS.retention_length == 64
