"""LoRA runtime, adapter files and the version repo, on the tiny model."""

import json
import os

import asls_mlx  # noqa: F401
import mlx.core as mx
import mlx_lm
import pytest
from mlx.utils import tree_flatten

from adaptation_fixtures import fresh_model
from asls_mlx.adaptation.lora import (
    LoraConfig,
    adapter_disabled,
    attach_lora,
    has_lora,
    lora_parameters,
    read_adapter,
    reset_lora,
    save_adapter,
    set_lora_weights,
)
from asls_mlx.adaptation.versions import AdapterRepo
from asls_mlx.errors import ASLSError

X = mx.array([[1, 40, 50, 60, 70, 80, 90, 100]])


def perturbed(model, seed=1, size=0.05):
    mx.random.seed(seed)
    return {k: v + size * mx.random.normal(v.shape) for k, v in lora_parameters(model).items()}


def test_trainable_parameter_count_is_exact(tiny_model_dir):
    model, _ = fresh_model(tiny_model_dir, None)
    base_logits = model(X)
    attach_lora(model, LoraConfig(rank=8))
    # tiny config: hidden 64, 4 heads (head dim 16), 2 kv heads -> k/v out 32, intermediate 128, 2 layers
    r, h, kv, inter = 8, 64, 32, 128
    per_layer = r * (h + h) + 2 * r * (h + kv) + r * (h + h) + 2 * r * (h + inter) + r * (inter + h)
    trainable = sum(v.size for _, v in tree_flatten(model.trainable_parameters()))
    assert trainable == 2 * per_layer == 16384
    assert sum(v.size for v in lora_parameters(model).values()) == trainable
    assert mx.array_equal(model(X), base_logits)  # B = 0: identity
    # idempotent for the same config; a different one is refused
    attach_lora(model, LoraConfig(rank=8))
    with pytest.raises(ASLSError):
        attach_lora(model, LoraConfig(rank=4))
    assert has_lora(model)


def test_fewer_layers_and_keys(tiny_model_dir):
    model, _ = fresh_model(tiny_model_dir, LoraConfig(rank=4, keys=("self_attn.q_proj",), num_layers=1))
    assert sorted(lora_parameters(model)) == ["model.layers.1.self_attn.q_proj.lora_a", "model.layers.1.self_attn.q_proj.lora_b"]


def test_hot_swap_changes_logits_and_swapping_back_restores_them(tiny_model_dir):
    model, _ = fresh_model(tiny_model_dir)
    base = model(X)
    original = lora_parameters(model)
    new = perturbed(model)
    set_lora_weights(model, new)
    swapped = model(X)
    assert not mx.allclose(swapped, base)
    with adapter_disabled(model):
        assert mx.array_equal(model(X), base)
    assert mx.array_equal(model(X), swapped)  # scale restored
    set_lora_weights(model, original)
    assert mx.array_equal(model(X), base)
    set_lora_weights(model, new)
    reset_lora(model)
    assert mx.array_equal(model(X), base)


def test_adapter_disabled_restores_scale_on_error(tiny_model_dir):
    model, _ = fresh_model(tiny_model_dir)
    set_lora_weights(model, perturbed(model))
    on = model(X)
    with pytest.raises(RuntimeError):
        with adapter_disabled(model):
            raise RuntimeError("boom")
    assert mx.array_equal(model(X), on)


def test_set_lora_weights_lists_every_mismatch(tiny_model_dir):
    model, _ = fresh_model(tiny_model_dir)
    w = dict(lora_parameters(model))
    w["model.layers.0.self_attn.q_proj.lora_a"] = mx.zeros((3, 3))
    w.pop("model.layers.1.mlp.up_proj.lora_b")
    w["model.layers.9.bogus.lora_a"] = mx.zeros((1, 1))
    with pytest.raises(ASLSError) as e:
        set_lora_weights(model, w)
    msg = str(e.value)
    assert "q_proj.lora_a: shape (3, 3)" in msg and "up_proj.lora_b: missing" in msg and "bogus.lora_a: not an adapter" in msg


