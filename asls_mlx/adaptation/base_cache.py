"""Values that depend only on the base model and fixed inputs, kept on disk between processes.

Every background update is a fresh process (``asls_mlx.background``), and each one recomputed the
base model's retention targets (its top-k next-token log-probs on the bundled general texts, ~1.3 s)
and its perplexity on them (~0.7 s): the same numbers every time. They are kept here as ``.npz``
files named by a hash of what they were computed from (kind, inputs, model identity, ``FORMAT``).
Nothing here is user data: the model is the base model and the texts ship with the package.
A missing, unreadable or corrupt file is recomputed; a write is atomic.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np

from asls_mlx.paths import atomic_write_bytes, private_dir

FORMAT = 1  # bump when what is computed for a key changes


class BaseCache:
    """``.npz`` files in ``directory`` (one directory per base model)."""

    def __init__(self, directory: Path | str):
        self.directory = Path(directory)

    def _path(self, kind: str, key: bytes) -> Path:
        digest = hashlib.sha256(f"{kind}:{FORMAT}:".encode() + key).hexdigest()[:32]
        return self.directory / f"{kind}-{digest}.npz"

    def load(self, kind: str, key: bytes) -> dict[str, np.ndarray] | None:
        try:
            with np.load(self._path(kind, key)) as data:
                return {name: data[name] for name in data.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile):
            return None

    def save(self, kind: str, key: bytes, **arrays: np.ndarray) -> None:
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        try:
            private_dir(self.directory)
            atomic_write_bytes(self._path(kind, key), buffer.getvalue())
        except OSError:  # a read-only or full disk only costs the recomputation next time
            pass


def array_key(*parts) -> bytes:
    """Bytes identifying ``parts`` (arrays by dtype, shape and contents; anything else by its repr)."""
    out = []
    for part in parts:
        if hasattr(part, "dtype"):
            a = np.asarray(part)
            out.append(f"{a.dtype}{a.shape}".encode() + a.tobytes())
        else:
            out.append(repr(part).encode())
    return b"\x00".join(out)
