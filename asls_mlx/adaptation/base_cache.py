"""Values that depend only on the base model and fixed inputs, kept on disk between processes.

Every background update is a fresh process (``asls_mlx.background``), and each one recomputed the
base model's retention targets (its top-k next-token log-probs on the bundled general texts, ~1.3 s),
its perplexity on them (~0.7 s), the frozen blocks' output on them (``PrefixCache.text_inputs``, ~1.8 s)
and which fast paths of ``logprobs`` give exact results for it (~0.6 s of check forwards,
``decide_fast_paths``): the same outcome every time. They are kept here as ``.npz``
files named by a hash of what they were computed from (kind, inputs, ``FORMAT`` and a fingerprint of the
base weights: a local model's id is only its directory name, which two different models may share).
Nothing here is user data: the model is the base model and the texts ship with the package.
A missing, unreadable or corrupt file is recomputed; a write is atomic.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path
from typing import Callable

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten

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


def cached(base_cache: BaseCache | None, kind: str, key: bytes, names: tuple[str, ...],
           compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The arrays ``names`` that ``compute()`` returns: read from ``base_cache`` when an earlier process
    kept all of them, else computed and kept there. Without a cache, just ``compute()``."""
    stored = base_cache.load(kind, key) if base_cache is not None else None
    if stored is not None and set(names) <= set(stored):
        return stored
    arrays = compute()
    if base_cache is not None:
        base_cache.save(kind, key, **arrays)
    return arrays


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


_SAMPLE_STRIDE = 997  # every 997th value of each base weight goes into the fingerprint


def base_fingerprint(model) -> bytes:
    """A digest of ``model``'s base weights (LoRA excluded): names, shapes, dtypes and a strided sample
    of the values. Memoised per model object until its embedding array is replaced (a reload)."""
    embed = model.model.embed_tokens.weight
    memo = model.__dict__.get("_asls_base_fingerprint")
    if memo is not None and memo[0] is embed:
        return memo[1]
    digest = hashlib.sha256()
    for name, w in sorted(tree_flatten(model.parameters()), key=lambda kv: kv[0]):
        if ".lora_" in name:
            continue
        name = name.replace(".linear.", ".")  # a LoRA layer wraps the base linear: same weight either way
        digest.update(f"{name}{w.dtype}{w.shape}".encode())
        digest.update(np.asarray(w.reshape(-1)[::_SAMPLE_STRIDE].astype(mx.float32)).tobytes())
    fingerprint = digest.digest()
    model.__dict__["_asls_base_fingerprint"] = (embed, fingerprint)
    return fingerprint
