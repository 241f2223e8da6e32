"""A user's adapter versions on disk: the folders v1, v2, ..., read and written, nothing more.

Layout under ``root`` (0700 dirs, 0600 files)::

    v1/ adapter_config.json adapters.safetensors metadata.json [optimizer.safetensors]
    v2/ ...
    last_version      "2": the highest number ever committed (numbers are never reused)

Which version is active is the store's to say (its ``adapter_versions`` row), never a file here: one
authority, so a rollback cannot leave two records disagreeing. A version appears only by renaming a
complete, fsynced temp dir, so a crash leaves a whole version or none; temp leftovers are removed on open.
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

    def list(self) -> list[VersionInfo]:
        """Readable versions, oldest first, with their metadata (metrics included)."""
        out = []
        for v in self._numbers():
            p = self.path(v)
            try:
                meta = json.loads((p / METADATA_FILE).read_text())
            except (OSError, json.JSONDecodeError):
                warnings.warn(f"Skipping adapter version {v}: unreadable {METADATA_FILE}", stacklevel=2)
                continue
            out.append(VersionInfo(v, p, meta))
        return out

    def load(self, version: int, model=None) -> tuple[LoraConfig, dict[str, mx.array], dict]:
        """(config, weights, metadata) of ``version``, checked against ``model`` if given."""
        return read_adapter(self.path(version), model)

    def optimizer_state(self, version: int) -> dict[str, mx.array] | None:
        """The optimizer state saved with ``version``, or None (none saved, or unreadable: training restarts it)."""
        f = self.path(version) / OPTIMIZER_FILE
        if not f.is_file():
            return None
        try:
            return mx.load(str(f))
        except Exception as e:
            warnings.warn(f"Ignoring unreadable optimizer state of version {version}: {e}", stacklevel=2)
            return None

    # -- writing ---------------------------------------------------------------------------
    def _high_water(self) -> int:
        """The highest version number ever committed here (deleted versions included)."""
        try:
            return int((self.root / LAST_FILE).read_text().strip())
        except (OSError, ValueError):
            return 0

    def commit(self, model, config: LoraConfig, metadata: dict | None = None, optimizer_state: dict | None = None,
               version: int | None = None) -> int:
        """Write the model's adapter as a new version folder (atomic); returns its number.

        The number is never reused, also after a version was deleted (forget), so it cannot collide
        with the store's record of an old one; ``version`` (e.g. the store's next number) may raise it.
        A write that fails (disk full, ...) leaves no trace and raises ASLSError. Activating it is the
        store's job, after this returns.
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
        return version
