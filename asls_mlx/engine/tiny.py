"""A tiny randomly initialised mlx-lm llama model, for tests and quick notebook runs.

It is a real model directory (config.json, model.safetensors, tokenizer files) loaded through
``mlx_lm.load`` like any other, so tests exercise the same code paths as the embedded model.
"""

from __future__ import annotations

import json
from pathlib import Path

from asls_mlx.engine.tokenizer_files import CHATML_TEMPLATE, write_bpe_tokenizer

_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def _byte_level_alphabet() -> list[str]:
    """The 256 printable stand-ins GPT-2's byte-level BPE uses for raw bytes."""
    from tokenizers.pre_tokenizers import ByteLevel

    return sorted(ByteLevel.alphabet())


def tiny_config(vocab_size: int, **overrides) -> dict:
    config = {
        "model_type": "llama",
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "intermediate_size": 128,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-5,
        "vocab_size": vocab_size,
        "rope_theta": 10000.0,
        "rope_traditional": False,
        "tie_word_embeddings": True,
        "max_position_embeddings": 2048,
    }
    config.update(overrides)
    return config


def build_tiny_model(out_dir: Path, seed: int = 0, **config_overrides) -> Path:
    """Write a tiny random llama model directory to ``out_dir`` and return it."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.models import llama

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    vocab = _SPECIALS + _byte_level_alphabet()
    # A few merges so common English pieces are single tokens.
    merges = ["Ġ t", "h e", "i n", "Ġ a", "e r", "o n", "Ġt he", "r e", "a n", "e n"]
    for m in merges:
        vocab.append(m.replace(" ", ""))
    config = tiny_config(len(vocab), **config_overrides)
    mx.random.seed(seed)
    model = llama.Model(llama.ModelArgs.from_dict(config))
    weights = dict(tree_flatten(model.parameters()))
    mx.save_safetensors(str(out_dir / "model.safetensors"), weights, metadata={"format": "mlx"})
    (out_dir / "config.json").write_text(json.dumps(config, indent=2))
    write_bpe_tokenizer(
        out_dir,
        vocab,
        merges,
        special_ids=[0, 1, 2],
        eos_id=2,
        bos_id=None,
        chat_template=CHATML_TEMPLATE,
    )
    return out_dir
