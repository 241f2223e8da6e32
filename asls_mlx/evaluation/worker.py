"""One part of a parallel eval (``evaluation.parallel``): ``run_eval`` with the JSON arguments read on stdin.

Prints its progress lines on stdout for the parent to relay; exits 1 with the message on an ``ASLSError``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import asls_mlx  # noqa: F401  (BLAS before mlx)
from asls_mlx.errors import ASLSError
from asls_mlx.evaluation.runner import run_eval
from asls_mlx.evaluation.simulate import FeedbackPolicy


def main() -> int:
    kwargs = json.loads(sys.stdin.read())
    kwargs["policy"] = FeedbackPolicy(**kwargs.get("policy", {}))
    kwargs["out_dir"] = Path(kwargs["out_dir"])
    try:
        run_eval(**kwargs, jobs=1, progress=lambda msg: print(msg, flush=True))
    except ASLSError as e:
        print(f"error: {e}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
