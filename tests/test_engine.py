"""Generation engine on a tiny random model: streaming, max tokens, prompt-cache reuse, truncation."""

import pytest

from asls_mlx.engine import ChatEngine, SamplingOptions
from asls_mlx.errors import ASLSError

GREEDY = SamplingOptions(max_tokens=12, temperature=0.0, repetition_penalty=None)


def _run(engine, messages, options=GREEDY):
    chunks = list(engine.stream(messages, options))
    return [c.token for c in chunks], chunks


def test_stream_yields_tokens_and_stops_at_max_tokens(tiny_model):
    engine = ChatEngine(*tiny_model)
    tokens, chunks = _run(engine, [{"role": "user", "content": "hello there"}])
    assert len(chunks) == 12 and chunks[-1].finish_reason == "length"
    assert all(c.finish_reason is None for c in chunks[:-1])
    assert chunks[0].prompt_tokens > 0 and chunks[0].cached_tokens == 0


def test_sampling_is_reproducible_with_a_seed(tiny_model):
    engine = ChatEngine(*tiny_model)
    opts = SamplingOptions(max_tokens=10, temperature=1.0, top_p=0.9, seed=7)
    first, _ = _run(ChatEngine(*tiny_model), [{"role": "user", "content": "hi"}], opts)
    second, _ = _run(engine, [{"role": "user", "content": "hi"}], opts)
    assert first == second


def test_prompt_cache_reuse_gives_same_tokens_and_computes_fewer(tiny_model):
    cached_engine = ChatEngine(*tiny_model)
    turn1 = [{"role": "user", "content": "what is the weather"}]
    tokens1, _ = _run(cached_engine, turn1)
    answer = cached_engine.tokenizer.decode(tokens1)
    turn2 = turn1 + [{"role": "assistant", "content": answer}, {"role": "user", "content": "and tomorrow then"}]
    tokens2_cached, chunks = _run(cached_engine, turn2)
    tokens2_fresh, fresh_chunks = _run(ChatEngine(*tiny_model), turn2)
    assert tokens2_cached == tokens2_fresh
    assert chunks[0].cached_tokens > 10
    assert chunks[0].prompt_tokens < fresh_chunks[0].prompt_tokens
    assert chunks[0].prompt_tokens + chunks[0].cached_tokens == fresh_chunks[0].prompt_tokens


def test_cache_is_trimmed_when_the_conversation_changes_midway(tiny_model):
    engine = ChatEngine(*tiny_model)
    base = [{"role": "user", "content": "first question here"}]
    _run(engine, base + [{"role": "assistant", "content": "an answer"}, {"role": "user", "content": "second"}])
    # Regenerate-like change: same first turn, different follow-up.
    changed = base + [{"role": "assistant", "content": "another answer"}, {"role": "user", "content": "third"}]
    tokens, chunks = _run(engine, changed)
    fresh, _ = _run(ChatEngine(*tiny_model), changed)
    assert tokens == fresh and chunks[0].cached_tokens > 0


def test_interrupted_stream_leaves_a_consistent_cache(tiny_model):
    engine = ChatEngine(*tiny_model)
    msgs = [{"role": "user", "content": "tell me a story"}]
    stream = engine.stream(msgs, GREEDY)
    partial = [next(stream).token for _ in range(3)]
    stream.close()  # what Ctrl-C does to the generator
    msgs2 = msgs + [{"role": "assistant", "content": engine.tokenizer.decode(partial)}, {"role": "user", "content": "go on"}]
    tokens, _ = _run(engine, msgs2)
    assert tokens == _run(ChatEngine(*tiny_model), msgs2)[0]


