"""The LoRA runtime: attach, read/write weights in place (hot-swap), switch off, save/load.

Adapters use mlx-lm's layers (``mlx_lm.tuner.lora.LoRALinear``) and its file format
(``adapter_config.json`` + ``adapters.safetensors``), so a saved adapter loads with stock
``mlx_lm.load(base, adapter_path=dir)`` and ``mlx_lm.generate --adapter-path dir``.
"""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_unflatten
from mlx_lm.tuner.lora import LoRALinear
from mlx_lm.tuner.utils import linear_to_lora_layers

from asls_mlx.errors import ASLSError
from asls_mlx.paths import atomic_dir

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapters.safetensors"
METADATA_FILE = "metadata.json"
_ATTR = "_asls_lora_config"  # where attach_lora records the config on the model object
_LEAVES = ("lora_a", "lora_b")

ALL_LINEAR = (
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
)


@dataclass(frozen=True)
class LoraConfig:
    # Rank of the low-rank update. 8 moved a 135M model from 0% to 92% compliance in 10 steps
    # (docs/learning.md); more rank is more capacity to over-fit a handful of pairs.
    rank: int = 8
    # Multiplier on (x @ A) @ B. mlx-lm's default; with B initialised to 0 the adapter starts as identity.
    scale: float = 20.0
    # Dropout on the LoRA input. 0 keeps steps deterministic (exact resume); pairs are few anyway.
    dropout: float = 0.0
    # Module paths inside each transformer block to adapt: all seven linear kinds of a llama block.
    keys: tuple[str, ...] = field(default=ALL_LINEAR)
    # How many blocks, counted from the last, get adapters; -1 = all of them. mlx-lm's default of 16:
    # the blocks below never change, so training caches their output per row (prefix_cache.PrefixCache)
    # and a step runs 16 of SmolLM2's 30 blocks forward and backward (docs/performance.md).
    num_layers: int = 16

    def lora_parameters(self) -> dict:
        return {"rank": self.rank, "scale": self.scale, "dropout": self.dropout, "keys": list(self.keys)}

    def to_mlx_lm(self) -> dict:
        """The ``adapter_config.json`` dict mlx-lm's ``load_adapters`` reads."""
        return {"fine_tune_type": "lora", "num_layers": self.num_layers, "lora_parameters": self.lora_parameters()}

    @classmethod
    def from_mlx_lm(cls, config: dict) -> "LoraConfig":
        kind = config.get("fine_tune_type", "lora")
        if kind != "lora":
            raise ASLSError(f"Adapter fine_tune_type is {kind!r}; only 'lora' adapters are supported.")
        p = config.get("lora_parameters") or {}
        try:
            return cls(
                rank=int(p["rank"]),
                scale=float(p["scale"]),
                dropout=float(p.get("dropout", 0.0)),
                keys=tuple(p.get("keys") or ALL_LINEAR),
                num_layers=int(config.get("num_layers", -1)),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ASLSError(f"Adapter config is incomplete or malformed ({e}); it needs lora_parameters.rank and .scale.") from e


def _blocks(model: nn.Module, num_layers: int) -> list:
    layers = model.layers
    return list(layers) if num_layers < 0 else list(layers[-num_layers:]) if num_layers else []


def attach_lora(model: nn.Module, config: LoraConfig = LoraConfig()) -> None:
    """Freeze the base and wrap the configured linear layers with LoRA (B = 0: logits unchanged).

    Attaching the same config again is a no-op; a different config raises ``ASLSError``.
    """
    current = getattr(model, _ATTR, None)
    if current is not None:
        if current == config:
            return
        raise ASLSError(f"A different LoRA config is already attached ({current}); load the base model again to change it.")
    if config.rank < 1:
        raise ASLSError(f"LoRA rank must be at least 1, got {config.rank}.")
    model.freeze()
    linear_to_lora_layers(model, config.num_layers, config.lora_parameters())
    if not lora_parameters(model):
        raise ASLSError(f"None of the LoRA keys {list(config.keys)} name a linear layer in this model.")
    object.__setattr__(model, _ATTR, config)
    reset_lora(model)


def has_lora(model: nn.Module) -> bool:
    return getattr(model, _ATTR, None) is not None


def lora_config(model: nn.Module) -> LoraConfig | None:
    return getattr(model, _ATTR, None)


def _lora_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, LoRALinear)]


