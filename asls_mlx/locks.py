"""Advisory file locks: one chat per user, one training run per user, across processes."""

from __future__ import annotations

import os
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows is not a target
    fcntl = None


_HELD_HERE: set[str] = set()  # the lock files this process holds (flock alone cannot say who holds one)


class FileLock:
    """A non-blocking exclusive lock on ``path`` (released automatically if the process dies)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock; False if another holder has it."""
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                return False
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        _HELD_HERE.add(str(self.path.resolve()))
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None
            _HELD_HERE.discard(str(self.path.resolve()))

    def holder(self) -> str:
        """Who holds the lock, for a message: "this process" or "process <pid>"."""
        if not self.held and str(self.path.resolve()) in _HELD_HERE:
            return "this process"
        try:
            return f"process {self.path.read_text().strip() or '?'}"
        except OSError:
            return "another process"

    @property
    def held(self) -> bool:
        return self._fd is not None
