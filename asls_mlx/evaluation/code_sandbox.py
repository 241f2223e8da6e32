"""Run an answer's Python functions on test cases, in a child process: ``python -I -S code_sandbox.py``.

Reads ``{"blocks": [str], "function": str, "cases": [[args, expected], ...], "limits": {...}}`` on stdin and prints
``{"passed": bool, "tried": [names]}``: whether any function the code blocks define returns the expected value for every
case (the function named ``function`` first). The process first limits its own CPU time and memory (``limits``) and
forbids file writes; the parent (``code_check``) gives it an empty working directory, no environment and a wall-clock
timeout. The code gets no ``open``, ``input``, ``eval``/``exec`` and imports only from a short list of pure
modules, and only its definitions run (no example calls at top level).
This is a guard against a small model's mistakes in answers to the evaluation's own prompts, not a sandbox for
hostile code.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import io
import json
import math
import sys

PURE_MODULES = frozenset("math re string collections itertools functools typing statistics decimal fractions "
                         "datetime operator dataclasses enum heapq bisect numbers unicodedata".split())
_BLOCKED = frozenset("open input eval exec compile breakpoint exit quit help globals locals vars memoryview "
                     "__import__".split())
_KEPT = (ast.FunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom, ast.Assign, ast.AnnAssign)


def _import(name, globals=None, locals=None, fromlist=(), level=0):
    if level or name.split(".")[0] not in PURE_MODULES:
        raise ImportError(f"{name} is not available here")
    return builtins.__import__(name, globals, locals, fromlist, level)


def _namespace() -> dict:
    safe = {k: getattr(builtins, k) for k in dir(builtins) if k not in _BLOCKED}
    safe["__import__"] = _import
    return {"__builtins__": safe, "__name__": "answer"}


def _same(got, expected) -> bool:
    if isinstance(expected, (int, float)) and not isinstance(expected, bool):  # 3 and 3.0 are the same average
        return isinstance(got, (int, float)) and not isinstance(got, bool) and math.isclose(got, expected, abs_tol=1e-6)
    if isinstance(expected, list) and isinstance(got, tuple):
        got = list(got)
    return type(got) is type(expected) and got == expected


def _define(blocks: list[str]) -> dict:
    """The blocks' top-level definitions, imports and assignments, run one by one (a failing one, or a block that
    does not parse, is skipped)."""
    space = _namespace()
    nodes = []
    for block in blocks:
        with contextlib.suppress(SyntaxError, ValueError):
            nodes += ast.parse(block).body
    for node in nodes:
        if isinstance(node, _KEPT):
            with contextlib.suppress(Exception):
                exec(compile(ast.Module([node], []), "<answer>", "exec"), space)  # noqa: S102 - the point
    return space


def _passes(fn, cases) -> bool:
    try:
        return all(_same(fn(*args), expected) for args, expected in cases)
    except Exception:
        return False


def _limit(limits: dict) -> None:
    """CPU seconds, memory and no file writes, before the answer's code runs (macOS refuses some: then not that one)."""
    import resource

    for kind, value in ((resource.RLIMIT_CPU, limits["cpu_seconds"]), (resource.RLIMIT_AS, limits["memory_bytes"]),
                        (resource.RLIMIT_FSIZE, 0)):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(kind, (value, value))


def main() -> None:
    request = json.load(sys.stdin)
    _limit(request["limits"])
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        space = _define(request["blocks"])
        names = [n for n, v in space.items() if callable(v) and getattr(v, "__module__", None) == "answer"
                 and not isinstance(v, type)]
        names.sort(key=lambda n: n != request["function"])
        passed = any(_passes(space[n], request["cases"]) for n in names)
    print(json.dumps({"passed": passed, "tried": names}))


if __name__ == "__main__":
    main()