def test_long_history_is_truncated_to_the_context_window(tiny_model):
    engine = ChatEngine(*tiny_model, context_window=200)
    msgs = []
    for i in range(20):
        msgs += [{"role": "user", "content": f"question number {i} " * 3}, {"role": "assistant", "content": "ok " * 5}]
    msgs.append({"role": "user", "content": "last one"})
    ids, truncated = engine.encode_chat(msgs, reserve=12)
    assert truncated and len(ids) <= 188
    _, chunks = _run(engine, msgs)
    assert chunks[0].truncated and len(chunks) == 12


def test_request_must_end_with_user_message(tiny_model):
    engine = ChatEngine(*tiny_model)
    with pytest.raises(ASLSError):
        list(engine.stream([{"role": "assistant", "content": "hi"}]))


def test_batch_completion_matches_single_greedy(tiny_model):
    engine = ChatEngine(*tiny_model)
    convs = [[{"role": "user", "content": "hello there"}], [{"role": "user", "content": "a different and longer question"}]]
    batched = engine.complete_batch(convs, GREEDY, k=2)
    assert [len(x) for x in batched] == [2, 2]
    for conv, answers in zip(convs, batched):
        single = ChatEngine(*tiny_model).complete(conv, GREEDY)
        assert answers[0] == answers[1] == single


def test_mixed_requests_decode_together_with_their_own_options(tiny_model):
    """Greedy and sampled rows in one batch: each row keeps its own sampler and length."""
    engine = ChatEngine(*tiny_model)
    convs = [[{"role": "user", "content": q}] for q in ("hello there", "what is the weather", "tell me a story")]
    greedy = SamplingOptions(max_tokens=6, temperature=0.0)
    sampled = SamplingOptions(max_tokens=14, temperature=1.0, top_p=0.9, seed=3)
    alone = engine.complete_requests([(c, greedy) for c in convs])
    mixed = engine.complete_requests([(convs[0], sampled), (convs[1], sampled)] + [(c, greedy) for c in convs])
    assert mixed[2:] == alone
    again = engine.complete_requests([(convs[0], sampled), (convs[1], sampled)] + [(c, greedy) for c in convs])
    assert again == mixed  # seeded
    tokens = [len(engine.tokenizer.encode(t, add_special_tokens=False)) for t in mixed]
    assert max(tokens[2:]) <= 7 and max(tokens[:2]) > 7  # each row's own max_tokens


def test_the_repetition_penalty_sees_the_cached_prompt_too(tiny_model, monkeypatch):
    """An answer must not depend on how much of its prompt came from the cache: the penalty looks back
    over the whole context. Before, it saw only the uncached tokens, so the same request answered again
    (a regeneration) or continued differed from the request answered fresh (seen on the embedded model)."""
    import numpy as np

    from asls_mlx.engine import samplers

    seen = []
    window = samplers.RepetitionPenalty.window
    monkeypatch.setattr(samplers.RepetitionPenalty, "window", lambda self, tokens: seen.append(window(self, tokens)) or seen[-1])
    penalised = SamplingOptions(max_tokens=4, temperature=0.0, repetition_penalty=1.3, repetition_context=64)
    turn = [{"role": "user", "content": "a question long enough to fill the penalty's window of recent tokens"}]
    engine = ChatEngine(*tiny_model)
    _run(engine, turn, penalised)
    first_fresh = seen[0]
    seen.clear()
    _, chunks = _run(engine, turn, penalised)  # the same request again: all but one prompt token cached
    assert chunks[0].cached_tokens > 10 and seen[0] == first_fresh and len(first_fresh) == 64
    # and the processor with a history penalises as the plain one does over history + tokens
    rows = np.repeat(np.random.default_rng(0).normal(size=(1, 300)).astype(np.float32), 2, axis=0)
    samplers.RepetitionPenalty(2.0, 8, history=[1, 2, 3, 4, 5, 6, 7]).host([7, 9, 11], rows[0])
    samplers.RepetitionPenalty(2.0, 8).host([1, 2, 3, 4, 5, 6, 7, 7, 9, 11], rows[1])
    assert np.array_equal(rows[0], rows[1])
