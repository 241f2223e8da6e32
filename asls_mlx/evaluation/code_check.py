"""Does an answer's Python code work? The ``wrong_code`` issue of the evaluation's held-out answers.

"Write a Python function to check if a number is prime" answered with a function that reads well and returns True
for 4 (``return n > 1 and all(isinstance(num, int) ... )``, the embedded base model's own answer) passes every
text check and the relevance check; only running it tells. The held-out prompts that ask for a Python function
(write, fix, refactor, annotate one) carry test cases in ``data/code_tests.jsonl``: the answer's code passes when
any function it defines returns the expected value for every case (the name the prompt implies is tried first; a
refactor may rename it). An answer whose code fails, does not parse, or that has no code at all has the
``wrong_code`` issue, like any other failed task. Not judged: an answer whose code the token budget cut off (a
fence left open, or unfenced code running to the end of a long answer) unless its finished code already passes.

The code runs in a child process (``code_sandbox``): an empty working directory, no environment, at most
``CPU_SECONDS`` of CPU, ``MEMORY_BYTES`` of memory and no file writes, ``TIMEOUT_S`` of wall clock; only its
definitions run, with a short list of pure modules to import. This runs only in ``asls eval``, on the answers to
its own prompts: the product never runs an answer's code.
"""

from __future__ import annotations

import ast
import contextlib
import json
import re
import subprocess
import sys
import tempfile
from functools import lru_cache
from pathlib import Path

from asls_mlx.data_files import code_tests, load_prompts
from asls_mlx.profiling.content import ended

CODE_ISSUE = "wrong_code"
TIMEOUT_S = 10.0
CPU_SECONDS = 3
MEMORY_BYTES = 512 << 20
SANDBOX = Path(__file__).with_name("code_sandbox.py")
_FENCE = re.compile(r"```[ \t]*([\w+#-]*)[^\n]*\n?(.*?)(```|\Z)", re.DOTALL)
_PYTHON_FENCES = frozenset({"", "python", "python3", "py"})
_CODE_START = re.compile(r"^(?:def |class |import |from \w+ import )")


@lru_cache(maxsize=1)
def cases_by_prompt() -> dict[str, dict]:
    """The bundled test cases, keyed by the held-out prompt's text: {"function": name, "cases": [[args, expected]]}."""
    prompts = {row["id"]: row["prompt"] for row in load_prompts()}
    return {prompts[row["id"]]: row for row in code_tests()}


def _finished(block: str) -> str:
    """What surely ended of a block the budget cut off: the lines before its last unindented line (a statement or
    a comment that starts after the ones before it ended) that parse ("def is_prime(n): ... return ..." then
    "# Example usage:" and a cut call keeps the function; a function cut mid-body keeps nothing)."""
    lines = block.splitlines()
    starts = [i for i, line in enumerate(lines) if i and line.strip() and line[0] not in " \t"]
    for end in reversed(starts):
        head = "\n".join(lines[:end])
        with contextlib.suppress(SyntaxError, ValueError):
            ast.parse(head)
            return head
    return ""


def answer_code(answer: str) -> list[tuple[str, bool]]:
    """The answer's Python code blocks, each with whether the budget cut it off: fenced blocks in Python or no named language;
    without fences, the runs of lines from a ``def`` / ``class`` / import on while indented or blank. Of a block the
    budget cut off, only the statements that ended (``_finished``)."""
    fences = list(_FENCE.finditer(answer or ""))
    if fences:
        python = [(m.group(2), not m.group(3)) for m in fences if m.group(1).lower() in _PYTHON_FENCES]
    else:
        runs, current = [], None
        for line in (answer or "").splitlines():
            if _CODE_START.match(line):
                current = [line]
                runs.append(current)
            elif current is not None and (not line.strip() or line[:1] in " \t"):
                current.append(line)
            else:
                current = None
        cut = current is not None and not ended(answer)  # the answer stops inside its code: maybe the budget's doing
        python = [("\n".join(run), cut and run is current) for run in runs]
    return [(_finished(code) if was_cut else code, was_cut) for code, was_cut in python]


def run_cases(blocks: list[str], test: dict) -> tuple[bool, int]:
    """(whether a function of the code ``blocks`` passes all of ``test``'s cases, how many functions they define):
    ``code_sandbox``, in a limited child; a block that does not parse defines nothing."""
    request = json.dumps({"blocks": blocks, "function": test["function"], "cases": test["cases"],
                          "limits": {"cpu_seconds": CPU_SECONDS, "memory_bytes": MEMORY_BYTES}})
    with tempfile.TemporaryDirectory() as cwd:
        try:
            done = subprocess.run([sys.executable, "-I", "-S", str(SANDBOX)], input=request, capture_output=True,
                                  text=True, timeout=TIMEOUT_S, cwd=cwd, env={})
        except subprocess.TimeoutExpired:
            return False, 1  # a function that never returns
    lines = done.stdout.strip().splitlines()
    try:
        report = json.loads(lines[-1]) if done.returncode == 0 and lines else {"passed": False, "tried": ["?"]}
        return bool(report["passed"]), len(report["tried"])
    except (ValueError, KeyError, TypeError):
        return False, 1


@lru_cache(maxsize=4096)
def code_passes(prompt: str, answer: str) -> bool | None:
    """True: the answer's code passes the prompt's cases; False: it fails, does not parse, or a finished answer has
    none; None: the prompt has no cases, or the budget cut the answer off before any function of it ended."""
    test = cases_by_prompt().get(prompt)
    if test is None:
        return None
    found = answer_code(answer)
    blocks = [code for code, _ in found if code.strip()]
    passed, functions = run_cases(blocks, test) if blocks else (False, 0)
    if passed or functions or not all(was_cut for _, was_cut in found):
        return passed  # a finished block that defines no function (it does not parse) is wrong code too
    return None if found or not ended(answer) else False


def wrong_code(prompt: str, answer: str) -> bool:
    """The ``wrong_code`` issue: the prompt's cases say the answer's code is wrong (or missing)."""
    return code_passes(prompt, answer) is False
