"""The CPU backend's NumPy steps give MLX's logits and leave mlx-lm's KV cache exactly as an MLX step would;
its chat loop yields what mlx-lm's loop yields."""

import mlx.core as mx
import mlx.nn as nn
import mlx_lm
import numpy as np
import pytest
from mlx_lm.models.cache import make_prompt_cache

from asls_mlx.adaptation.lora import LoraConfig, attach_lora, lora_parameters, set_lora_weights
from asls_mlx.engine.backend_choice import backend_of, release_backend, use_backend
from asls_mlx.engine.cpu import CpuBackend, numpy_forward, stream_decode
from asls_mlx.engine.generate import ChatEngine, SamplingOptions

PROMPT = [5, 9, 33, 60, 7, 81, 14, 2]


@pytest.fixture()
def fast_model(tiny_model_dir):
    """A model on the CPU backend (whatever ``ASLS_FAST_KERNELS`` says), given back to pure MLX afterwards."""
    model, tokenizer = mlx_lm.load(str(tiny_model_dir))
    use_backend(model, CpuBackend())
    yield model, tokenizer
    release_backend(model)


def _with_lora(model):
    attach_lora(model, LoraConfig(num_layers=-1))
    mx.random.seed(4)
    set_lora_weights(model, {k: v + 0.1 * mx.random.normal(v.shape) for k, v in lora_parameters(model).items()})
    return model


def _host_step(model, token, cache):
    return numpy_forward.forward_tokens(model, np.array([token]), cache)


def _decode(model, step, tokens=(12, 3, 44, 200, 7), prompt=PROMPT):
    cache = make_prompt_cache(model)
    model(mx.array([prompt]), cache=cache)
    logits = [step(model, t, cache) for t in tokens]
    return mx.concatenate([x.reshape(1, -1) for x in logits]), cache


@pytest.mark.parametrize("lora", [False, True])
def test_decode_steps_equal_mlx_steps_and_cache(fast_model, lora):
    model, _ = fast_model
    model = _with_lora(model) if lora else model
    assert numpy_forward.supports(model)
    mlx_logits, mlx_cache = _decode(model, lambda m, t, c: m(mx.array([[t]]), cache=c))
    host_logits, host_cache = _decode(model, _host_step)
    assert np.allclose(np.asarray(host_logits), np.asarray(mlx_logits), atol=1e-4, rtol=1e-4)
    for a, b in zip(host_cache, mlx_cache):
        assert a.offset == b.offset == len(PROMPT) + 5
        assert np.allclose(np.asarray(a.keys[..., : a.offset, :]), np.asarray(b.keys[..., : b.offset, :]), atol=1e-4, rtol=1e-4)
        assert np.allclose(np.asarray(a.values[..., : a.offset, :]), np.asarray(b.values[..., : b.offset, :]), atol=1e-4, rtol=1e-4)


