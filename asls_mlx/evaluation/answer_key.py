"""Is a held-out answer right where its prompt has a right answer? The ``wrong_answer`` issue.

Text checks see whether an answer does the task's kind of thing, not whether it is right: "The tallest mountain
in Europe is Mount Etna", "1. Billing 2. Billing 3. Technical" for three messages about a charge, a crash and a
parcel, or a bash script built on a ``count_lines`` command that does not exist read well and pass them. The
held-out prompts whose answer can be checked carry it in ``data/answer_key.jsonl`` (the SQL and Python prompts
are run instead: ``sql_check``, ``code_check``):

- ``accepted``: the forms a right answer may take, judged as the correctness set judges its questions
  (``asls_mlx.correctness.judge``: the answer must name one, not hedge between candidates, not refuse).
- ``labels``: a classification's right label(s). With one input, the first offered label the answer names (the
  question's alternatives restated do not count) must be one of them; with several inputs ("Label each of these
  messages"), the labels it names, in order, must be these.
- ``commands``: for a shell or git command, alternatives, each a list of patterns that must all occur in the answer
  ("wc -l", or "grep -c ''", or awk's ``END { print NR }``). A command is judged by what it calls, not run.
- ``forbidden``: patterns a right answer cannot hold: asked to rewrite a sentence so it is not passive, every
  stored answer kept a passive ("The report was prepared without checking the numbers.") or talked about
  rephrasing it ('Instead of "mistakes were made," ...').

An answer that is not right has the ``wrong_answer`` issue. Known leniency: a label or an accepted form named in
passing counts (the base model's '"Fixtures," as the requested department is Engineering, which handles facilities
management services' passes as Facilities), as the correctness set's checker is lenient with long answers. Like
the code checks, this runs only in ``asls eval``, on its own prompts; the product has no answer key.
"""

from __future__ import annotations

import re
from functools import lru_cache

from asls_mlx.correctness import judge
from asls_mlx.data_files import answer_key, load_prompts
from asls_mlx.profiling.labels import labels_each_input, named_labels

ANSWER_ISSUE = "wrong_answer"


@lru_cache(maxsize=1)
def keys_by_prompt() -> dict[str, dict]:
    """The bundled answer key, keyed by the held-out prompt's text."""
    prompts = {row["id"]: row["prompt"] for row in load_prompts()}
    return {prompts[row["id"]]: row for row in answer_key()}


def _labels_right(prompt: str, answer: str, right: list[str]) -> bool:
    named = named_labels(prompt, answer)
    right = [label if label.isupper() else label.lower() for label in right]
    if labels_each_input(prompt):  # several inputs: their labels in order (no two neighbours alike in this key)
        return named == right
    return bool(named) and named[0] in right


def _commands_right(answer: str, alternatives: list[list[str]]) -> bool:
    return any(all(re.search(p, answer or "") for p in patterns) for patterns in alternatives)


@lru_cache(maxsize=4096)
def answer_right(prompt: str, answer: str) -> bool | None:
    """True / False: the answer key says the answer is right / wrong; None: the prompt has no key."""
    key = keys_by_prompt().get(prompt)
    if key is None:
        return None
    if "labels" in key:
        return _labels_right(prompt, answer, key["labels"])
    if "commands" in key:
        return _commands_right(answer, key["commands"])
    if "forbidden" in key:
        return not any(re.search(p, answer or "", re.IGNORECASE) for p in key["forbidden"])
    return judge(tuple(key["accepted"]), answer or "", prompt) == "correct"


def wrong_answer(prompt: str, answer: str) -> bool:
    """The held-out prompt has a right answer and ``answer`` is not it."""
    return answer_right(prompt, answer) is False
