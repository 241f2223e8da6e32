"""Make MLX's CPU matmuls run on OpenBLAS instead of the reference BLAS its Linux wheel ships.

MLX resolves ``cblas_*`` symbols at load time. Loading an optimized BLAS into the process with
RTLD_GLOBAL *before* ``mlx.core`` is imported makes those symbols resolve to it: fp32 GEMM goes from
~5 GFLOP/s (netlib) to 250-450 GFLOP/s on a 2-core x86_64 machine. This module must therefore be
imported before anything imports ``mlx`` (``asls_mlx/__init__.py`` does it first).

Order of preference (``ASLS_BLAS=off`` disables, ``ASLS_BLAS=<path>`` forces a library):
1. the ``cmeel-openblas`` wheel (pip, no root; OpenBLAS 0.3.31 with AVX-512 kernels, measured fastest),
2. Debian's ``libopenblas0-pthread`` (``/usr/lib/<arch>/openblas-pthread/libblas.so.3``).
No-op on macOS, where MLX uses Accelerate and Metal.

A library is loaded only after a child process has run a small ``cblas_sgemm`` with it: a build whose
kernels need instructions this CPU lacks (the cmeel wheel dies with SIGILL on CPUs without AVX-512)
must not take the whole process down. The verdict is cached per library file and CPU, so later imports
do not pay the ~50 ms child process.
"""

from __future__ import annotations

import ctypes
import glob
import hashlib
import json
import os
import subprocess
import platform
import sys
import sysconfig
import warnings
from dataclasses import dataclass
from pathlib import Path

ENV_BLAS = "ASLS_BLAS"


@dataclass
class BlasStatus:
    """Which BLAS this process gave MLX, and why."""

    name: str  # "cmeel-openblas", "system-openblas", "custom", "accelerate", "reference"
    path: str | None
    detail: str


_status: BlasStatus | None = None


def cmeel_openblas_path() -> Path | None:
    """The ``libopenblas.so.0`` of the cmeel-openblas wheel, if it is installed."""
    roots = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], *sys.path}
    for root in roots:
        lib = Path(root) / "cmeel.prefix" / "lib" / "libopenblas.so.0"
        if lib.exists():
            return lib
    return None


def system_openblas_path() -> Path | None:
    """Debian/Ubuntu's pthread OpenBLAS, which exports the same cblas ABI as the reference BLAS."""
    for pattern in ("/usr/lib/*-linux-gnu/openblas-pthread/libblas.so.3", "/usr/lib64/libopenblas*.so.0"):
        for hit in sorted(glob.glob(pattern)):
            return Path(hit)
    return None


def candidates() -> list[tuple[str, Path]]:
    """Optimized BLAS libraries present on this machine, best first."""
    found = []
    if (p := cmeel_openblas_path()) is not None:
        found.append(("cmeel-openblas", p))
    if (p := system_openblas_path()) is not None:
        found.append(("system-openblas", p))
    return found


# Run in a child: load the library and multiply two 64x64 matrices of ones (each entry must be 64).
_PROBE = """
import ctypes, sys
lib = ctypes.CDLL(sys.argv[1], mode=ctypes.RTLD_GLOBAL)
n = 64
a = (ctypes.c_float * (n * n))(*([1.0] * (n * n)))
c = (ctypes.c_float * (n * n))()
f = lib.cblas_sgemm
f.argtypes = [ctypes.c_int] * 6 + [ctypes.c_float, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p,
                                   ctypes.c_int, ctypes.c_float, ctypes.c_void_p, ctypes.c_int]
f(101, 111, 111, n, n, n, 1.0, a, n, a, n, 0.0, c, n)
sys.exit(0 if c[0] == n and c[n * n - 1] == n else 3)
"""


