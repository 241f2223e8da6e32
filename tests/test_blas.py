import json
import os
import platform
import subprocess
import sys

import numpy as np
import pytest

from asls_mlx import blas
from asls_mlx.diagnostics import check_matmul


def test_mlx_matmul_matches_numpy():
    import mlx.core as mx

    rng = np.random.default_rng(1)
    for m, k, n in [(1, 7, 3), (64, 576, 192), (300, 1536, 576)]:
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        got = np.array(mx.matmul(mx.array(a), mx.array(b), stream=mx.cpu))
        np.testing.assert_allclose(got, a @ b, rtol=1e-4, atol=1e-3)
    assert check_matmul() < 1e-3


@pytest.mark.skipif(platform.system() != "Linux", reason="BLAS loading is a Linux concern")
def test_mlx_matmul_resolves_to_the_optimized_blas():
    """Which library MLX's cblas_sgemm calls land in, checked with dladdr (no timing: machines are noisy).
    The speed itself (~40x) is shown by `asls doctor` and the benchmarks."""
    import mlx.core as mx  # noqa: F401

    if not blas.candidates():
        pytest.skip("no OpenBLAS on this machine")
    status = blas.status()
    assert status.name in ("cmeel-openblas", "system-openblas"), status
    assert blas.resolved_library() == os.path.realpath(status.path)
    code = "import asls_mlx, mlx.core, asls_mlx.blas as b, json; print(json.dumps([b.status().name, b.resolved_library()]))"
    off = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, ASLS_BLAS="off"), capture_output=True, text=True, check=True)
    name, lib = json.loads(off.stdout)
    assert name == "reference" and (lib is None or "openblas" not in lib)


def test_doctor_reports_blas_and_speed():
    out = subprocess.run([sys.executable, "-m", "asls_mlx", "doctor", "--quick"], capture_output=True, text=True, env=dict(os.environ, COLUMNS="200"))
    assert out.returncode == 0, out.stderr
    assert "GFLOP/s" in out.stdout
    if platform.system() == "Linux" and blas.candidates():
        assert blas.status().name in out.stdout


def test_blas_off_warns_nothing_but_reports_reference():
    code = "import asls_mlx.blas as b; print(b.status().name)"
    out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, ASLS_BLAS="off"), capture_output=True, text=True)
    assert out.stdout.strip() == ("reference" if platform.system() == "Linux" else "accelerate")


@pytest.mark.skipif(platform.system() != "Linux", reason="BLAS loading is a Linux concern")
def test_a_library_that_cannot_multiply_is_never_loaded(tmp_path, monkeypatch):
    """A BLAS build that dies in a child (SIGILL on a CPU without its instructions, a missing symbol)
    is rejected with the reason, and the verdict is cached per file and CPU."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    libm = next(p for p in ("/lib/x86_64-linux-gnu/libm.so.6", "/lib/aarch64-linux-gnu/libm.so.6", "/usr/lib64/libm.so.6") if os.path.exists(p))
    reason = blas.probe(libm)  # loads fine, has no cblas_sgemm
    assert reason and "failed" in reason
    cached = json.loads((tmp_path / "asls_mlx" / "blas-probe.json").read_text())
    assert list(cached.values()) == [reason]
    for _, path in blas.candidates():
        verdict = blas.probe(path)
        assert verdict is None or "illegal instruction" in verdict or "failed" in verdict
    if blas.status().path:
        assert blas.probe(blas.status().path) is None