def lora_parameters(model: nn.Module) -> dict[str, mx.array]:
    """The adapter weights, flat names as in ``adapters.safetensors`` (``model.layers.0....lora_a``)."""
    return {k: v for k, v in tree_flatten(model.parameters()) if k.rsplit(".", 1)[-1] in _LEAVES}


def _check_weights(expected: dict[str, tuple], weights: dict) -> list[str]:
    errors = []
    for name in sorted(set(expected) - set(weights)):
        errors.append(f"  {name}: missing from the adapter")
    for name in sorted(set(weights) - set(expected)):
        errors.append(f"  {name}: not an adapter parameter of this model")
    for name in sorted(set(weights) & set(expected)):
        if tuple(weights[name].shape) != tuple(expected[name]):
            errors.append(f"  {name}: shape {tuple(weights[name].shape)}, the model needs {tuple(expected[name])}")
    return errors


def set_lora_weights(model: nn.Module, weights: dict[str, mx.array]) -> None:
    """Swap adapter weights in place (hot-swap). Checks every name and shape first, then raises once."""
    if not has_lora(model):
        raise ASLSError("No LoRA adapter is attached to this model; call attach_lora first.")
    current = lora_parameters(model)
    errors = _check_weights({k: v.shape for k, v in current.items()}, weights)
    if errors:
        raise ASLSError("Adapter weights do not fit this model:\n" + "\n".join(errors))
    new = [(k, mx.array(v).astype(current[k].dtype)) for k, v in weights.items()]
    model.update(tree_unflatten(new))
    mx.eval([v for _, v in new])


def reset_lora(model: nn.Module, seed: int = 0) -> None:
    """Make the adapter the identity (B = 0, exact base logits) with a fresh, seeded A.

    A is re-drawn deterministically (uniform +-1/sqrt(in), mlx-lm's init) so that training from a
    reset adapter is reproducible.
    """
    modules = _lora_modules(model)
    keys = mx.random.split(mx.random.key(seed), max(len(modules), 2))
    updates = []
    for i, (name, m) in enumerate(modules):
        d_in, r = m.lora_a.shape
        bound = 1.0 / math.sqrt(d_in)
        a = mx.random.uniform(-bound, bound, (d_in, r), key=keys[i])
        updates.append((f"{name}.lora_a", a.astype(m.lora_a.dtype)))
        updates.append((f"{name}.lora_b", mx.zeros_like(m.lora_b)))
    model.update(tree_unflatten(updates))
    mx.eval([v for _, v in updates])


def adapter_is_identity(model: nn.Module) -> bool:
    """True when the adapter changes nothing (no LoRA, or every B is 0): its outputs are the base's."""
    return all(not mx.any(m.lora_b).item() for _, m in _lora_modules(model))


@contextlib.contextmanager
def adapter_disabled(model: nn.Module):
    """Run the base model: every LoRA scale is 0 inside the block, restored after (also on errors).

    This is the DPO reference forward without a second copy of the model. Do not use it inside
    ``mx.compile``d functions (the scale is a Python constant there).
    """
    modules = [m for _, m in _lora_modules(model)]
    saved = [m.scale for m in modules]
    try:
        for m in modules:
            m.scale = 0.0
        yield model
    finally:
        for m, s in zip(modules, saved):
            m.scale = s


