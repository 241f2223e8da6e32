"""The CPU backend's batched NumPy generation gives, row by row, what mlx-lm's own one-sequence loop gives."""

import mlx.core as mx
import mlx_lm
import numpy as np
import pytest
from mlx_lm.generate import generate_step
from mlx_lm.sample_utils import make_logits_processors, make_sampler

from asls_mlx.adaptation.lora import LoraConfig, attach_lora, lora_parameters, set_lora_weights
from asls_mlx.engine import ChatEngine, SamplingOptions, samplers
from asls_mlx.engine.backend import Row
from asls_mlx.engine.backend_choice import release_backend, use_backend
from asls_mlx.engine.cpu import CpuBackend, batch_answers, numpy_forward
from asls_mlx.engine.samplers import RepetitionPenalty

SHARED = [5, 9, 33, 60, 7]
PROMPTS = [SHARED + [81, 14, 2], SHARED + [81, 14, 2], SHARED + [120, 3], SHARED + [44] * 9, [17, 2, 8]]
GREEDY = make_sampler(temp=0.0)


@pytest.fixture()
def fast_model(tiny_model_dir):
    model, tokenizer = mlx_lm.load(str(tiny_model_dir))
    use_backend(model, CpuBackend())
    attach_lora(model, LoraConfig(num_layers=2))
    mx.random.seed(4)
    set_lora_weights(model, {k: v + 0.1 * mx.random.normal(v.shape) for k, v in lora_parameters(model).items()})
    assert numpy_forward.supports(model)
    yield model, tokenizer
    release_backend(model)


def _mlx_lm_tokens(model, prompt, max_tokens, processors=()):
    """mlx-lm's one-sequence loop (MLX forward, its own cache): the reference."""
    steps = generate_step(mx.array(prompt), model, max_tokens=max_tokens, sampler=GREEDY, logits_processors=list(processors))
    return [int(t) for t, _ in steps]


def _expected(reference, max_tokens, stop):
    out = []
    for t in reference[:max_tokens]:
        if t in stop:
            break
        out.append(t)
    return out


def _penalty(kind: str):
    if kind == "mlx-lm":  # an MLX processor: called on MLX rows as mlx-lm's loops call it
        return make_logits_processors(repetition_penalty=1.3, repetition_context_size=8)
    return [RepetitionPenalty(1.3, 8)] if kind == "ours" else []  # ours: applied to NumPy rows (``host``)


@pytest.mark.parametrize("penalty,prefill_rows,greedy", [
    ("none", 2048, GREEDY), ("mlx-lm", 2048, GREEDY), ("ours", 2048, GREEDY), ("none", 4, GREEDY),
    ("ours", 2048, samplers.make_sampler(0.0)),  # ours: sampled on the NumPy rows (``host``)
])
def test_greedy_rows_equal_one_sequence_generation(fast_model, penalty, prefill_rows, greedy, monkeypatch):
    """Uneven prompts (a shared prefix, a repeated prompt, one with nothing shared), uneven lengths,
    and stop tokens that end rows early, so the batch shrinks while the others go on; the distinct
    prompts prefilled as one stack of rows, or a few at a time."""
    monkeypatch.setattr(batch_answers, "PREFILL_ROWS", prefill_rows)
    stacks = []
    real = batch_answers._prefill_suffixes
    monkeypatch.setattr(batch_answers, "_prefill_suffixes", lambda m, s, *a: stacks.append(len(s)) or real(m, s, *a))
    model, _ = fast_model
    processors = _penalty(penalty)
    lengths = [20, 9, 16, 3, 20]
    references = [_mlx_lm_tokens(model, p, 20, _penalty("mlx-lm" if penalty != "none" else "none")) for p in PROMPTS]
    stop = {references[1][4], references[3][1]}  # a fifth and a second token: rows end at different steps
    rows = [Row(p, n, greedy, processors) for p, n in zip(PROMPTS, lengths)]
    got = batch_answers.generate(model, rows, stop)
    assert got == [_expected(r, n, stop) for r, n in zip(references, lengths)]
    assert stacks == ([4] if prefill_rows > 100 else [1, 1, 1, 1])  # the distinct prompts, together or one by one
    assert len({len(g) for g in got}) >= 3
    # in batches of two rows: each batch prefilled and decoded on its own
    assert batch_answers.generate(model, rows, stop, batch_rows=2) == got


