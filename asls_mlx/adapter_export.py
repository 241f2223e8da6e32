"""Adapters that travel: a user's adapter as a Hugging Face PEFT LoRA adapter, the base model in Hugging
Face's layout, and a fused mlx-lm model.

mlx-lm's LoRA computes ``y = W x + scale * (x @ lora_a) @ lora_b`` with ``lora_a`` (in, r) and
``lora_b`` (r, out); PEFT computes ``y = W x + (lora_alpha / r) * B(A(x))`` with ``A.weight`` (r, in) and
``B.weight`` (out, r). So ``A = lora_a.T``, ``B = lora_b.T`` and ``lora_alpha = scale * r``.

The embedded model comes from GGUF, which stores the rows of q_proj and k_proj interleaved for RoPE on
adjacent pairs (``rope_traditional``); Hugging Face rotates halves. Its HF export un-permutes those rows,
and so does the PEFT export for the output side (``B``) of q_proj/k_proj adapters: the pair then equals
asls's model exactly, in Hugging Face's convention.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import mlx.core as mx
import numpy as np

from asls_mlx.adaptation.lora import read_adapter
from asls_mlx.adaptation.versions import AdapterRepo
from asls_mlx.errors import ASLSError
from asls_mlx.paths import atomic_dir
from asls_mlx.session_update import user_dir
from asls_mlx.store import open_store

PEFT_CONFIG = "adapter_config.json"
PEFT_WEIGHTS = "adapter_model.safetensors"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json")


def halves_from_interleaved(rows: np.ndarray, head_dim: int) -> np.ndarray:
    """Reorder the output rows of a q/k projection from GGUF's interleaved RoPE layout to Hugging Face's
    halves layout (row 2i of a head -> i, row 2i+1 -> head_dim/2 + i); ``rows``: (out, ...)."""
    heads = rows.shape[0] // head_dim
    return rows.reshape(heads, head_dim // 2, 2, *rows.shape[1:]).swapaxes(1, 2).reshape(rows.shape)


def _write_dir(out: Path, files: dict[str, bytes | Path], tensors: dict[str, np.ndarray] | None, tensors_name: str) -> Path:
    """Write a folder atomically (a temp folder renamed into place; files owner-readable only).
    An existing non-empty ``out`` is refused: exports never overwrite what someone already has."""
    out = Path(out).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ASLSError(f"{out} already exists and is not an empty folder; choose a new one")
    with atomic_dir(out) as tmp:  # an existing empty ``out`` is replaced
        if tensors is not None:
            mx.save_safetensors(str(tmp / tensors_name), {k: mx.array(np.ascontiguousarray(v)) for k, v in tensors.items()},
                                metadata={"format": "pt"})
        for name, data in files.items():
            shutil.copyfile(data, tmp / name) if isinstance(data, Path) else (tmp / name).write_bytes(data)
    return out


def _adapter_and_base(user, version, model, purpose: str) -> tuple:
    """(version number, base model id, LoRA config, adapter weights, base model folder, its config) of ``user``'s
    adapter; ``purpose`` begins the error when the base model is not a local folder."""
    from asls_mlx.engine.models import resolve_model

    folder, number, base_id = _adapter_dir(user, version)
    lora, weights, _meta = read_adapter(folder)
    model_dir = resolve_model(model)
    if not isinstance(model_dir, Path):
        raise ASLSError(f"{purpose} the base model as a local folder (pass --model DIR)")
    return number, base_id, lora, weights, model_dir, _model_config(model_dir)


def _model_config(model_dir: Path) -> dict:
    try:
        return json.loads((Path(model_dir) / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise ASLSError(f"cannot read the base model's config.json in {model_dir} ({e})") from e


def _head_dim(config: dict) -> int:
    return int(config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"])


def peft_tensors(weights: dict[str, mx.array], model_config: dict) -> dict[str, np.ndarray]:
    """mlx-lm adapter weights -> PEFT's names and layout (see the module docstring)."""
    interleaved, head_dim = bool(model_config.get("rope_traditional")), _head_dim(model_config)
    out = {}
    for name, value in weights.items():
        module, leaf = name.rsplit(".", 1)
        array = np.array(value.astype(mx.float32)).T  # (in, r) -> (r, in);  (r, out) -> (out, r)
        if leaf == "lora_b" and interleaved and module.endswith(("q_proj", "k_proj")):
            array = halves_from_interleaved(array, head_dim)
        out[f"base_model.model.{module}.lora_{'A' if leaf == 'lora_a' else 'B'}.weight"] = array
    return out


def peft_config(lora, model_config: dict, base_model: str) -> dict:
    """PEFT's ``adapter_config.json`` for an mlx-lm :class:`LoraConfig` on a model with ``model_config``."""
    layers = int(model_config["num_hidden_layers"])
    first = 0 if lora.num_layers < 0 else max(0, layers - lora.num_layers)
    return {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": base_model,
        "r": lora.rank, "lora_alpha": lora.scale * lora.rank, "lora_dropout": lora.dropout,
        "target_modules": sorted({k.rsplit(".", 1)[-1] for k in lora.keys}),
        "layers_to_transform": list(range(first, layers)), "layers_pattern": "layers",
        "bias": "none", "fan_in_fan_out": False, "inference_mode": True, "init_lora_weights": True,
        "use_rslora": False, "use_dora": False, "modules_to_save": None, "revision": None,
    }