def expected_shapes(model: nn.Module, config: LoraConfig) -> dict[str, tuple]:
    """Adapter parameter names and shapes that ``config`` gives on ``model`` (attached or not)."""
    names = {id(m): n for n, m in model.named_modules()}
    shapes = {}
    for block in _blocks(model, config.num_layers):
        prefix = names[id(block)]
        sub = dict(block.named_modules())
        for key in config.keys:
            m = sub.get(key)
            if m is None:
                continue
            if isinstance(m, LoRALinear):
                m = m.linear
            if not isinstance(m, (nn.Linear, nn.QuantizedLinear)):
                continue
            d_out, d_in = m.weight.shape
            if isinstance(m, nn.QuantizedLinear):
                d_in = d_in * 32 // m.bits
            shapes[f"{prefix}.{key}.lora_a"] = (d_in, config.rank)
            shapes[f"{prefix}.{key}.lora_b"] = (config.rank, d_out)
    return shapes


def save_adapter(directory: Path, model: nn.Module, config: LoraConfig, metadata: dict | None = None) -> Path:
    """Write the adapter in mlx-lm's format plus ``metadata.json``, atomically.

    Files go to a temp dir beside ``directory`` (0700, files 0600), are fsynced, and the dir is renamed
    into place. An existing ``directory`` is replaced.
    """
    weights = lora_parameters(model)
    if not weights:
        raise ASLSError("The model has no LoRA adapter to save; call attach_lora first.")
    with atomic_dir(directory) as tmp:
        mx.save_safetensors(str(tmp / WEIGHTS_FILE), weights, metadata={"format": "mlx"})
        (tmp / CONFIG_FILE).write_text(json.dumps(config.to_mlx_lm(), indent=2))
        (tmp / METADATA_FILE).write_text(json.dumps(metadata or {}, indent=2, sort_keys=True, default=str))
    return Path(directory)


def read_adapter(directory: Path, model: nn.Module | None = None) -> tuple[LoraConfig, dict[str, mx.array], dict]:
    """Read ``(config, weights, metadata)`` from an adapter dir; with ``model``, check shapes fit it.

    Raises ``ASLSError`` for missing files, malformed JSON, truncated or garbage safetensors, or
    names/ranks/shapes that do not fit the model (every mismatch listed).
    """
    directory = Path(directory)
    missing = [f for f in (CONFIG_FILE, WEIGHTS_FILE) if not (directory / f).is_file()]
    if missing:
        raise ASLSError(f"Adapter at {directory} is incomplete: missing {', '.join(missing)}.")
    try:
        config = LoraConfig.from_mlx_lm(json.loads((directory / CONFIG_FILE).read_text()))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ASLSError(f"Adapter at {directory}: {CONFIG_FILE} is not valid JSON ({e}).") from e
    try:
        weights = mx.load(str(directory / WEIGHTS_FILE))
        if not isinstance(weights, dict):
            raise ValueError("not a safetensors file")
        mx.eval(list(weights.values()))
    except Exception as e:  # mlx raises RuntimeError/ValueError for truncated or garbage files
        raise ASLSError(f"Adapter at {directory}: {WEIGHTS_FILE} is corrupt or truncated ({e}). Roll back to another version.") from e
    metadata = {}
    if (directory / METADATA_FILE).is_file():
        try:
            metadata = json.loads((directory / METADATA_FILE).read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ASLSError(f"Adapter at {directory}: {METADATA_FILE} is not valid JSON ({e}).") from e
    errors = [
        f"  {k}: rank {v.shape[-1] if k.endswith('lora_a') else v.shape[0]} but the config says {config.rank}"
        for k, v in weights.items()
        if v.ndim == 2 and (v.shape[-1] if k.endswith("lora_a") else v.shape[0]) != config.rank
    ]
    if model is not None:
        errors += _check_weights(expected_shapes(model, config), weights)
    if errors:
        raise ASLSError(f"Adapter at {directory} does not fit:\n" + "\n".join(errors))
    return config, weights, metadata


def load_adapter(directory: Path, model: nn.Module) -> tuple[LoraConfig, dict]:
    """Attach (if needed) and hot-swap in the adapter saved at ``directory``; returns (config, metadata)."""
    config, weights, metadata = read_adapter(directory, model)
    attach_lora(model, config)
    set_lora_weights(model, weights)
    return config, metadata