@pytest.mark.parametrize("make", [make_sampler, samplers.make_sampler])  # mlx-lm's (MLX rows), ours (NumPy rows)
def test_sampled_rows_draw_from_each_rows_own_top_k(fast_model, make):
    """Sampled and greedy rows in one batch, with different samplers: each sampled token is among the
    top k of the model's distribution for that row's context, and greedy rows stay greedy."""
    model, _ = fast_model
    k = 5
    sampler = make(temp=1.0, top_k=k)
    rows = [Row(p, 12, sampler) for p in PROMPTS[:3]] + [Row(PROMPTS[3], 12, make(temp=0.0))]
    mx.random.seed(0)
    got = batch_answers.generate(model, rows, set())
    assert got[3] == _mlx_lm_tokens(model, PROMPTS[3], 12)
    for prompt, tokens in zip(PROMPTS[:3], got[:3]):
        logits = np.asarray(model(mx.array([prompt + tokens]))[0, len(prompt) - 1 : -1])
        top = np.argsort(-logits, axis=-1)[:, :k]
        assert all(t in row for t, row in zip(tokens, top))
    assert got[0] != got[1]  # same prompt, independent draws
    mx.random.seed(0)
    assert batch_answers.generate(model, rows, set()) == got


def test_complete_requests_take_the_host_path_with_the_same_answers(fast_model, monkeypatch):
    model, tokenizer = fast_model
    engine = ChatEngine(model, tokenizer)
    convs = [[{"role": "user", "content": q}] for q in ("hello there", "what is the weather", "tell me a story")]
    greedy = SamplingOptions(max_tokens=10, temperature=0.0)
    calls = []
    real = batch_answers.generate
    monkeypatch.setattr(batch_answers, "generate", lambda *a, **k: calls.append(1) or real(*a, **k))
    host = engine.complete_requests([(c, greedy) for c in convs])
    assert calls and all(host)
    use_backend(model, CpuBackend(numpy_decode=False))  # mlx-lm's BatchGenerator, with the CPU kernels
    assert engine.complete_requests([(c, greedy) for c in convs]) == host
    assert len(calls) == 1


def test_prompts_longer_than_the_first_cache_buffer(fast_model):
    """A 300-token shared prefix: the prefix cache grows past its first 256 positions before the
    prompts' own tokens are appended to each copy."""
    model, _ = fast_model
    prefix = [(7 * i) % 200 + 1 for i in range(300)]
    prompts = [prefix + [12, 5], prefix + [90]]
    rows = [Row(p, 6, GREEDY) for p in prompts]
    assert batch_answers.generate(model, rows, set()) == [_mlx_lm_tokens(model, p, 6) for p in prompts]


def test_an_empty_prompt_is_refused(fast_model):
    model, _ = fast_model
    with pytest.raises(ValueError, match="at least one token"):
        batch_answers.generate(model, [Row([], 4, GREEDY)], set())


def test_rows_beyond_the_kv_budget_are_batched_by_length(fast_model, monkeypatch):
    """A long prompt among short ones: with a KV budget the batch cannot hold, the rows are split
    into batches of similar lengths that each fit it, and every row gets the same greedy answer."""
    model, _ = fast_model
    long_prompt = [(5 * i) % 150 + 1 for i in range(60)]
    prompts = PROMPTS + [long_prompt, PROMPTS[0] + [3]]
    rows = [Row(p, 8, GREEDY) for p in prompts]
    together = batch_answers.generate(model, rows, set())
    per_position = batch_answers._kv_bytes_per_position(model)
    head_dim = model.args.hidden_size // model.args.num_attention_heads
    assert per_position == 2 * 4 * len(model.model.layers) * model.args.num_key_value_heads * head_dim
    budget = len(long_prompt) + 8  # positions: the long row alone, or a few short ones, per batch
    monkeypatch.setattr(batch_answers, "KV_BUDGET", budget * per_position)
    seen = []
    real = batch_answers._generate_batch
    monkeypatch.setattr(batch_answers, "_generate_batch", lambda m, r, s: seen.append(r) or real(m, r, s))
    assert batch_answers.generate(model, rows, set()) == together
    assert len(seen) >= 3 and sorted(len(p) for b in seen for p in (r.prompt for r in b)) == sorted(map(len, prompts))
    assert all(len(b) * batch_answers._length(b) <= budget for b in seen if len(b) > 1)
    assert [r.prompt for r in seen[-1]] == [long_prompt]  # longest last, alone


