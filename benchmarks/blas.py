"""BLAS routes for MLX's CPU matmuls: fp32 GEMM GFLOP/s of each library this machine can give MLX.

    python benchmarks/blas.py            # 5 rounds; each route runs in its own process per round

Routes: the private copy of the scipy-openblas32 wheel's OpenBLAS (what asls uses on Linux; pip only),
the same on 1 thread and with OPENBLAS_CORETYPE=Sandybridge (the AVX kernels a CPU without AVX2 gets),
Debian's libopenblas0-pthread and the cmeel-openblas wheel when installed, and MLX's reference BLAS.
Rounds interleave the routes so that load from other processes falls on all of them alike; the table
gives the median and the best round of each route's best product within ~1 s. Shapes: 1024x1024x1024
and a training GEMM (1024x576 @ 576x1536). On a busy machine the 1-thread rows are the steadier ones.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import sysconfig
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from asls_mlx import blas  # noqa: E402  (BLAS before mlx.core)
from common import report  # noqa: E402

CHILD = """
import json, time, asls_mlx.blas as b
s = b.status()
import mlx.core as mx
def gflops(m, k, n):  # the best of repeated products within ~1 s (at least 3)
    a, c = mx.random.normal((m, k)), mx.random.normal((k, n))
    mx.eval(a, c); mx.eval(a @ c)
    times, start = [], time.perf_counter()
    while len(times) < 3 or time.perf_counter() - start < 1.0:
        t = time.perf_counter(); mx.eval(a @ c); times.append(time.perf_counter() - t)
    return 2 * m * k * n / min(times) / 1e9
print(json.dumps({"name": s.name, "config": s.config, "square": gflops(1024, 1024, 1024), "train": gflops(1024, 576, 1536)}))
"""


def routes() -> list[tuple[str, dict[str, str]]]:
    found = {c.name: c.path for c in blas.candidates() if c.path}
    out = []
    if (wheel := found.get("scipy-openblas32")) is not None:
        out.append(("scipy-openblas32 copy (pip)", {"ASLS_BLAS": str(wheel)}))
        out.append(("  same, 1 thread", {"ASLS_BLAS": str(wheel), "OPENBLAS_NUM_THREADS": "1"}))
        out.append(("  same, OPENBLAS_CORETYPE=Sandybridge", {"ASLS_BLAS": str(wheel), "OPENBLAS_CORETYPE": "Sandybridge"}))
    if (system := found.get("system-openblas")) is not None:
        out.append(("Debian libopenblas0-pthread (apt)", {"ASLS_BLAS": str(system)}))
        out.append(("  same, 1 thread", {"ASLS_BLAS": str(system), "OPENBLAS_NUM_THREADS": "1"}))
    cmeel = Path(sysconfig.get_paths()["purelib"]) / "cmeel.prefix" / "lib" / "libopenblas.so.0"
    if cmeel.exists():
        out.append(("cmeel-openblas wheel (+ system libgfortran)", {"ASLS_BLAS": str(cmeel)}))
    out.append(("MLX's reference BLAS", {"ASLS_BLAS": "off"}))
    return out


def measure(env: dict[str, str]) -> dict | str:
    forced = env["ASLS_BLAS"]
    if forced != "off" and (verdict := blas.probe(Path(forced))) is not None:
        return f"not loadable here: {verdict}"
    run = subprocess.run([sys.executable, "-W", "ignore", "-c", CHILD], env={**os.environ, **env},
                         capture_output=True, text=True, timeout=600)
    if run.returncode != 0:
        return "illegal instruction (SIGILL)" if run.returncode == -4 else f"failed (exit {run.returncode})"
    return json.loads(run.stdout.strip().splitlines()[-1])


def main(rounds: int = 5) -> None:
    chosen = routes()
    load_start = os.getloadavg()[0]
    results: dict[str, list] = {label: [] for label, _ in chosen}
    for _ in range(rounds):
        for label, env in chosen:
            results[label].append(measure(env))
    rows, details = [], {}
    for label, runs in results.items():
        good = [r for r in runs if isinstance(r, dict)]
        if not good:
            rows.append((label, runs[0], "n/a"))
            continue
        square = [r["square"] for r in good]
        train = [r["train"] for r in good]
        shown = (f"1024^3 median {statistics.median(square):.0f} (best {max(square):.0f}); "
                 f"training GEMM median {statistics.median(train):.0f} GFLOP/s")
        goal = ">= 100 at 1024^3 on 2 idle cores" if "(" in label else ""
        rows.append((label, shown, goal))
        details[label] = good
    rows.append(("load average at the start / end", f"{load_start:.2f} / {os.getloadavg()[0]:.2f}", "2 cores"))
    report("blas", rows, {"runs": details, "cpu": blas._cpu_signature().splitlines()[0]})


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
