"""``asls eval --jobs N``: the eval's persona x seed parts in N processes side by side, one result.

A part (one persona, one seed, all its arms) is independent of the others: its own simulated users, its own
ASLS_HOME (``out/parts/<persona>-s<seed>/home``), its own results. Its work is mostly single-threaded
(decoding a batch, a 135M model's training steps), so on a 2-core CPU two parts at once, each with one BLAS
thread (``blas.side_by_side_threads``), finish in about half the time of one after the other. The parts' results
are combined in the order a single process would have run them (``EvalResult.combine``).

A part runs ``python -m asls_mlx.evaluation.worker`` with its arguments as JSON on stdin; its progress lines come
back prefixed with the part. The same seed gives the same users, prompts and feedback draws as a single-process
run; the numbers can still differ in the last bits with the BLAS thread count (another greedy token in a long chat,
and the users' later turns follow it), as they do between machines.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from asls_mlx.blas import side_by_side_threads, thread_env, usable_cores
from asls_mlx.errors import ASLSError
from asls_mlx.evaluation.results import EvalResult, Progress

PART_MEMORY_BYTES = 3 << 30  # a part's peak: the model, its adapter's training and the gate (~2 GB measured)


def default_jobs(parts: int) -> int:
    """How many parts to run at once: one per core, as many as memory holds (``PART_MEMORY_BYTES`` each)."""
    cores = usable_cores()
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        memory = PART_MEMORY_BYTES
    return max(1, min(parts, cores, memory // PART_MEMORY_BYTES))


def part_dir(out_dir: Path, persona: str, seed: int) -> Path:
    return Path(out_dir) / "parts" / f"{persona}-s{seed}"


def _start(kwargs: dict, persona: str, seed: int, out_dir: Path, threads: int) -> subprocess.Popen:
    request = dict(kwargs, personas=[persona], seeds=[seed], out_dir=str(part_dir(out_dir, persona, seed)))
    proc = subprocess.Popen([sys.executable, "-m", "asls_mlx.evaluation.worker"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=thread_env(threads))
    proc.stdin.write(json.dumps(request))
    proc.stdin.close()
    return proc


def _relay(proc: subprocess.Popen, label: str, progress: Progress, tail: list[str]) -> None:
    for line in proc.stdout:
        line = line.rstrip()
        if line:
            tail[:] = (tail + [line])[-20:]
            progress(f"{label}: {line}")


def run_parts(kwargs: dict, parts: list[tuple[str, int]], jobs: int, out_dir: Path, progress: Progress) -> EvalResult:
    """Run ``run_eval(**kwargs)`` for each (persona, seed) of ``parts``, ``jobs`` at a time, each in its own process
    and directory; combine, save to ``out_dir`` and return their results. A part that fails stops the eval with its
    last output in the error (the parts already finished keep their results under ``out_dir/parts``)."""
    t0, waiting, running = time.perf_counter(), list(parts), []
    threads = side_by_side_threads(jobs)
    try:
        while waiting or running:
            while waiting and len(running) < jobs:
                persona, seed = waiting.pop(0)
                label, tail = f"{persona} s{seed}", []
                proc = _start(kwargs, persona, seed, out_dir, threads)
                relay = threading.Thread(target=_relay, args=(proc, label, progress, tail), daemon=True)
                relay.start()
                running.append((proc, relay, label, tail))
            time.sleep(0.2)
            for entry in [r for r in running if r[0].poll() is not None]:
                proc, relay, label, tail = entry
                relay.join()
                running.remove(entry)
                if proc.returncode != 0:
                    raise ASLSError(f"the eval's part {label} failed (exit {proc.returncode}):\n" + "\n".join(tail[-8:]))
                progress(f"{label}: done")
    finally:  # a failed part, Ctrl-C: the other parts stop too
        for proc, *_ in running:
            proc.terminate()
    result = EvalResult.combine([EvalResult.load(part_dir(out_dir, p, s)) for p, s in parts])
    result.seconds = time.perf_counter() - t0
    for path in result.save(out_dir, progress):
        progress(f"wrote {path}")
    return result
