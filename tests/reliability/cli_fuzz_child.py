"""Runs many `asls` argv lists through ``asls_mlx.cli.main`` in ONE process (fast), sockets blocked and the
embedded default model unavailable. Writes one JSON result per case to argv[2]: rc, whether an exception
other than ASLSError escaped, and whether "Traceback" appeared in the captured output."""

from __future__ import annotations

import contextlib
import io
import json
import socket
import sys
import traceback

import asls_mlx  # noqa: F401
from asls_mlx.engine import models as models_mod
from asls_mlx.errors import ASLSError


def _no_net(*a, **k):
    raise OSError("network disabled in the fuzz test")


def _no_default(*a, **k):
    raise ASLSError("the embedded default model is not available in this test")


def main() -> None:
    cases = json.loads(open(sys.argv[1], encoding="utf-8", errors="surrogateescape").read())
    socket.socket.connect = _no_net
    socket.create_connection = _no_net
    models_mod.default_model_dir = _no_default
    from asls_mlx.cli import main as cli_main

    results = []
    for argv in cases:
        out, err = io.StringIO(), io.StringIO()
        escaped = None
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = cli_main(argv)
            except SystemExit as e:
                rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except BaseException as e:  # noqa: BLE001 - this is what the test looks for
                rc = -1
                escaped = f"{type(e).__name__}: {e}"[:300] + "\n" + traceback.format_exc()[-1500:]
        text = out.getvalue() + err.getvalue()
        results.append({"rc": rc, "escaped": escaped, "traceback": "Traceback" in text,
                        "stderr_tail": err.getvalue()[-300:]})
    with open(sys.argv[2], "w", encoding="utf-8", errors="surrogateescape") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main()
