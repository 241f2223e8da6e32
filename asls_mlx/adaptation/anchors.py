"""The base model's own answers to everyday questions: a retention anchor in the chat's format.

The retention term (``LearningConfig.retention_weight``) holds the adapter's next-token distributions to the
base model's on general text. That text is prose, and what a user's adapter forgets is how to answer: after two
committed sessions, adapters whose general-text perplexity had risen only 1.03-1.07x answered "Who wrote the
novel Pride and Prejudice?" with "A classic example of a ..." and the commit gate rejected every third session
for such answers. An anchor is a question of ``data/anchor_questions.jsonl`` (none of them among the gate's
probes or the evaluation's questions) in the chat template, with the base model's greedy answer: the same term
on it holds the adapter to answering as the base model answers (``LearningConfig.answer_anchors``).
The answers depend only on the base model and the system prompt: decoded once and kept in the base cache.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from asls_mlx.adaptation.base_cache import BaseCache, array_key, base_fingerprint, cached
from asls_mlx.adaptation.lora import adapter_disabled
from asls_mlx.data_files import anchor_questions
from asls_mlx.engine import ChatEngine
from asls_mlx.engine.sampling import greedy_answers, single_turn

ANSWER_TOKENS = 32  # rows of 64 tokens (retention_length) hold it: template and question take ~30 of them


def anchor_texts(engine: ChatEngine, system: str, base_cache: BaseCache | None = None,
                 questions: list[str] | None = None, answer_tokens: int = ANSWER_TOKENS) -> list[str]:
    """Each anchor question (default: ``data/anchor_questions.jsonl``) with the base model's greedy answer of up to
    ``answer_tokens`` tokens, rendered as the chat renders a turn."""
    questions = anchor_questions() if questions is None else questions

    def decode(qs: list[str]) -> list[str]:
        with adapter_disabled(engine.model):
            return greedy_answers(engine, qs, system, max_tokens=answer_tokens)

    answers = cached_base_answers(base_cache, "anchor-answers", engine.model, system, answer_tokens, questions, decode)
    template = engine.tokenizer.apply_chat_template
    return [template(single_turn(system, q) + [{"role": "assistant", "content": a}], tokenize=False)
            for q, a in zip(questions, answers)]


def cached_base_answers(base_cache: BaseCache | None, kind: str, model, system: str, max_tokens: int,
                        questions: list[str], decode: Callable[[list[str]], list[str]]) -> list[str]:
    """``decode(questions)``, the base model's greedy answers, kept in ``base_cache`` for these base weights, system
    prompt, questions and token budget: nothing else changes them."""
    key = array_key(base_fingerprint(model), system, questions, max_tokens)
    stored = cached(base_cache, kind, key, ("answers",), lambda: {"answers": np.array(decode(questions))})
    return [str(a) for a in stored["answers"]]


def interleave(first: list[str], second: list[str]) -> list[str]:
    """``[f0, s0, f1, s1, ...]`` and then the rest of the longer list: the retention term takes its rows in
    turn, two per step, so each step holds one general text and one anchor."""
    out = [x for pair in zip(first, second) for x in pair]
    n = min(len(first), len(second))
    return out + first[n:] + second[n:]
