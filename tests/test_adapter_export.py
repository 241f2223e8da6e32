"""Adapters that travel: the PEFT export (names, shapes, alpha, the A/B transposition and GGUF's q/k
row order) checked against an independent NumPy forward in Hugging Face's conventions, the HF base
export, the fused mlx-lm model, and (with the `peers` extra installed) PEFT + transformers themselves."""

from __future__ import annotations

import json

import mlx.core as mx
import numpy as np
import pytest

from asls_mlx import ASLSError, Assistant, AssistantConfig, export_adapter, export_hf_model, fuse_adapter

PROMPT = [{"role": "user", "content": "Tell me about the sea"}]


@pytest.fixture(scope="module")
def rope_model_dir(tmp_path_factory):
    """A tiny model with GGUF's interleaved q/k rows (rope_traditional), as the embedded model has,
    and 3 blocks so the default LoRA covers all of them."""
    from asls_mlx.engine.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("rope") / "model", seed=1, rope_traditional=True, num_hidden_layers=3)


@pytest.fixture
def trained(rope_model_dir):
    """User 'sam' with an active adapter v1 on the last 2 of 3 blocks (random, non-zero B, committed as
    training commits); returns (prompt ids, logits with the adapter, logits of the base model)."""
    from asls_mlx.adaptation.lora import LoraConfig, attach_lora, lora_config, lora_parameters, set_lora_weights
    from asls_mlx.adaptation.versions import AdapterRepo
    from asls_mlx.session_update import user_dir

    a = Assistant(user="sam", model=str(rope_model_dir), config=AssistantConfig(lora_layers=2))
    try:
        model = a.engine.model
        ids = a.engine.tokenizer.apply_chat_template(PROMPT, add_generation_prompt=True)
        base = np.array(model(mx.array([ids]))[0])
        attach_lora(model, LoraConfig(num_layers=2))
        set_lora_weights(model, {k: mx.random.normal(v.shape, key=mx.random.key(7)) * 0.05 if k.endswith("lora_b") else v
                                 for k, v in lora_parameters(model).items()})
        adapted = np.array(model(mx.array([ids]))[0])
        repo = AdapterRepo(user_dir(a.store, a.user) / "adapters")
        version = repo.commit(model, lora_config(model), {"base_model": a.engine.model_id})
        a.store.add_adapter_version(a.user.id, str(repo.path(version)), a.engine.model_id, status="active", version=version)
    finally:
        a.close()
    assert np.abs(adapted - base).max() > 1e-3  # the adapter changes the logits: the comparisons below can fail
    return ids, adapted, base


