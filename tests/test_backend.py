"""One backend per model, chosen once: the CPU backend on MLX's CPU device, pure MLX with
ASLS_FAST_KERNELS=off (and on a GPU). The chat, the log-prob code and the samplers ask it."""

import mlx.core as mx
import mlx_lm
import numpy as np
import pytest

from asls_mlx.adaptation.batching import collate
from asls_mlx.adaptation.logprobs import answer_logps, next_token_logps
from asls_mlx.engine import ChatEngine, SamplingOptions, load_model
from asls_mlx.engine.backend_choice import backend_of, release_backend, select_backend, use_backend
from asls_mlx.engine.cpu import CpuBackend, batch_answers, patches, stream_decode
from asls_mlx.engine.mlx_backend import MlxBackend
from asls_mlx.engine.samplers import TopKSampler

GREEDY = SamplingOptions(max_tokens=12, temperature=0.0)
CONVS = [[{"role": "user", "content": q}] for q in ("hello there", "what is the weather", "tell me a story")]


@pytest.fixture()
def model(tiny_model_dir):
    """A model of its own, given back to pure MLX (its mlx-lm module too) afterwards."""
    model, tokenizer = mlx_lm.load(str(tiny_model_dir))
    yield model, tokenizer
    release_backend(model)


def test_the_rule_cpu_kernels_on_the_cpu_unless_switched_off(monkeypatch):
    monkeypatch.delenv("ASLS_FAST_KERNELS", raising=False)
    assert isinstance(select_backend(mx.Device(mx.cpu)), CpuBackend)
    assert isinstance(select_backend(mx.Device(mx.gpu)), MlxBackend)  # Metal, CUDA
    for off in ("off", "0", "False"):
        monkeypatch.setenv("ASLS_FAST_KERNELS", off)
        assert isinstance(select_backend(mx.Device(mx.cpu)), MlxBackend)


def test_load_model_chooses_once_and_the_pure_mlx_backend_changes_nothing(tiny_model_dir):
    model, _, _ = load_model(str(tiny_model_dir), progress=lambda m: None)
    try:
        chosen = backend_of(model)
        assert type(chosen) is type(select_backend()) and backend_of(model) is chosen
        assert patches.installed(model) == isinstance(chosen, CpuBackend)
        use_backend(model, MlxBackend())
        assert not patches.installed(model) and isinstance(backend_of(model), MlxBackend)
    finally:
        release_backend(model)


def test_a_model_loaded_elsewhere_computes_with_the_rules_backend_as_loaded(model):
    model, tokenizer = model
    patches.uninstall(model)  # its mlx-lm module as loaded, whatever earlier tests did
    assert type(backend_of(model)) is type(select_backend())
    ChatEngine(model, tokenizer).complete(CONVS[0], GREEDY)
    assert not patches.installed(model) or not isinstance(backend_of(model), CpuBackend)


class _Recording(MlxBackend):
    """The pure-MLX backend, counting what its clients ask of it."""

    def __init__(self):
        self.asked: list[str] = []

    def logsumexp(self, x, axis=-1, keepdims=False):
        self.asked.append("logsumexp")
        return super().logsumexp(x, axis, keepdims)

    def stream_generate(self, *a, **k):
        self.asked.append("stream")
        return super().stream_generate(*a, **k)

    def generate_batch(self, *a, **k):
        self.asked.append("batch")
        return super().generate_batch(*a, **k)


def test_chat_and_log_probs_ask_the_models_backend(model):
    model, tokenizer = model
    recording = use_backend(model, _Recording())
    engine = ChatEngine(model, tokenizer)
    engine.complete(CONVS[0], GREEDY)
    engine.complete_requests([(c, GREEDY) for c in CONVS])
    b = collate([((1, 2, 3), (4, 5)), ((6, 7), (8, 9, 10))], bucket=4)
    answer_logps(model, *b.arrays())
    assert recording.asked[:2] == ["stream", "batch"] and "logsumexp" in recording.asked[2:]


def _answers(engine, sampled):
    stream = [c.token for c in engine.stream(CONVS[1], GREEDY)]
    return stream, engine.complete_requests([(c, GREEDY) for c in CONVS] + [(CONVS[0], sampled)])


def test_both_backends_give_the_same_greedy_answers_and_log_probs(model, monkeypatch):
    """Pure MLX (what Metal runs, and the CPU with ASLS_FAST_KERNELS=off) and the CPU backend:
    the same greedy tokens, log-probs to float32 tolerance; the pure-MLX one never enters NumPy code."""
    model, tokenizer = model
    sampled = SamplingOptions(max_tokens=8, temperature=0.9, top_k=20, seed=1)
    b = collate([((1, 2, 3, 9), (4, 5)), ((6, 7), (8, 9, 10))], bucket=4)
    tokens = mx.array([[3, 8, 21, 5, 60, 7], [9, 9, 40, 2, 11, 6]])
    results = {}
    for backend in (CpuBackend(), MlxBackend()):
        use_backend(model, backend)
        results[backend.name] = (_answers(ChatEngine(model, tokenizer), sampled), answer_logps(model, *b.arrays()),
                                 next_token_logps(model, tokens[:, :-1], tokens[:, 1:]))
        fail = lambda *a, **k: pytest.fail("NumPy code under the pure-MLX backend")  # noqa: E731
        monkeypatch.setattr(stream_decode, "stream_generate", fail)
        monkeypatch.setattr(batch_answers, "generate", fail)
    (cpu_answers, cpu_logps, cpu_next), (mlx_answers, mlx_logps, mlx_next) = results["cpu"], results[MlxBackend().name]
    assert cpu_answers[0] == mlx_answers[0] and cpu_answers[1][:3] == mlx_answers[1][:3]
    assert np.allclose(np.asarray(cpu_logps), np.asarray(mlx_logps), atol=1e-4, rtol=1e-4)
    assert np.allclose(np.asarray(cpu_next), np.asarray(mlx_next), atol=1e-4, rtol=1e-4)


def test_samplers_find_candidates_as_the_backend_says(model):
    model, tokenizer = model
    options = SamplingOptions(temperature=0.8, top_k=20)
    from asls_mlx.engine.generate import _sampler

    for backend in (CpuBackend(), MlxBackend()):
        sampler = _sampler(options, use_backend(model, backend))
        assert isinstance(sampler, TopKSampler) and sampler.host_top_k == backend.host_top_k
