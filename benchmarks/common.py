"""Shared helpers for benchmark scripts: peak RSS, a table printer, JSON results."""

from __future__ import annotations

import json
import platform
import resource
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MB (ru_maxrss is KB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def machine() -> dict:
    import mlx.core as mx

    from asls_mlx import blas

    return {
        "platform": f"{platform.system()} {platform.machine()}",
        "python": platform.python_version(),
        "mlx": mx.__version__,
        "device": str(mx.default_device()),
        "blas": blas.status().name,
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def report(name: str, rows: list[tuple[str, object, str]], extra: dict | None = None) -> Path:
    """Print a markdown table of (metric, value, goal) and write results/<name>.json."""
    print(f"\n| {name} | value | goal |\n|---|---|---|")
    for metric, value, goal in rows:
        shown = f"{value:.3g}" if isinstance(value, float) else str(value)
        print(f"| {metric} | {shown} | {goal} |")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{name}.json"
    payload = {"machine": machine(), "metrics": {m: v for m, v, _ in rows}, **(extra or {})}
    out.write_text(json.dumps(payload, indent=2))
    print(f"\nwrote {out}")
    return out
