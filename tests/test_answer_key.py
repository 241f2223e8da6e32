"""Held-out answers are held to their prompt's right answer where it has one (``evaluation.answer_key``)."""

from __future__ import annotations

import pytest

from asls_mlx.evaluation.answer_key import ANSWER_ISSUE, answer_right, keys_by_prompt
from asls_mlx.evaluation.metrics import score_heldout
from asls_mlx.evaluation.personas import get_persona
from asls_mlx.profiling.labels import named_labels
from asls_mlx.profiling.quality import quality_issues


def _prompt(key_id: str) -> str:
    return next(p for p, k in keys_by_prompt().items() if k["id"] == key_id)


# (key id, a right answer, a wrong one); the wrong ones are the embedded model's where it wrote one.
CASES = [
    ("general-04", "The tallest mountain in Europe is Mount Elbrus (5,642 m), in Russia.",
     "The tallest mountain in Europe is Mount Etna, located in Sicily, Italy."),
    ("general-10", "There are eight planets in the solar system.", "There are 9 planets, or 8 without Pluto."),
    ("classify-01", "Business: a startup raising money is business news.", "Science, because it is about batteries."),
    ("classify-04", "1. Billing\n2. Technical\n3. Shipping",
     "This is a billing message. 1. Billing 2. Billing 3. Technical"),
    ("classify-07", "Surprise: the friends jumped out when the door opened.", "Fear: someone jumped out."),
    ("classify-10", "Facilities, because the heating belongs to the building, not IT.", "IT should handle it."),
    ("coding-07", "Use `wc -l file.txt`: it prints the number of lines.",
     "Here's a simple Bash function that counts the number of lines in a file:\n"
     "```bash\ncount_lines < filename.txt\n```"),
    ("coding-22", "```bash\nfind /var/app/logs -name \"*.log\" -mtime +7 -delete\n```", "rm /var/app/logs/*.log"),
    ("coding-40",
     "```bash\nfor f in *.jpg; do\n  mv \"$f\" \"$(echo \"$f\" | tr '[:upper:]' '[:lower:]')\"\ndone\n```",
     "```bash\nfor f in *.jpg; do echo $f; done\n```"),
    ("coding-58", "git checkout -b feature-login", "git branch feature-login"),
    ("coding-76", "awk '{print $1}' access.log | sort | uniq -c | sort -nr", "grep -c access.log"),
    ("coding-103", "sed -i 's#http://#https://#g' *.html", "Open each file and replace http with https."),
    ("rewrite-04", "We made mistakes in preparing the budget, and nobody checked the numbers before we sent the report.",
     "The report was prepared without checking the numbers."),
]


@pytest.mark.parametrize("key_id, right, wrong", CASES, ids=[c[0] for c in CASES])
def test_every_key_accepts_a_right_answer_and_rejects_a_wrong_one(key_id, right, wrong):
    prompt = _prompt(key_id)
    assert answer_right(prompt, right) is True
    assert answer_right(prompt, wrong) is False


def test_every_bundled_key_is_tested_and_a_prompt_without_one_is_not_judged():
    assert {k["id"] for k in keys_by_prompt().values()} == {c[0] for c in CASES}
    assert answer_right("Why is the sky blue?", "Because of Rayleigh scattering.") is None


def test_labels_named_only_in_the_question_restated_do_not_count():
    prompt = _prompt("classify-04")
    echo = 'Here are the customer messages labeled billing, technical or shipping:\n1. "I was charged twice."'
    assert named_labels(prompt, echo) == []
    assert answer_right(prompt, echo) is False


def test_a_wrong_fact_that_passes_every_text_check_scores_zero_as_wrong_answer():
    prompt, wrong = _prompt("general-04"), CASES[0][2]
    assert quality_issues(prompt, wrong) == []  # reads well, on topic: only the key tells
    score = score_heldout(get_persona("concise"), [prompt, prompt], [wrong, CASES[0][1]])
    assert score.issues == {ANSWER_ISSUE: 1}
    assert score.per_prompt == [0.0, 1.0]
