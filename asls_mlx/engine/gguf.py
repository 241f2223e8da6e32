"""Convert a llama-architecture GGUF file (the embedded SmolLM2) to an mlx-lm model directory.

``mx.load`` reads GGUF natively: Q4_1 tensors arrive as MLX affine 4-bit (``weight`` uint32 +
``scales`` + ``biases``, group size 32), other tensors as float. We rename them to mlx-lm's llama
names, then either dequantize everything to float32 (CPU backend: quantized matmuls are 10-20x
slower there) or keep the quantized tensors with a per-layer ``quantization`` config (Metal/CUDA).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

from asls_mlx.engine.tokenizer_files import write_bpe_tokenizer
from asls_mlx.errors import ASLSError
from asls_mlx.paths import fsync_dir

GROUP_SIZE = 32  # Q4_1 and Q8_0 blocks hold 32 weights

_LAYER_NAMES = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}
_TOP_NAMES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def mlx_name(gguf_name: str) -> str:
    """``blk.3.attn_q.weight`` -> ``model.layers.3.self_attn.q_proj.weight``."""
    if m := re.fullmatch(r"blk\.(\d+)\.(\w+)\.(weight|scales|biases)", gguf_name):
        layer, part, kind = m.groups()
        if part not in _LAYER_NAMES:
            raise ASLSError(f"GGUF tensor {gguf_name} is not part of a llama model")
        return f"model.layers.{layer}.{_LAYER_NAMES[part]}.{kind}"
    if m := re.fullmatch(r"(\w+)\.(weight|scales|biases)", gguf_name):
        part, kind = m.groups()
        if part in _TOP_NAMES:
            return f"{_TOP_NAMES[part]}.{kind}"
    raise ASLSError(f"GGUF tensor {gguf_name} is not part of a llama model")


def _scalar(meta: dict, key: str):
    value = meta[key]
    return value.item() if hasattr(value, "item") else value


def model_config(meta: dict, has_output: bool) -> dict:
    arch = _scalar(meta, "general.architecture")
    if arch != "llama":
        raise ASLSError(f"GGUF architecture '{arch}' is not supported (only llama); use an mlx-lm model directory")
    p = "llama."
    return {
        "model_type": "llama",
        "hidden_size": int(_scalar(meta, p + "embedding_length")),
        "num_hidden_layers": int(_scalar(meta, p + "block_count")),
        "intermediate_size": int(_scalar(meta, p + "feed_forward_length")),
        "num_attention_heads": int(_scalar(meta, p + "attention.head_count")),
        "num_key_value_heads": int(_scalar(meta, p + "attention.head_count_kv")),
        "rms_norm_eps": float(_scalar(meta, p + "attention.layer_norm_rms_epsilon")),
        "vocab_size": len(meta["tokenizer.ggml.tokens"]),
        "rope_theta": float(_scalar(meta, p + "rope.freq_base")),
        "max_position_embeddings": int(_scalar(meta, p + "context_length")),
        # GGUF stores q/k permuted for interleaved (GPT-J style) RoPE.
        "rope_traditional": True,
        "tie_word_embeddings": not has_output,
    }


def _bits(weight, scales) -> int:
    """Bits per weight of an affine-quantized tensor, from its packed shape."""
    packed_cols, groups = weight.shape[-1], scales.shape[-1]
    return 32 * packed_cols // (groups * GROUP_SIZE)


def convert_weights(raw: dict, dequantize: bool) -> tuple[dict, dict | None]:
    """Rename GGUF tensors; dequantize to float32 or return a per-layer quantization config."""
    import mlx.core as mx

    named = {mlx_name(k): v for k, v in raw.items()}
    out, quant = {}, {}
    for name, tensor in named.items():
        if name.endswith((".scales", ".biases")):
            continue
        prefix = name[: -len(".weight")]
        if f"{prefix}.scales" in named:
            scales, biases = named[f"{prefix}.scales"], named[f"{prefix}.biases"]
            bits = _bits(tensor, scales)
            if dequantize:
                out[name] = mx.dequantize(tensor, scales, biases, group_size=GROUP_SIZE, bits=bits).astype(
                    mx.float32
                )
            else:
                out[name], out[f"{prefix}.scales"], out[f"{prefix}.biases"] = tensor, scales, biases
                quant[prefix] = {"group_size": GROUP_SIZE, "bits": bits}
        else:
            out[name] = tensor.astype(mx.float32) if dequantize else tensor
    if dequantize or not quant:
        return out, None
    bits = max(set(q["bits"] for q in quant.values()), key=[q["bits"] for q in quant.values()].count)
    config = {"group_size": GROUP_SIZE, "bits": bits}
    config.update({p: q for p, q in quant.items() if q["bits"] != bits})
    return out, config


def probe_gguf(path: Path) -> None:
    """Fail with a clear error if ``path`` is not a readable GGUF.

    MLX's GGUF reader can crash the whole process on a damaged file, so a child process reads it
    first; the parent only ever opens files the child survived.
    """
    path = Path(path)
    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            raise ASLSError(f"cannot read GGUF file {path}: not a GGUF file (bad magic). Delete it and try again.")
    code = "import sys, asls_mlx, mlx.core as mx; mx.load(sys.argv[1], return_metadata=True)"
    child = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True)
    if child.returncode != 0:
        why = (child.stderr.strip().splitlines() or [f"reader crashed (exit {child.returncode})"])[-1]
        raise ASLSError(f"cannot read GGUF file {path}: {why[:200]}. Delete it and try again.")


def convert_gguf(gguf_path: Path, out_dir: Path, dequantize: bool, progress: Callable[[str], None] | None = None) -> Path:
    """Convert ``gguf_path`` into the mlx-lm model directory ``out_dir``, atomically.

    Everything is written to a temporary sibling directory first and renamed at the end, so an
    interrupted conversion never leaves a half-written model behind.
    """
    import mlx.core as mx

    say = progress or (lambda _msg: None)
    gguf_path, out_dir = Path(gguf_path), Path(out_dir)
    say("reading GGUF")
    probe_gguf(gguf_path)
    try:
        raw, meta = mx.load(str(gguf_path), return_metadata=True)
    except Exception as e:  # mlx raises RuntimeError/ValueError with a C++ message
        raise ASLSError(f"cannot read GGUF file {gguf_path}: {e}. Delete it and run again to re-fetch it.") from e
    if meta.get("tokenizer.ggml.model") != "gpt2":
        raise ASLSError(f"GGUF tokenizer '{meta.get('tokenizer.ggml.model')}' is not supported (only BPE/gpt2)")
    config = model_config(meta, has_output="output.weight" in raw)
    say("converting tensors")
    weights, quantization = convert_weights(raw, dequantize)
    if quantization:
        config["quantization"] = quantization
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        say("writing model.safetensors")
        mx.save_safetensors(str(tmp / "model.safetensors"), weights, metadata={"format": "mlx"})
        (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
        say("writing tokenizer")
        token_types = meta["tokenizer.ggml.token_type"].tolist()
        write_bpe_tokenizer(
            tmp,
            vocab=list(meta["tokenizer.ggml.tokens"]),
            merges=list(meta["tokenizer.ggml.merges"]),
            special_ids=[i for i, t in enumerate(token_types) if t == 3],
            eos_id=int(_scalar(meta, "tokenizer.ggml.eos_token_id")),
            bos_id=int(_scalar(meta, "tokenizer.ggml.bos_token_id")) if "tokenizer.ggml.bos_token_id" in meta else None,
            pad_id=int(_scalar(meta, "tokenizer.ggml.padding_token_id")) if "tokenizer.ggml.padding_token_id" in meta else None,
            chat_template=str(meta["tokenizer.chat_template"]),
        )
        (tmp / "asls_source.json").write_text(
            json.dumps({"gguf": gguf_path.name, "sha256": sha256_file(gguf_path), "dequantized": dequantize})
        )
        for f in tmp.iterdir():
            f.chmod(0o644)
        tmp.chmod(0o755)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
        fsync_dir(out_dir.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir
