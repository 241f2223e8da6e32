"""Where a user's data lives, and how files there are written (owner-only, atomic)."""

from __future__ import annotations

import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

ENV_HOME = "ASLS_HOME"


def home() -> Path:
    """The data home: ``$ASLS_HOME`` or ``~/.asls``. Created owner-only (0700) on first use."""
    root = Path(os.environ.get(ENV_HOME) or Path.home() / ".asls").expanduser()
    return private_dir(root)


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) if needed and make it readable by the owner only."""
    path = Path(path)
    missing = []
    p = path
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    for p in reversed(missing):  # every directory we create is owner-only, not just the last one
        try:
            p.mkdir(mode=0o700)
        except FileExistsError:
            pass
        os.chmod(p, 0o700)
    os.chmod(path, 0o700)
    return path


def pid_alive(pid) -> bool:
    """Whether process ``pid`` runs (e.g. the writer named in an ``atomic_write_bytes`` temp file)."""
    try:
        os.kill(int(pid), 0)
        return True
    except (OSError, TypeError, ValueError):
        return False


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so a crash leaves either the old file or the new one, never half.

    Write a temp file beside it, fsync, rename over, fsync the directory. Mode 0600.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_dir(directory: Path) -> Iterator[Path]:
    """Write a folder so a crash leaves the old one or the new one, never half: yields a temp folder beside
    ``directory`` (0700) to fill; on success its files become 0600 and fsynced, and it replaces ``directory``
    (an existing one is moved aside first and removed after). On an error the temp folder is removed."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.with_name(f".{directory.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir(mode=0o700)
    try:
        yield tmp
        for f in tmp.iterdir():
            os.chmod(f, 0o600)
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        fsync_dir(tmp)
        if directory.exists():
            old = directory.with_name(f".{directory.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(directory, old)
            os.replace(tmp, directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, directory)
        fsync_dir(directory.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
