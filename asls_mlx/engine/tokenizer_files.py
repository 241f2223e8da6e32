"""Write a Hugging Face ``tokenizer.json`` + ``tokenizer_config.json`` that ``mlx_lm.load`` accepts.

Used by the GGUF converter (the embedded default model) and by the tiny test model, so both go
through exactly the path a user's own model directory takes.
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def write_bpe_tokenizer(
    out_dir: Path,
    vocab: list[str],
    merges: list[str],
    special_ids: list[int],
    eos_id: int,
    bos_id: int | None,
    chat_template: str,
    pad_id: int | None = None,
) -> None:
    """Byte-level BPE (GPT-2 style, digits split individually, no prefix space), as SmolLM2 uses."""
    vocab_map = {tok: i for i, tok in enumerate(vocab)}
    merge_pairs = [tuple(m.split(" ", 1)) for m in merges]
    tok = Tokenizer(models.BPE(vocab=vocab_map, merges=merge_pairs, fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    from tokenizers import AddedToken

    tok.add_special_tokens([AddedToken(vocab[i], special=True, normalized=False) for i in special_ids])
    out_dir = Path(out_dir)
    tok.save(str(out_dir / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": 8192,
        "chat_template": chat_template,
        "eos_token": vocab[eos_id],
        "bos_token": vocab[bos_id] if bos_id is not None else None,
        "pad_token": vocab[pad_id if pad_id is not None else eos_id],
        "unk_token": None,
        "add_bos_token": False,
        "clean_up_tokenization_spaces": False,
        "additional_special_tokens": [vocab[i] for i in special_ids],
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    (out_dir / "special_tokens_map.json").write_text(
        json.dumps({k: config[k] for k in ("eos_token", "bos_token", "pad_token")}, indent=2)
    )