def _cpu_signature() -> str:
    """What decides whether a BLAS build runs here: the CPU's model and instruction flags."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor()
    lines = [ln for ln in text.splitlines() if ln.startswith(("model name", "flags"))][:2]
    return "\n".join(lines)


def _probe_cache() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "asls_mlx" / "blas-probe.json"


def probe(path: Path) -> str | None:
    """Run a small GEMM with ``path`` in a child process; None if it works, else why not. Cached."""
    stat = Path(path).stat()
    key = hashlib.sha256(f"{os.path.realpath(path)}|{stat.st_size}|{stat.st_mtime_ns}|{_cpu_signature()}".encode()).hexdigest()
    cache = _probe_cache()
    try:
        verdicts = json.loads(cache.read_text())
    except (OSError, ValueError):
        verdicts = {}
    if key in verdicts:
        return verdicts[key]
    try:
        run = subprocess.run([sys.executable, "-I", "-S", "-c", _PROBE, str(path)], capture_output=True, timeout=60)
        rc = run.returncode
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"could not test it: {e}"  # not cached: may work next time
    if rc == 0:
        verdict = None
    elif rc == -4:  # SIGILL
        verdict = "its kernels use instructions this CPU lacks (illegal instruction)"
    else:
        tail = run.stderr.decode(errors="replace").strip().splitlines()[-1:] or [f"exit code {rc}"]
        verdict = f"a test multiplication failed: {tail[0]}"
        if "libgfortran" in verdict:
            verdict += " (install the Fortran runtime: apt-get install libgfortran5)"
    verdicts[key] = verdict
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f".{cache.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(verdicts))
        os.replace(tmp, cache)
    except OSError:
        pass  # a read-only home only costs the probe again next time
    return verdict


def _try_load(path: Path) -> str | None:
    """Load ``path`` globally once a child has shown it works; None on success, else the reason."""
    if (err := probe(path)) is not None:
        return err
    try:
        ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
        return None
    except OSError as e:
        msg = str(e)
        if "libgfortran" in msg:
            msg += " (install the Fortran runtime: apt-get install libgfortran5)"
        return msg


def load() -> BlasStatus:
    """Pick and load the BLAS for this process (once). Safe to call many times."""
    global _status
    if _status is not None:
        return _status
    if platform.system() != "Linux":
        _status = BlasStatus("accelerate", None, f"{platform.system()}: MLX uses its own BLAS")
        return _status
    if "mlx.core" in sys.modules:
        _status = BlasStatus("unknown", None, "mlx.core was imported before asls_mlx; BLAS left as is")
        return _status
    choice = os.environ.get(ENV_BLAS, "").strip()
    if choice.lower() == "off":
        _status = BlasStatus("reference", None, f"{ENV_BLAS}=off")
        return _status
    if choice:
        err = _try_load(Path(choice))
        if err is None:
            _status = BlasStatus("custom", choice, f"{ENV_BLAS}={choice}")
            return _status
        warnings.warn(f"asls_mlx: could not load {ENV_BLAS}={choice}: {err}", stacklevel=2)
    failures = []
    for name, path in candidates():
        err = _try_load(path)
        if err is None:
            skipped = "".join(f"; skipped {f}" for f in failures)
            _status = BlasStatus(name, str(path), "loaded before mlx.core" + skipped)
            return _status
        failures.append(f"{name}: {err}")
    detail = "; ".join(failures) or "no OpenBLAS found"
    warnings.warn(
        "asls_mlx: MLX will use the slow reference BLAS (about 40x slower matmuls on CPU): "
        f"{detail}. Fix: pip install cmeel-openblas (and apt-get install libgfortran5), "
        "or apt-get install libopenblas0-pthread.",
        RuntimeWarning,
        stacklevel=2,
    )
    _status = BlasStatus("reference", None, detail)
    return _status


def status() -> BlasStatus:
    """The BLAS chosen by :func:`load` (loading it now if nothing did yet)."""
    return load()


def measure_gflops(n: int = 1024, repeats: int = 5) -> float:
    """fp32 GEMM throughput of MLX on the CPU in this process, in GFLOP/s."""
    import time

    import mlx.core as mx

    a = mx.random.normal((n, n))
    b = mx.random.normal((n, n))
    mx.eval(a, b)
    mx.eval(mx.matmul(a, b, stream=mx.cpu))  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        mx.eval(mx.matmul(a, b, stream=mx.cpu))
    seconds = (time.perf_counter() - start) / repeats
    return 2 * n**3 / seconds / 1e9


def resolved_library(symbol: str = "cblas_sgemm") -> str | None:
    """The shared library the process's global ``symbol`` resolves to (what MLX's CPU matmul calls).

    Uses ``dladdr`` on the global symbol, so it answers the exact question "which BLAS does MLX use"
    without timing anything.
    """
    if platform.system() != "Linux":
        return None

    class _DlInfo(ctypes.Structure):
        _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                    ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]

    try:
        libdl = ctypes.CDLL(None)
        addr = ctypes.cast(getattr(libdl, symbol), ctypes.c_void_p)
        info = _DlInfo()
        if libdl.dladdr(addr, ctypes.byref(info)) == 0 or not info.dli_fname:
            return None
        return os.path.realpath(info.dli_fname.decode())
    except (AttributeError, OSError):
        return None
