"""What `asls doctor` reports: platform, MLX and its device, the active BLAS and its speed, paths."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from dataclasses import dataclass, field

from asls_mlx import blas


@dataclass
class Report:
    rows: list[tuple[str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def add(self, key: str, value: object) -> None:
        self.rows.append((key, str(value)))


def _reference_gflops() -> float | None:
    """GEMM speed with the reference BLAS, measured in a child process (a BLAS cannot be unloaded)."""
    code = "import asls_mlx.blas as b; print(b.measure_gflops(512, 3))"
    env = dict(os.environ, ASLS_BLAS="off")
    try:
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
        return float(out.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, ValueError, IndexError):
        return None


def check_matmul() -> float:
    """Largest abs difference between MLX's and numpy's fp32 matmul on random inputs."""
    import mlx.core as mx
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.standard_normal((256, 192), dtype=np.float32)
    b = rng.standard_normal((192, 128), dtype=np.float32)
    got = np.array(mx.matmul(mx.array(a), mx.array(b), stream=mx.cpu))
    return float(np.abs(got - a @ b).max())


def run(compare_reference: bool = True) -> Report:
    report = Report()
    report.add("platform", f"{platform.system()} {platform.machine()}, Python {platform.python_version()}")
    try:
        import mlx.core as mx
        import mlx_lm
    except Exception as e:  # a broken install is exactly what doctor is for
        report.problems.append(f"MLX does not import ({e}); reinstall: pip install 'mlx[cpu]' mlx-lm (Linux) or mlx mlx-lm (macOS)")
        return report
    report.add("mlx", f"{mx.__version__} (mlx-lm {mlx_lm.__version__})")
    report.add("device", str(mx.default_device()))
    status = blas.status()
    report.add("blas", blas.describe(status))
    if platform.system() == "Linux":
        report.add("cblas_sgemm from", blas.resolved_library() or "MLX's bundled reference BLAS")
    error = check_matmul()
    report.add("matmul vs numpy", f"max abs diff {error:.2e}")
    if not error < 1e-3:
        report.problems.append(f"MLX matmul disagrees with numpy (max abs diff {error:.3g}); try ASLS_BLAS=off")
    gflops = blas.measure_gflops()
    report.add("fp32 GEMM", f"{gflops:.0f} GFLOP/s (1024x1024)")
    if compare_reference and platform.system() == "Linux" and status.name not in ("reference", "unknown"):
        ref = _reference_gflops()
        if ref:
            report.add("reference BLAS", f"{ref:.1f} GFLOP/s ({gflops / ref:.0f}x slower than active)")
    if status.name == "reference" and platform.system() == "Linux":
        report.problems.append(f"only the slow reference BLAS is active: {blas.FIX_HINT}")
    from asls_mlx.engine.models import list_models, weights_dir
    from asls_mlx.paths import home

    report.add("data home", str(home()))
    report.add("model cache", str(weights_dir()))
    converted = [m.name for m in list_models() if m.path.startswith("/")]
    report.add("converted models", ", ".join(converted) or "none yet (the default converts on first use)")
    return report
