"""Readers of the text shipped in ``asls_mlx/data/`` (CC0, see ``asls_mlx/data/LICENSE-data.md``).

At the bottom of the package (it imports nothing of asls), so the learning pipeline and the evaluation
read the same files through the same functions.
"""

from __future__ import annotations

import json
from importlib import resources


def _jsonl(name: str) -> list[dict]:
    text = resources.files("asls_mlx").joinpath(f"data/{name}").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def general_texts() -> list[str]:
    """Built-in general text used to check the adapter does not forget (retention)."""
    return [row["text"] for row in _jsonl("general_text.jsonl")]


def anchor_questions() -> list[str]:
    """Everyday questions whose base-model answers anchor what an adapter keeps (``asls_mlx.adaptation.anchors``)."""
    return [row["question"] for row in _jsonl("anchor_questions.jsonl")]


def task_probes() -> list[str]:
    """Short tasks (summarise, list N, extract, classify) the commit gate may ask besides its probe questions."""
    return [row["prompt"] for row in _jsonl("task_probes.jsonl")]


def task_anchors() -> list[str]:
    """Short tasks (list N things, summarise, extract, classify) whose base-model answers may anchor training
    (``LearningConfig.task_anchors``); none of them is a task probe."""
    return [row["prompt"] for row in _jsonl("task_anchors.jsonl")]


def code_tests() -> list[dict]:
    """Test cases of the held-out prompts that ask for a Python function: id (the prompt's), function, cases."""
    return _jsonl("code_tests.jsonl")


def sql_tests() -> list[dict]:
    """A small database and a reference query for each held-out prompt that asks for SQL: id (the prompt's),
    setup, reference, and optionally alternatives (other accepted references), kind ("change": the query changes
    a table, read back by check), compare (the reference's columns to match), ordered."""
    return _jsonl("sql_tests.jsonl")


def answer_key() -> list[dict]:
    """The right answers of the held-out prompts that have one: id (the prompt's) and accepted (forms of a right
    answer), labels (a classification's), commands (alternatives, each patterns that must all occur) or forbidden
    (patterns a right answer cannot hold)."""
    return _jsonl("answer_key.jsonl")


def load_prompts() -> list[dict]:
    """The built-in prompt set of the evaluation: id, category, split, prompt."""
    return _jsonl("prompts.jsonl")
