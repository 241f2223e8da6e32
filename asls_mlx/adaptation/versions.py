"""A user's adapter versions on disk: v1, v2, ... plus an ``active`` pointer; rollback to any.

Layout under ``root`` (0700 dirs, 0600 files)::

    v1/ adapter_config.json adapters.safetensors metadata.json [optimizer.safetensors]
    v2/ ...
    active            "2" (or "0" = the base model, no adapter)

A version appears only by renaming a complete, fsynced temp dir; the pointer is replaced atomically
after it. A version dir that fails to read is skipped with a warning and never becomes active.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx

from asls_mlx.adaptation.lora import METADATA_FILE, LoraConfig, read_adapter, save_adapter
from asls_mlx.errors import ASLSError
from asls_mlx.paths import atomic_write_text, fsync_dir, pid_alive, private_dir

OPTIMIZER_FILE = "optimizer.safetensors"
ACTIVE_FILE = "active"
HIGH_WATER_FILE = "last_version"  # numbers are never reused, even after a version is deleted
LAST_FILE = "last_version"  # high-water mark: version numbers are never reused
_VERSION = re.compile(r"^v(\d+)$")


def _writer_alive(temp: Path) -> bool:
    """Whether the process whose pid ends ``temp``'s name (``paths.atomic_write_bytes``) still runs."""
    pid = temp.name.rsplit("-", 1)[-1]
    return pid.isdigit() and int(pid) != os.getpid() and pid_alive(pid)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@dataclass(frozen=True)
class VersionInfo:
    version: int
    path: Path
    metadata: dict
    active: bool


class AdapterRepo:
    def __init__(self, root: Path):
        self.root = private_dir(Path(root))
        for leftover in self.root.glob(".*.tmp-*"):  # a crash mid-write (a file or a directory): never a version
            if not _writer_alive(leftover):  # not one another process is writing right now
                _remove(leftover)
        for pattern in (".*.old-*", ".*.build-*"):
            for leftover in self.root.glob(pattern):
                _remove(leftover)

    # -- reading ---------------------------------------------------------------------------
    def path(self, version: int) -> Path:
        return self.root / f"v{int(version)}"

    def _numbers(self) -> list[int]:
        out = []
        for p in self.root.iterdir():
            m = _VERSION.match(p.name)
            if m and p.is_dir():
                out.append(int(m.group(1)))
        return sorted(out)

    def is_valid(self, version: int) -> bool:
        try:
            read_adapter(self.path(version))
            return True
        except ASLSError as e:
            warnings.warn(f"Skipping adapter version {version}: {e}", stacklevel=2)
            return False

    def list(self) -> list[VersionInfo]:
        """Readable versions, oldest first, with their metadata (metrics included)."""
        active = self.active()
        out = []
        for v in self._numbers():
            p = self.path(v)
            try:
                meta = json.loads((p / METADATA_FILE).read_text())
            except (OSError, json.JSONDecodeError):
                warnings.warn(f"Skipping adapter version {v}: unreadable {METADATA_FILE}", stacklevel=2)
                continue
            out.append(VersionInfo(v, p, meta, v == active))
        return out

    def active(self) -> int | None:
        """The active version; None when no adapter is active (base model)."""
        try:
            v = int((self.root / ACTIVE_FILE).read_text().strip())
        except (OSError, ValueError):
            return None
        return v if v > 0 and self.path(v).is_dir() else None

    def load(self, version: int | None = None, model=None) -> tuple[LoraConfig, dict[str, mx.array], dict]:
        """(config, weights, metadata) of ``version`` (default: active); checked against ``model``."""
        v = self.active() if version is None else version
        if v is None:
            raise ASLSError("No adapter version is active.")
        return read_adapter(self.path(v), model)

    def optimizer_state(self, version: int | None = None) -> dict[str, mx.array] | None:
        v = self.active() if version is None else version
        f = self.path(v) / OPTIMIZER_FILE if v else None
        if f is None or not f.is_file():
            return None
        try:
            return mx.load(str(f))
        except Exception as e:
            warnings.warn(f"Ignoring unreadable optimizer state of version {v}: {e}", stacklevel=2)
            return None

    # -- writing ---------------------------------------------------------------------------
    def _high_water(self) -> int:
        """The highest version number ever committed here (deleted versions included)."""
        try:
            return int((self.root / LAST_FILE).read_text().strip())
        except (OSError, ValueError):
            return 0

    def commit(self, model, config: LoraConfig, metadata: dict | None = None, optimizer_state: dict | None = None,
               activate: bool = True, version: int | None = None) -> int:
        """Write the model's adapter as a new version (atomic), then make it active.

        The number is never reused, also after a version was deleted (forget), so it cannot collide
        with the store's record of an old one; ``version`` (e.g. the store's next number) may raise it.
        A write that fails (disk full, ...) leaves no trace and raises ASLSError; the previous version
        stays active.
        """
        numbers = self._numbers()
        version = max(numbers[-1] if numbers else 0, self._high_water()) + 1 if version is None else int(version)
        if version < 1 or self.path(version).exists():
            raise ASLSError(f"Adapter version {version} already exists in {self.root}; not overwriting it.")
        meta = dict(metadata or {}, version=version)
        tmp = self.root / f".v{version}.build-{uuid.uuid4().hex[:8]}"
        try:
            atomic_write_text(self.root / LAST_FILE, str(max(version, self._high_water())))
            save_adapter(tmp, model, config, meta)  # itself atomic: complete or absent
            if optimizer_state:
                mx.save_safetensors(str(tmp / OPTIMIZER_FILE), optimizer_state)
                os.chmod(tmp / OPTIMIZER_FILE, 0o600)
                with open(tmp / OPTIMIZER_FILE, "rb") as fh:
                    os.fsync(fh.fileno())
            os.replace(tmp, self.path(version))
            fsync_dir(self.root)
        except OSError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            raise ASLSError(f"Could not write adapter version {version} ({e.strerror or e}); the previous adapter stays active.") from e
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if activate:
            self.set_active(version)
        return version

    def set_active(self, version: int) -> None:
        """Point ``active`` at ``version`` (0 = base model) after checking that it reads back."""
        version = int(version)
        if version != 0:
            if not self.path(version).is_dir():
                raise ASLSError(f"Adapter version {version} does not exist.")
            try:
                read_adapter(self.path(version))
            except ASLSError as e:
                raise ASLSError(f"Adapter version {version} is damaged and cannot be activated: {e}") from e
        atomic_write_text(self.root / ACTIVE_FILE, str(version))

    def rollback(self, to: int | None = None) -> int:
        """Activate ``to`` (0 = base), or the newest valid version older than the active one."""
        if to is None:
            current = self.active()
            older = [v for v in self._numbers() if current is not None and v < current]
            to = next((v for v in reversed(older) if self.is_valid(v)), 0)
        self.set_active(to)
        return to

    def latest_valid(self) -> int | None:
        return next((v for v in reversed(self._numbers()) if self.is_valid(v)), None)