def _adapter_dir(user: str | None, version: int | None) -> tuple[Path, int, str]:
    """(folder, version, base model id) of ``user``'s adapter ``version`` (default: the active one)."""
    with open_store() as store:
        record = store.get_user(user or "default")
        chosen = store.active_adapter(record.id) if version is None else store.adapter_version(record.id, version)
        if chosen is None:
            raise ASLSError(f"user {record.name!r} has no active adapter yet; chat and end a session first, or pass --version")
        return AdapterRepo(user_dir(store, record) / "adapters").path(chosen.version), chosen.version, chosen.base_model


def export_adapter(directory: str | os.PathLike, user: str | None = None, version: int | None = None,
                   format: str = "peft", model: str | None = None, base_model_name: str | None = None) -> Path:
    """Write ``user``'s adapter (default: the active version) as a PEFT LoRA adapter in ``directory``
    (``adapter_config.json`` + ``adapter_model.safetensors``), for the base model in Hugging Face's
    layout (:func:`export_hf_model` writes it for the embedded one). ``base_model_name``: what
    ``base_model_name_or_path`` says (default: the model's id)."""
    if format != "peft":
        raise ASLSError(f"unknown adapter export format {format!r}; the one supported is 'peft'")
    number, base_id, lora, weights, model_dir, config = _adapter_and_base(user, version, model, "the PEFT export needs")
    files = {PEFT_CONFIG: json.dumps(peft_config(lora, config, base_model_name or base_id), indent=2).encode(),
             "README.md": _readme(base_id, number).encode()}
    return _write_dir(Path(directory), files, peft_tensors(weights, config), PEFT_WEIGHTS)


def _readme(base_id: str, version: int) -> str:
    return (f"# asls adapter v{version} (PEFT LoRA)\n\nBase model: `{base_id}` in Hugging Face's layout "
            "(`asls models --export-hf DIR` writes it for the embedded default).\n\n"
            "    from peft import PeftModel\n    model = PeftModel.from_pretrained(base, 'THIS_FOLDER')\n")


def export_hf_model(directory: str | os.PathLike, model: str | None = None) -> Path:
    """Write the base model (default: the embedded one) in Hugging Face's layout: ``LlamaForCausalLM``
    config, q/k rows in halves order, tokenizer files; what PEFT, transformers and vLLM load."""
    from asls_mlx.engine.models import resolve_model

    model_dir = resolve_model(model)
    if not isinstance(model_dir, Path):
        raise ASLSError("the Hugging Face export needs a local model folder (pass --model DIR)")
    config = _model_config(model_dir)
    if config.get("model_type") != "llama" or config.get("quantization"):
        raise ASLSError("only unquantized llama-family models can be exported in Hugging Face's layout")
    weights = mx.load(str(model_dir / "model.safetensors"))
    tensors = {}
    for name, value in weights.items():
        array = np.array(value.astype(mx.float32))
        if config.get("rope_traditional") and name.endswith(("q_proj.weight", "k_proj.weight")):
            array = halves_from_interleaved(array, _head_dim(config))
        tensors[name] = array
    hf = {k: v for k, v in config.items() if k not in ("rope_traditional", "quantization")}
    hf.update(architectures=["LlamaForCausalLM"], torch_dtype="float32", hidden_act=config.get("hidden_act", "silu"))
    files = {"config.json": json.dumps(hf, indent=2).encode()}
    files.update({n: model_dir / n for n in TOKENIZER_FILES if (model_dir / n).is_file()})
    return _write_dir(Path(directory), files, tensors, "model.safetensors")


def fuse_adapter(directory: str | os.PathLike, user: str | None = None, version: int | None = None,
                 model: str | None = None) -> Path:
    """Write an mlx-lm model with ``user``'s adapter merged into its weights (as ``mlx_lm.fuse`` does):
    ``W + scale * (lora_a @ lora_b).T``; it loads in any MLX tool without asls."""
    _number, _base, lora, weights, model_dir, config = _adapter_and_base(user, version, model, "fusing needs")
    if config.get("quantization"):
        raise ASLSError("fusing into a quantized model is not supported; use an unquantized base")
    base = {k: np.array(v.astype(mx.float32)) for k, v in mx.load(str(model_dir / "model.safetensors")).items()}
    for name, a in weights.items():
        module, leaf = name.rsplit(".", 1)
        if leaf != "lora_a":
            continue
        b = np.array(weights[f"{module}.lora_b"].astype(mx.float32))
        target = f"{module}.weight"
        if target not in base:
            raise ASLSError(f"the adapter changes {module}, which the base model in {model_dir} does not have")
        base[target] = base[target] + lora.scale * (np.array(a.astype(mx.float32)) @ b).T
    # asls_source.json names the embedded model's GGUF: a fused model is another model
    files = {n.name: n for n in model_dir.iterdir() if n.is_file() and n.suffix != ".safetensors" and n.name != "asls_source.json"}
    return _write_dir(Path(directory), files, base, "model.safetensors")


__all__ = ["export_adapter", "export_hf_model", "fuse_adapter", "halves_from_interleaved", "peft_config", "peft_tensors"]
