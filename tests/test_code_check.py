"""The held-out answers' Python code is run on the prompt's test cases (``evaluation.code_check``)."""

from __future__ import annotations

import time

import pytest

from asls_mlx.evaluation import code_check
from asls_mlx.evaluation.code_check import CODE_ISSUE, answer_code, code_passes, cases_by_prompt
from asls_mlx.evaluation.metrics import score_heldout
from asls_mlx.evaluation.personas import get_persona

PRIME = "Write a Python function to check if a number is prime."
GOOD_PRIME = """def is_prime(n):
    if n < 2:
        return False
    for d in range(2, int(n ** 0.5) + 1):
        if n % d == 0:
            return False
    return True"""
# The embedded base model's own greedy answer: it reads well, and returns True for 4.
BASE_PRIME = ("```python\ndef is_prime(n):\n    return n > 1 and all(isinstance(num, int) or isinstance(num, (int, float)) "
              "for num in range(2, int(n**0.5) + 1))\n```\n\nThis function uses a generator expression to check if the "
              "input number is prime.")

# A right answer to every bundled prompt with cases: the cases themselves must be right.
REFERENCE = {
    "coding-01": GOOD_PRIME,
    "coding-16": "def average(nums):\n    return sum(nums) / len(nums) if nums else 0",
    "coding-28": ("def balanced(s):\n    pairs, stack = {')': '(', ']': '[', '}': '{'}, []\n    for ch in s:\n"
                  "        if ch in '([{':\n            stack.append(ch)\n"
                  "        elif ch in pairs and (not stack or stack.pop() != pairs[ch]):\n            return False\n"
                  "    return not stack"),
    "coding-31": "def squares_of_evens(numbers: list[int]) -> list[int]:\n    return [n * n for n in numbers if n % 2 == 0]",
    "coding-43": "def f_to_c(f):\n    return round((f - 32) * 5 / 9, 1)",
    "coding-46": ('def greet(name: str, times: int) -> str:\n    """Greet name, times times."""\n'
                  '    return ("Hello, " + name + "! ") * times'),
    "coding-55": "def count_vowels(word):\n    return sum(1 for ch in word if ch in 'aeiou')",
    "coding-64": ("def format_duration(seconds):\n    h, rest = divmod(seconds, 3600)\n    m, s = divmod(rest, 60)\n"
                  "    return f'{h}h {m:02d}m {s:02d}s'"),
    "coding-73": "def sum_positive(nums):\n    return sum(n for n in nums if n > 0)",
    "coding-82": "def are_anagrams(a, b):\n    return sorted(a) == sorted(b)",
    "coding-94": "def longest_word(sentence):\n    return max(sentence.split(), key=len)",
}


def _prompt(test_id: str) -> str:
    return next(p for p, t in cases_by_prompt().items() if t["id"] == test_id)


def test_every_bundled_case_set_accepts_a_right_answer_and_rejects_a_wrong_one():
    assert set(t["id"] for t in cases_by_prompt().values()) == set(REFERENCE)
    for test_id, code in REFERENCE.items():
        assert code_passes(_prompt(test_id), f"Here you go:\n```python\n{code}\n```") is True, test_id
        assert code_passes(_prompt(test_id), "```python\ndef answer(*args):\n    return None\n```") is False, test_id


def test_the_base_models_wrong_prime_function_fails_and_a_right_one_passes_under_any_name():
    assert code_passes(PRIME, BASE_PRIME) is False
    assert code_passes(PRIME, f"```python\n{GOOD_PRIME}\n```") is True
    renamed = GOOD_PRIME.replace("is_prime", "check_prime")
    assert code_passes(PRIME, f"Sure:\n\n```\n{renamed}\n```\nIt tries each divisor up to the square root.") is True
    unfenced = f"Here is one:\n\n{GOOD_PRIME}\n\nIt returns True for primes."
    assert code_passes(PRIME, unfenced) is True


def test_example_calls_and_prints_at_top_level_do_not_run():
    code = f"{GOOD_PRIME}\n\nn = int(input('Number: '))\nprint(is_prime(n))\nopen('out.txt', 'w').write('x')"
    assert code_passes(PRIME, f"```python\n{code}\n```") is True


def test_code_that_does_not_parse_or_is_missing_from_a_finished_answer_is_wrong():
    broken = BASE_PRIME.replace("+ 1))", "+ 1)))")
    assert code_passes(PRIME, broken) is False
    assert code_passes(PRIME, "Check whether any number up to its square root divides it.") is False


def test_code_cut_off_by_the_budget_is_judged_only_on_what_ended():
    words = " ".join(["word"] * 90)
    cut_mid_function = f"{words}\n```python\ndef is_prime(n):\n    if n < 2:\n        return False\n    for d in"
    assert code_passes(PRIME, cut_mid_function) is None
    wrong_then_cut = BASE_PRIME.split("```\n")[0] + "\n\n# Example usage:\nprint(is_prime(2"
    assert code_passes(PRIME, wrong_then_cut) is False
    assert code_passes(PRIME, f"```python\n{GOOD_PRIME}\n\n# Example usage:\nprint(is_prime(2") is True
    assert code_passes(PRIME, f"{words} and then the code follows") is None  # prose the budget cut before any code


def test_prompts_without_cases_are_not_judged():
    assert code_passes("Write a JavaScript function that checks whether an object is empty.", "const x = 1;") is None
    assert code_passes("Why is the sky blue?", BASE_PRIME) is None


@pytest.mark.parametrize("body", [
    "import os\n    return os.getcwd() != ''",  # no imports beyond the pure modules
    "return open('/etc/hostname').read() != ''",  # no open()
])
def test_the_code_gets_no_files_and_no_os(body):
    code = f"def is_prime(n):\n    {body}"
    assert code_passes(PRIME, f"```python\n{code}\n```") is False


def test_a_function_that_never_returns_fails_within_the_limits(monkeypatch):
    """The CPU limit ends it (the wall-clock timeout, long here, would only on a machine starved of CPU)."""
    monkeypatch.setattr(code_check, "CPU_SECONDS", 1)
    monkeypatch.setattr(code_check, "TIMEOUT_S", 120.0)
    started = time.monotonic()
    assert code_check.run_cases(["def is_prime(n):\n    while True:\n        pass"], cases_by_prompt()[PRIME])[0] is False
    assert time.monotonic() - started < code_check.TIMEOUT_S


def test_answer_code_keeps_python_blocks_only():
    found = answer_code("```js\nconst a = 1;\n```\n```python\nx = 1\n```")
    assert found == [("x = 1\n", False)]


def test_wrong_code_counts_as_a_failure_in_the_heldout_scores():
    persona = get_persona("concise")
    right, wrong = f"```python\n{GOOD_PRIME}\n```", BASE_PRIME
    good = score_heldout(persona, [PRIME], [right], session=1)
    bad = score_heldout(persona, [PRIME], [wrong], session=1)
    assert bad.issues.get(CODE_ISSUE) == 1 and bad.quality_pass == 0.0 and bad.satisfaction == 0.0
    assert CODE_ISSUE not in good.issues and good.quality_pass == 1.0