def hf_llama_logits(hf_dir, peft_dir, ids) -> np.ndarray:
    """Logits of a Hugging Face-layout llama (+ a PEFT LoRA adapter) computed with NumPy alone, in HF's
    conventions: RoPE rotating halves, y = W x + (lora_alpha / r) * B(A(x))."""
    cfg = json.loads((hf_dir / "config.json").read_text())
    w = {k: np.array(v) for k, v in mx.load(str(hf_dir / "model.safetensors")).items()}
    lora = {k: np.array(v) for k, v in mx.load(str(peft_dir / "adapter_model.safetensors")).items()} if peft_dir else {}
    pcfg = json.loads((peft_dir / "adapter_config.json").read_text()) if peft_dir else {"r": 1, "lora_alpha": 0}
    scaling = pcfg["lora_alpha"] / pcfg["r"]
    heads, kv, hidden = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["hidden_size"]
    hd, eps = hidden // heads, cfg["rms_norm_eps"]

    def linear(name, x):
        y = x @ w[f"{name}.weight"].T
        a = lora.get(f"base_model.model.{name}.lora_A.weight")
        return y if a is None else y + scaling * (x @ a.T) @ lora[f"base_model.model.{name}.lora_B.weight"].T

    def norm(x, weight):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * weight

    def rope(x):  # (heads, T, hd), halves
        inv = 1.0 / cfg["rope_theta"] ** (np.arange(0, hd, 2) / hd)
        ang = np.arange(x.shape[1])[:, None] * inv[None]
        cos, sin = np.concatenate([np.cos(ang)] * 2, -1), np.concatenate([np.sin(ang)] * 2, -1)
        rotated = np.concatenate([-x[..., hd // 2:], x[..., : hd // 2]], -1)
        return x * cos + rotated * sin

    x, T = w["model.embed_tokens.weight"][ids], len(ids)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}"
        h = norm(x, w[f"{p}.input_layernorm.weight"])
        q = rope(linear(f"{p}.self_attn.q_proj", h).reshape(T, heads, hd).transpose(1, 0, 2))
        k = rope(linear(f"{p}.self_attn.k_proj", h).reshape(T, kv, hd).transpose(1, 0, 2)).repeat(heads // kv, 0)
        v = linear(f"{p}.self_attn.v_proj", h).reshape(T, kv, hd).transpose(1, 0, 2).repeat(heads // kv, 0)
        s = q @ k.transpose(0, 2, 1) / np.sqrt(hd) + np.triu(np.full((T, T), -np.inf), 1)
        s = np.exp(s - s.max(-1, keepdims=True))
        att = (s / s.sum(-1, keepdims=True)) @ v
        x = x + linear(f"{p}.self_attn.o_proj", att.transpose(1, 0, 2).reshape(T, hidden))
        h = norm(x, w[f"{p}.post_attention_layernorm.weight"])
        gate = linear(f"{p}.mlp.gate_proj", h)
        x = x + linear(f"{p}.mlp.down_proj", gate / (1 + np.exp(-gate)) * linear(f"{p}.mlp.up_proj", h))
    return norm(x, w["model.norm.weight"]) @ w.get("lm_head.weight", w["model.embed_tokens.weight"]).T


def test_peft_export_matches_asls_logits_in_hugging_faces_conventions(rope_model_dir, trained, tmp_path):
    ids, adapted, base = trained
    hf = export_hf_model(tmp_path / "hf", model=str(rope_model_dir))
    peft = export_adapter(tmp_path / "peft", user="sam", model=str(rope_model_dir))
    assert np.abs(hf_llama_logits(hf, None, ids) - base).max() <= 1e-3  # the base, un-permuted, is the same model
    assert np.abs(hf_llama_logits(hf, peft, ids) - adapted).max() <= 1e-3


def test_peft_files_have_peft_names_shapes_and_alpha(rope_model_dir, trained, tmp_path):
    peft = export_adapter(tmp_path / "peft", user="sam", version=1, model=str(rope_model_dir), base_model_name="org/base")
    cfg = json.loads((peft / "adapter_config.json").read_text())
    assert (cfg["peft_type"], cfg["task_type"], cfg["r"], cfg["lora_alpha"]) == ("LORA", "CAUSAL_LM", 8, 160.0)
    assert cfg["layers_to_transform"] == [1, 2] and cfg["base_model_name_or_path"] == "org/base"
    assert cfg["target_modules"] == ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]
    tensors = mx.load(str(peft / "adapter_model.safetensors"))
    assert len(tensors) == 2 * 7 * 2
    assert tensors["base_model.model.model.layers.1.mlp.down_proj.lora_A.weight"].shape == (8, 128)
    assert tensors["base_model.model.model.layers.1.mlp.down_proj.lora_B.weight"].shape == (64, 8)
    assert tensors["base_model.model.model.layers.2.self_attn.k_proj.lora_B.weight"].shape == (32, 8)
    assert {p.stat().st_mode & 0o777 for p in peft.iterdir()} == {0o600}
    with pytest.raises(ASLSError, match="not an empty folder"):
        export_adapter(peft, user="sam", model=str(rope_model_dir))
    with pytest.raises(ASLSError, match="format"):
        export_adapter(tmp_path / "x", user="sam", format="gguf", model=str(rope_model_dir))


def test_halves_from_interleaved_is_the_gguf_inverse():
    from asls_mlx.adapter_export import halves_from_interleaved

    rows = np.arange(8)[:, None] * np.ones((1, 3))
    assert halves_from_interleaved(rows, 4)[:, 0].tolist() == [0, 2, 1, 3, 4, 6, 5, 7]


def test_fused_model_answers_as_base_plus_adapter(rope_model_dir, trained, tmp_path):
    import mlx_lm

    ids, adapted, _ = trained
    fused = fuse_adapter(tmp_path / "fused", user="sam", model=str(rope_model_dir))
    model, _ = mlx_lm.load(str(fused))
    assert np.abs(np.array(model(mx.array([ids]))[0]) - adapted).max() <= 1e-4


def test_export_without_an_adapter_is_a_clear_error(rope_model_dir, tmp_path):
    Assistant(user="nobody", exclusive=False).close()
    with pytest.raises(ASLSError, match="no active adapter"):
        export_adapter(tmp_path / "p", user="nobody", model=str(rope_model_dir))


def test_peft_and_transformers_load_the_export_with_the_same_logits(rope_model_dir, trained, tmp_path):
    """The `peers` extra (torch CPU, peft, transformers): skipped when they are not installed."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("peft")
    from peft import PeftModel
    from transformers import LlamaForCausalLM

    ids, adapted, _ = trained
    hf = export_hf_model(tmp_path / "hf", model=str(rope_model_dir))
    peft = export_adapter(tmp_path / "peft", user="sam", model=str(rope_model_dir))
    model = PeftModel.from_pretrained(LlamaForCausalLM.from_pretrained(str(hf), torch_dtype=torch.float32), str(peft)).eval()
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].numpy()
    assert np.abs(logits - adapted).max() <= 1e-3


def _asls(*args):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "asls_mlx", *args], capture_output=True, text=True, timeout=300)


def test_the_cli_exports_fuses_and_explains_mistakes_in_one_line(rope_model_dir, trained, tmp_path):
    out = _asls("adapters", "export", "--format", "peft", str(tmp_path / "p"), "--user", "sam", "--model", str(rope_model_dir))
    assert out.returncode == 0 and "PEFT LoRA adapter written" in out.stdout, out.stderr
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == ["README.md", "adapter_config.json", "adapter_model.safetensors"]
    out = _asls("adapters", "fuse", str(tmp_path / "f"), "--user", "sam", "--version", "1", "--model", str(rope_model_dir))
    assert out.returncode == 0 and (tmp_path / "f" / "model.safetensors").is_file(), out.stderr
    out = _asls("models", "--export-hf", str(tmp_path / "hf"), "--model", str(rope_model_dir))
    assert out.returncode == 0 and json.loads((tmp_path / "hf" / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
    for argv, message in [(("adapters", "export"), "needs the output folder"), (("adapters", "rollback", "x"), "is a number"),
                          (("adapters", "export", str(tmp_path / "p"), "--user", "sam", "--model", str(rope_model_dir)), "not an empty folder"),
                          (("adapters", "export", str(tmp_path / "q"), "--user", "sam", "--version", "9"), "9")]:
        out = _asls(*argv)
        assert out.returncode != 0 and len(out.stderr.strip().splitlines()) == 1 and message in out.stderr, (argv, out.stderr)
