"""Two asls processes side by side: what OpenBLAS thread budgets do to each (issue 21, items 1 and 4).

    python benchmarks/blas_threads.py            # ~4 min on 2 cores; prints a table, writes results/blas_threads.json
    python benchmarks/blas_threads.py --rounds 1 --seconds 2

Each figure comes from child processes started together and measured over the same seconds:
- ``decode``: the chat's shape of work, NumPy GEMVs shaped like the embedded model's layers (30 x q/k/v/o and
  the MLP, then the LM head) on NumPy's OpenBLAS; tokens per second.
- ``train``: the trainer's shape of work, MLX GEMMs of a 4 x 256-token batch through a 576 -> 1536 layer on
  MLX's OpenBLAS; GFLOP/s.
- ``idle``: one MLX GEMM then 20 ms of other work (a sleep), as between training steps or answer tokens;
  CPU seconds the process burns per wall-clock second: above the GEMM's own share, its idle threads spin.
Threads per process via ``OPENBLAS_NUM_THREADS`` (what ``asls_mlx.blas.thread_env`` sets for a child);
``timeout 4``: ``OPENBLAS_THREAD_TIMEOUT=4`` (an idle OpenBLAS thread spins 2^4 cycles before it sleeps: what
asls sets), no timeout named: 28, OpenBLAS's own default (2^28 cycles, ~0.1 s). The machine may be shared:
compare rows of one run only.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
MARK = "RESULT "
OPENBLAS_DEFAULT_TIMEOUT = 28  # OpenBLAS's own: an idle thread spins 2^28 cycles (~0.1 s) before it sleeps
MODES = ("decode", "train", "idle")


def _decode(seconds: float) -> float:
    import numpy as np

    rng = np.random.default_rng(0)
    shapes = [(576, 576), (192, 576), (192, 576), (576, 576), (1536, 576), (1536, 576), (576, 1536)]
    layers = [[rng.standard_normal(s, dtype=np.float32) * 0.04 for s in shapes] for _ in range(30)]
    head = rng.standard_normal((49152, 576), dtype=np.float32)
    x, tokens = rng.standard_normal(576, dtype=np.float32), 0
    end = _wait_start() + seconds
    while time.time() < end:
        for w in layers:
            h = w[0] @ x
            w[1] @ h, w[2] @ h, w[3] @ h
            x = np.tanh(w[6] @ ((w[4] @ h) * (w[5] @ h)))  # bounded: no overflow over the run
        head @ x
        tokens += 1
    return tokens / seconds


def _gemm():
    """(a, w, run): a 4 x 256-token batch through a 576 -> 1536 layer; ``run(*arrays)`` computes them.
    MLX's OpenBLAS, or NumPy's with ``BENCH_NUMPY=1`` (a machine without MLX)."""
    if os.environ.get("BENCH_NUMPY"):
        import numpy as np

        rng = np.random.default_rng(0)
        return (rng.standard_normal((1024, 576), dtype=np.float32), rng.standard_normal((576, 1536), dtype=np.float32),
                lambda *arrays: None)
    import mlx.core as mx

    return mx.random.normal((1024, 576)), mx.random.normal((576, 1536)), mx.eval


def _train(seconds: float) -> float:
    a, w, run = _gemm()
    run(a, w, a @ w)
    flops, end = 0, _wait_start() + seconds
    while time.time() < end:
        y = a @ w
        g = y @ w.T  # the backward pass's shapes
        run(y, g, a.T @ y)
        flops += 3 * 2 * 1024 * 576 * 1536
    return flops / seconds / 1e9


def _idle(seconds: float) -> float:
    a, w, run = _gemm()
    run(a, w, a @ w)
    end = _wait_start() + seconds
    used = resource.getrusage(resource.RUSAGE_SELF)
    while time.time() < end:
        run(a @ w)
        time.sleep(0.02)
    now = resource.getrusage(resource.RUSAGE_SELF)
    return (now.ru_utime + now.ru_stime - used.ru_utime - used.ru_stime) / seconds


def _wait_start() -> float:
    start = float(os.environ["BENCH_START"])
    time.sleep(max(0.0, start - time.time()))
    return start


def child(mode: str, seconds: float) -> None:
    if not os.environ.get("BENCH_NUMPY"):
        import asls_mlx  # noqa: F401  (MLX's OpenBLAS first)

    value = {"decode": _decode, "train": _train, "idle": _idle}[mode](seconds)
    print(MARK + json.dumps({"mode": mode, "value": value}), flush=True)


def measure(jobs: list[tuple[str, int, int | None]], seconds: float, burner: bool = False, delay: float = 6.0) -> list[float]:
    """Start the jobs (mode, threads, thread timeout) together; each one's figure. ``burner``: another
    program keeps one core busy meanwhile (a pure-Python loop: no BLAS of its own)."""
    start = time.time() + delay  # every child has imported mlx and built its matrices by then
    procs = []
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if burner else None
    for mode, threads, timeout in jobs:
        env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), BENCH_START=str(start))
        # set either way: importing asls_mlx would otherwise make it 4 (blas.QUICK_SLEEP)
        env["OPENBLAS_THREAD_TIMEOUT"] = str(timeout or OPENBLAS_DEFAULT_TIMEOUT)
        procs.append(subprocess.Popen([sys.executable, __file__, "--child", mode, str(seconds)], env=env,
                                      stdout=subprocess.PIPE, text=True))
    outs = [proc.communicate()[0] for proc in procs]
    if busy is not None:
        busy.kill()
        busy.wait()
    values = []
    for out in outs:
        line = next((ln for ln in out.splitlines() if ln.startswith(MARK)), None)
        if line is None:
            raise SystemExit(f"a {jobs} child failed")
        values.append(json.loads(line[len(MARK):])["value"])
    return values


CASES = [  # (label, jobs)
    ("decode alone, 2 threads", [("decode", 2, None)]),
    ("decode alone, 2 threads, timeout 4", [("decode", 2, 4)]),
    ("decode alone, 2 threads, timeout 20", [("decode", 2, 20)]),
    ("decode alone, 1 thread", [("decode", 1, None)]),
    ("train alone, 2 threads", [("train", 2, None)]),
    ("train alone, 2 threads, timeout 4", [("train", 2, 4)]),
    ("train alone, 1 thread", [("train", 1, None)]),
    ("decode 2 + train 2 (the fight)", [("decode", 2, None), ("train", 2, None)]),
    ("decode 2 + train 2, timeout 4", [("decode", 2, 4), ("train", 2, 4)]),
    ("decode 2 + train 1", [("decode", 2, None), ("train", 1, None)]),
    ("decode 2 + train 1, timeout 4", [("decode", 2, 4), ("train", 1, 4)]),
    ("decode 2 + train 1, timeout 20", [("decode", 2, 20), ("train", 1, 20)]),
    ("decode 1 + train 1", [("decode", 1, None), ("train", 1, None)]),
    ("idle: GEMM + 20 ms, 2 threads", [("idle", 2, None)]),
    ("idle: GEMM + 20 ms, 2 threads, timeout 4", [("idle", 2, 4)]),
    ("idle: GEMM + 20 ms, 1 thread", [("idle", 1, None)]),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3.0, help="measured seconds per case")
    ap.add_argument("--rounds", type=int, default=2, help="rounds over all cases (a shared machine's load varies)")
    ap.add_argument("--delay", type=float, default=6.0, help="seconds for the children to start before measuring")
    ap.add_argument("--burner", action="store_true", help="another program keeps one core busy in every case")
    ap.add_argument("--numpy", action="store_true", help="the train and idle work on NumPy's OpenBLAS (no MLX needed)")
    ap.add_argument("--out", default=None, help="the JSON file (default results/blas_threads.json)")
    ap.add_argument("--child", nargs=2, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], float(args.child[1]))
        return
    if args.numpy:
        os.environ["BENCH_NUMPY"] = "1"  # the children's train and idle work too
    rows = [{"case": label, "jobs": jobs} for label, jobs in CASES]
    for r in range(args.rounds):  # round after round, so a change in the machine's load touches every case
        for row in rows:
            for (mode, _threads, _timeout), value in zip(row["jobs"], measure(row["jobs"], args.seconds, args.burner, args.delay)):
                row.setdefault(mode, []).append(round(value, 2))
            print(f"round {r + 1}: {row['case']}: " + ", ".join(f"{m} {row[m][-1]}" for m in MODES if m in row), flush=True)
    print("\n| case | decode tok/s | train GFLOP/s | idle CPU s per s |\n|---|---|---|---|")
    for row in rows:
        cells = [" / ".join(f"{v:.2f}" for v in row[m]) if m in row else "" for m in MODES]
        print(f"| {row['case']} | " + " | ".join(cells) + " |")
    if args.numpy:
        import platform

        about = {"platform": f"{platform.system()} {platform.machine()}", "python": platform.python_version(),
                 "date": time.strftime("%Y-%m-%d %H:%M")}
    else:
        import asls_mlx  # noqa: F401  (BLAS before mlx.core, which machine() imports)
        from common import machine

        about = machine()
    out = Path(args.out) if args.out else Path(__file__).parent / "results" / "blas_threads.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": about, "cores": len(os.sched_getaffinity(0)), "seconds": args.seconds,
                               "burner": args.burner, "numpy_only": args.numpy, "load_average": os.getloadavg(),
                               "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