def test_saved_adapter_loads_in_stock_mlx_lm_with_identical_logits(tiny_model_dir, tmp_path):
    model, _ = fresh_model(tiny_model_dir)
    set_lora_weights(model, perturbed(model))
    ours = model(X)
    out = save_adapter(tmp_path / "adapter", model, LoraConfig(), {"base_model": "tiny", "loss": "dpo"})
    cfg = json.loads((out / "adapter_config.json").read_text())
    assert cfg["fine_tune_type"] == "lora" and cfg["num_layers"] == 16 and cfg["lora_parameters"]["rank"] == 8
    assert oct(out.stat().st_mode & 0o777) == "0o700"
    assert all(oct(f.stat().st_mode & 0o777) == "0o600" for f in out.iterdir())
    theirs, _ = mlx_lm.load(str(tiny_model_dir), adapter_path=str(out))
    assert mx.allclose(theirs(X), ours, atol=1e-5)
    config, weights, meta = read_adapter(out, model)
    assert config == LoraConfig() and meta["loss"] == "dpo" and set(weights) == set(lora_parameters(model))


def test_read_adapter_errors(tiny_model_dir, tmp_path):
    model, _ = fresh_model(tiny_model_dir)
    out = save_adapter(tmp_path / "a", model, LoraConfig(), {})
    data = (out / "adapters.safetensors").read_bytes()
    (out / "adapters.safetensors").write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(ASLSError, match="corrupt or truncated"):
        read_adapter(out)
    (out / "adapters.safetensors").write_bytes(b"garbage" * 10)
    with pytest.raises(ASLSError, match="corrupt or truncated"):
        read_adapter(out)
    (out / "adapters.safetensors").unlink()
    with pytest.raises(ASLSError, match="missing adapters.safetensors"):
        read_adapter(out)
    # rank 4 adapter read against a model config of rank 8: the shapes do not fit the declared config
    small, _ = fresh_model(tiny_model_dir, LoraConfig(rank=4))
    out4 = save_adapter(tmp_path / "b", small, LoraConfig(rank=4), {})
    cfg = json.loads((out4 / "adapter_config.json").read_text())
    cfg["lora_parameters"]["rank"] = 8
    (out4 / "adapter_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ASLSError, match="rank 4 but the config says 8"):
        read_adapter(out4, model)


def test_repo_commit_and_corrupt_versions(tiny_model_dir, tmp_path):
    model, _ = fresh_model(tiny_model_dir)
    repo = AdapterRepo(tmp_path / "adapters")
    assert repo.list() == []
    v1 = repo.commit(model, LoraConfig(), {"metrics": {"accuracy": 0.5}}, optimizer_state={"step": mx.array(3)})
    set_lora_weights(model, perturbed(model))
    v2 = repo.commit(model, LoraConfig(), {"metrics": {"accuracy": 0.75}})
    assert (v1, v2) == (1, 2)
    assert [i.metadata["metrics"]["accuracy"] for i in repo.list()] == [0.5, 0.75]
    assert int(repo.optimizer_state(1)["step"].item()) == 3 and repo.optimizer_state(2) is None
    assert oct(repo.path(1).stat().st_mode & 0o777) == "0o700"
    assert oct((repo.root / "last_version").stat().st_mode & 0o777) == "0o600"
    # a damaged version does not read back
    (repo.path(1) / "adapters.safetensors").write_bytes(b"\x00" * 5)
    with pytest.raises(ASLSError):
        repo.load(1, model)
    # a half-written version left by a crash is cleaned up on open and never listed
    (repo.root / ".v3.build-dead").mkdir()
    (repo.root / ".v3.build-dead" / "adapters.safetensors").write_bytes(b"half")
    repo = AdapterRepo(tmp_path / "adapters")
    assert not any(p.name.startswith(".") and "build" in p.name for p in repo.root.iterdir())
    assert [i.version for i in repo.list()] == [1, 2]
    config, weights, _ = repo.load(2, model)
    set_lora_weights(model, weights)
    assert os.listdir(repo.path(2))
    # numbers are never reused after a version is deleted
    import shutil

    shutil.rmtree(repo.path(2))
    assert repo.commit(model, LoraConfig(), {}) == 3


def test_repo_start_removes_what_a_killed_writer_left_but_not_a_live_ones(tmp_path):
    """A kill inside an atomic write leaves a temp file (the high-water mark) or directory; a new
    repository object removes both, unless the process named in it is still writing."""
    import subprocess
    import sys

    root = tmp_path / "adapters"
    root.mkdir()
    (root / ".last_version.tmp-999999999").write_text("3")  # no such pid
    (root / ".v2.tmp-999999998").mkdir()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (root / f".last_version.tmp-{live.pid}").write_text("4")
        AdapterRepo(root)
        assert sorted(p.name for p in root.iterdir()) == [f".last_version.tmp-{live.pid}"]
    finally:
        live.kill()
        live.wait()