def test_rows_decoded_with_their_own_adapter_weights_equal_each_set_swapped_in(fast_model):
    """The commit gate's new, old and base answers in one batch (``Row.lora``): each row as if its weights were the
    model's (mlx-lm's loop with them swapped in); rows of every set end at different steps, so the batch shrinks
    with the sets mixed. The pure-MLX path (``decode_by_lora``: set by set, swapped in) gives the same tokens, and
    the model's own weights are back afterwards."""
    from asls_mlx.engine.mlx_backend import MlxBackend

    model, _ = fast_model
    current = dict(lora_parameters(model))
    mx.random.seed(7)
    other = {k: v + 0.1 * mx.random.normal(v.shape) for k, v in current.items()}
    sets = [None, {}, other]  # the model's own weights, the base model (no adapter), another adapter
    references = []
    for i, prompt in enumerate(PROMPTS * 2):
        lora = sets[i % 3]
        set_lora_weights(model, current if lora is None else lora or {k: v * (0 if k.endswith("lora_b") else 1)
                                                                         for k, v in current.items()})
        references.append(_mlx_lm_tokens(model, prompt, 12))
    set_lora_weights(model, current)
    assert len({tuple(r) for r in references[:3]}) == 3  # the sets answer the same prompt differently
    stop = {references[2][3], references[4][6]}
    rows = [Row(p, 12, GREEDY, (), sets[i % 3]) for i, p in enumerate(PROMPTS * 2)]
    expected = [_expected(r, 12, stop) for r in references]
    assert len({len(e) for e in expected}) >= 3
    assert batch_answers.generate(model, rows, stop) == expected
    assert MlxBackend().generate_batch(model, rows, stop) == expected
    assert all(mx.array_equal(v, lora_parameters(model)[k]).item() for k, v in current.items())
    assert batch_answers.generate(model, [Row(p, 12, GREEDY) for p in PROMPTS], stop) == expected[0:1] + [
        _expected(_mlx_lm_tokens(model, p, 12), 12, stop) for p in PROMPTS[1:]]


def test_chat_engine_decodes_requests_with_their_adapter_weights(fast_model):
    from asls_mlx.engine.mlx_backend import MlxBackend

    model, tokenizer = fast_model
    engine = ChatEngine(model, tokenizer)
    opts = SamplingOptions(max_tokens=8, temperature=0.0)
    convs = [[{"role": "user", "content": q}] for q in ("hello there", "how are you")]
    mixed = engine.complete_batch(convs, opts, loras=[{}, None])
    current = dict(lora_parameters(model))
    set_lora_weights(model, {k: v * (0 if k.endswith("lora_b") else 1) for k, v in current.items()})
    base = engine.complete_batch(convs, opts)
    set_lora_weights(model, current)
    assert mixed == [base[0], engine.complete_batch(convs, opts)[1]]
    with pytest.raises(ValueError, match="2 adapter weight sets for 1 requests"):
        engine.complete_requests([(convs[0], opts)], loras=[None, {}])
    foreign = {"model.layers.99.mlp.up_proj.lora_a": mx.zeros((4, 4))}  # another model's (or layout's) weights
    for backend in (CpuBackend(), MlxBackend()):
        with pytest.raises(ValueError, match="not adapter weights of this model: \\['model.layers.99"):
            backend.generate_batch(model, [Row([5, 9], 4, GREEDY, (), foreign), Row([5, 9], 4, GREEDY)], set())