def test_decode_steps_across_a_cache_growth(fast_model):
    """mlx-lm's KVCache grows in blocks of 256 positions: steps written in place, then a grown buffer."""
    model, _ = fast_model
    prompt = [(7 * i) % 200 + 1 for i in range(253)]
    mlx_logits, mlx_cache = _decode(model, lambda m, t, c: m(mx.array([[t]]), cache=c), prompt=prompt)
    host_logits, host_cache = _decode(model, _host_step, prompt=prompt)
    assert host_cache[0].keys.shape[2] == 512 and host_cache[0].offset == 258
    assert np.allclose(np.asarray(host_logits), np.asarray(mlx_logits), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("lora,query_rows", [(False, 256), (True, 256), (True, 16)])
def test_prompt_chunks_equal_mlx_prefill_and_cache(fast_model, lora, query_rows, monkeypatch):
    """Several positions at once (prefill), on an empty cache, on a filled one, and across a growth;
    with attention over all of a chunk's queries at once and in blocks of 16."""
    monkeypatch.setattr(numpy_forward, "_QUERY_ROWS", query_rows)
    model, _ = fast_model
    model = _with_lora(model) if lora else model
    # 8, 2, 40 and 230 rows (transposed GEMMs in ``_linear``)
    chunks = [PROMPT, [11, 4], [(5 * i) % 150 + 3 for i in range(40)], [(3 * i) % 190 + 1 for i in range(230)]]
    caches = [make_prompt_cache(model) for _ in range(2)]
    for chunk in chunks:
        want = model(mx.array([chunk]), cache=caches[0])[:, -1:]
        got = numpy_forward.forward_tokens(model, np.array(chunk), caches[1])
        assert got.shape == want.shape
        assert np.allclose(np.asarray(got), np.asarray(want), atol=1e-4, rtol=1e-4)
    a, b = caches[1][-1], caches[0][-1]
    assert a.offset == b.offset == sum(map(len, chunks)) and a.keys.shape == b.keys.shape
    for x, y in ((a.keys, b.keys), (a.values, b.values)):
        x, y = np.asarray(x[..., : a.offset, :]), np.asarray(y[..., : b.offset, :])
        # float32 sums in another order, over 30 blocks of perturbed LoRA: relative to the scale
        assert np.abs(x - y).max() <= 1e-4 * np.abs(y).max()


@pytest.mark.parametrize("options", [
    SamplingOptions(max_tokens=16, temperature=0.0),
    SamplingOptions(max_tokens=12, temperature=0.9, top_k=20, seed=3, repetition_penalty=1.3),
], ids=["greedy", "sampled"])
def test_chat_turns_give_the_same_tokens_with_and_without_host_steps(fast_model, monkeypatch, options):
    """Our host loop (no lookahead) yields what mlx-lm's loop yields: tokens, text, finish reasons."""
    model, tokenizer = fast_model
    _with_lora(model)
    turn1 = [{"role": "user", "content": "what is the weather"}]

    def two_turns():
        engine = ChatEngine(model, tokenizer)
        first = list(engine.stream(turn1, options))
        turn2 = turn1 + [{"role": "assistant", "content": tokenizer.decode([c.token for c in first])},
                         {"role": "user", "content": "and then"}]
        chunks = list(engine.stream(turn2, options))  # reuses (and trims) the cache the host steps filled
        return ([(c.token, c.text, c.finish_reason) for c in first], [(c.token, c.text, c.finish_reason) for c in chunks],
                chunks[0].cached_tokens)

    calls = []
    real = stream_decode.last_logits
    monkeypatch.setattr(stream_decode, "last_logits", lambda m, t, c: calls.append(len(t)) or real(m, t, c))
    host = two_turns()
    assert calls.count(1) >= 20 and max(calls) > 5 and host[2] > 10  # steps and prompt chunks
    calls.clear()
    use_backend(model, CpuBackend(numpy_decode=False))  # mlx-lm's loop, with the CPU kernels
    assert two_turns() == host and not calls


class _ScaledRoPE(nn.RoPE):
    """A RoPE variant the NumPy forward does not implement (its type is not ``nn.RoPE``)."""


def test_unsupported_models_keep_the_mlx_path(fast_model, monkeypatch):
    model, tokenizer = fast_model
    assert numpy_forward.supports(model) and isinstance(backend_of(model), CpuBackend)
    attn = model.model.layers[0].self_attn
    attn.rope = _ScaledRoPE(attn.rope.dims, attn.rope.traditional, attn.rope.base, attn.rope.scale)
    assert not numpy_forward.supports(model)
    monkeypatch.setattr(stream_decode, "stream_generate", lambda *a, **k: pytest.fail("NumPy loop on an unsupported model"))
    chunks = list(ChatEngine(model, tokenizer).stream([{"role": "user", "content": "hi"}], SamplingOptions(max_tokens=4)))
    assert len(chunks) == 4

