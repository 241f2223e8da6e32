"""Answer-only log-probs, reference cache, compiled trainer, resume, gate — on the tiny model."""

import math

import asls_mlx  # noqa: F401
import mlx.core as mx
import mlx.nn as nn
import pytest
from mlx.utils import tree_flatten

from adaptation_fixtures import TOPICS, fresh_model, short_pairs
from asls_mlx.adaptation import prefix_cache
from asls_mlx.adaptation.batching import BUCKET, batch_schedule, collate, encode_pairs, pair_rows, truncate
from asls_mlx.adaptation.gate import heldout_harm, sign_test_p, gate
from asls_mlx.adaptation.validation import preference_metrics, retention_perplexity
from asls_mlx.adaptation.logprobs import fast_answer_logps, naive_answer_logps, reference_logps, uses_answer_only
from asls_mlx.adaptation.lora import LoraConfig, adapter_disabled, lora_parameters, set_lora_weights
from asls_mlx.adaptation.trainer import TrainingArgs, adapt_schedule, train_on_pairs
from asls_mlx.adaptation.versions import AdapterRepo
from asls_mlx.errors import ASLSError
from asls_mlx.store import PreferencePair

GENERAL = ["The river runs to the sea and the sea is wide.", "Bread is made of flour, water and salt."]
TRAIN, HELD_OUT = TOPICS[:8], TOPICS[8:]
EXTRA_HELD_OUT = ["lamps", "rivers", "kites", "songs"]


def args(**kw):
    base = dict(max_steps=4, lr=1e-3, time_limit_s=1e9, batch_size=4)
    base.update(kw)
    return TrainingArgs(**base)


def perturb(model, seed=3):
    mx.random.seed(seed)
    set_lora_weights(model, {k: v + 0.05 * mx.random.normal(v.shape) for k, v in lora_parameters(model).items()})


def test_a_long_answer_with_a_changed_end_keeps_its_difference_when_truncated(tiny_model_dir):
    """A closing question added to a full-length answer: cut to the answers' heads, chosen and rejected were the
    same tokens. The shared head becomes context; the pair's rows still spell prompt + whole answer where they fit."""
    _, tok = fresh_model(tiny_model_dir, None)
    long = " ".join(f"Step {i}: stir the pot and wait." for i in range(40))
    pair = PreferencePair("How do I make soup?", long + "\n\nWould you like a recipe for bread too?", long, "edit", 1.0)
    enc = encode_pairs(tok, [pair], max_length=64)[0]
    assert enc.chosen != enc.rejected and len(enc.prompt) + len(enc.chosen) <= 64
    assert "Would you like a recipe" in tok.decode(list(enc.chosen)) and list(enc.rejected) == [tok.eos_token_id]
    assert tok.decode(list(enc.prompt)).endswith("stir the pot and wait.")  # the context ends where they part
    short = PreferencePair("How do I make soup?", "Stir and wait.\n\nWant bread too?", "Stir and wait.", "edit", 1.0)
    fits = encode_pairs(tok, [short], max_length=64)[0]
    assert tok.decode(list(fits.chosen)).startswith("Stir and wait.")  # a pair that fits is encoded as it is
    changed = encode_pairs(tok, [short], max_length=64, shared_head=True)[0]  # LearningConfig.sft_on_change
    assert "Want bread too?" in tok.decode(list(changed.chosen)) and "Stir" not in tok.decode(list(changed.chosen))
    assert tok.decode(list(changed.prompt)).endswith("Stir and wait.") and list(changed.rejected) == [tok.eos_token_id]
    cut = PreferencePair("How do I make soup?", "Stir and wait.", "Stir and wait.\n\nThen taste it.", "edit", 1.0)
    kept = encode_pairs(tok, [cut], max_length=64, shared_head=True)[0]  # an answer cut short: nothing added to it
    assert tok.decode(list(kept.chosen)).startswith("Stir and wait.")
    rewrite = PreferencePair("How do I make soup?", "Stir and wait. Serve it hot.", "Stir and wait. Then taste it.",
                             "edit", 1.0)
    whole = encode_pairs(tok, [rewrite], max_length=64, shared_head=True)[0]  # a rewrite: its whole text teaches
    assert tok.decode(list(whole.chosen)).startswith("Stir and wait.")


def test_the_shared_head_as_context_leaves_the_dpo_margin_as_it_was(tiny_model_dir):
    """``sft_on_change`` changes the SFT term's target only: a shared head's log-ratios cancel in DPO's margin."""
    from asls_mlx.adaptation.logprobs import pairs_logps

    model, tok = fresh_model(tiny_model_dir, LoraConfig(rank=4))
    perturb(model)
    pair = PreferencePair("How do I make soup?", "Stir and wait. Then taste it.\n\nWant bread too?",
                          "Stir and wait. Then taste it.\n\nServe it cold.", "edit", 1.0)

    def margin(shared_head):
        enc = encode_pairs(tok, [pair], max_length=512, shared_head=shared_head)[0]
        rows = [(enc.prompt, enc.chosen, enc.rejected)]
        pc, pr = pairs_logps(model, rows).tolist()
        with adapter_disabled(model):
            rc, rr = pairs_logps(model, rows).tolist()
        return (pc - rc) - (pr - rr), len(enc.chosen)

    (whole, n_whole), (changed, n_changed) = margin(False), margin(True)
    assert n_changed < n_whole and abs(whole) > 1e-4
    assert changed == pytest.approx(whole, abs=1e-3)


def test_free_openings_leave_an_anchors_first_answer_tokens_out_of_the_retention_term(tiny_model_dir):
    from asls_mlx.adaptation.batching import free_openings, text_batch

    _, tok = fresh_model(tiny_model_dir, None)
    turn = tok.apply_chat_template([{"role": "user", "content": "List three fruits."},
                                    {"role": "assistant", "content": "Apples, pears and plums are fruits."}],
                                   tokenize=False)
    tokens, mask = text_batch(tok, [GENERAL[0], turn], 160)
    freed = free_openings(tok, tokens, mask, 3)
    assert freed[0].tolist() == mask[0].tolist()  # general text: no chat turn, nothing freed
    gone = [j for j, (a, b) in enumerate(zip(mask[1].tolist(), freed[1].tolist())) if a != b]
    assert len(gone) == 3 and gone == list(range(gone[0], gone[0] + 3))
    predicted = tok.decode(tokens[1].tolist()[gone[0] + 1:gone[-1] + 2])  # column t predicts token t + 1
    assert "Apples, pears and plums".startswith(predicted.strip()) and predicted.strip()


def test_batching_truncates_buckets_and_masks_answers_only(tiny_model_dir):
    _, tok = fresh_model(tiny_model_dir, None)
    p, a = truncate(list(range(100)), list(range(1000, 1100)), 64)
    assert p == list(range(68, 100)) and a == list(range(1000, 1032))
    assert truncate([1, 2], [3], 64) == ([1, 2], [3])
    enc = encode_pairs(tok, short_pairs(TOPICS[:3]), max_length=40)
    assert all(len(e.prompt) + len(e.rejected) <= 40 for e in enc)
    assert all(e.chosen[-1] == tok.eos_token_id for e in enc)
    b = collate(pair_rows(enc))
    assert b.inputs.shape[1] % BUCKET == 0 and b.positions.shape[0] % BUCKET == 0
    n_answer = sum(len(e.chosen) + len(e.rejected) for e in enc)
    assert b.select.sum().item() == n_answer and b.counts.tolist()[0] == len(enc[0].chosen)
    # each gathered position is one whose next token in the full row is that answer token
    rows, width = pair_rows(enc), b.inputs.shape[1]
    pos, tgt = b.positions.tolist()[:n_answer], b.targets.tolist()[:n_answer]
    for (prompt, answer), start in zip(rows, [0] + list(mx.cumsum(b.counts).tolist()[:-1])):
        seq = list(prompt) + list(answer)
        for j in range(int(start), int(start) + len(answer)):
            r, c = divmod(pos[j], width)
            assert seq[c + 1] == tgt[j] and c + 1 >= len(prompt)
    # the batch order is a pure function of (seed, step): resuming sees the same batches
    assert batch_schedule([5, 3, 9, 1, 7], 2, 0, 0, 6)[3:] == batch_schedule([5, 3, 9, 1, 7], 2, 0, 3, 3)


def test_answer_only_logps_and_grads_equal_naive(tiny_model_dir):
    model, tok = fresh_model(tiny_model_dir)
    perturb(model)
    assert uses_answer_only(model)
    b = collate(pair_rows(encode_pairs(tok, short_pairs(TOPICS[:4]))))
    fast, naive = fast_answer_logps(model, *b.arrays()), naive_answer_logps(model, *b.arrays())
    assert mx.allclose(fast, naive, atol=1e-4, rtol=1e-5)

    def loss(fn):
        return lambda m: fn(m, *b.arrays()).sum()

    g_fast = dict(tree_flatten(nn.value_and_grad(model, loss(fast_answer_logps))(model)[1]))
    g_naive = dict(tree_flatten(nn.value_and_grad(model, loss(naive_answer_logps))(model)[1]))
    assert set(g_fast) == set(lora_parameters(model))
    for k in g_fast:
        assert mx.allclose(g_fast[k], g_naive[k], atol=1e-4, rtol=1e-3), k


def test_next_token_logps_and_base_topk_equal_full_log_softmax(tiny_model_dir):
    """Perplexity's per-position log-probs (LM head in vocabulary blocks) and the retention target
    (top k of the logits minus their log-sum-exp) equal what the whole (R, L, V) log-softmax gives."""
    from asls_mlx.adaptation.logprobs import base_topk, full_logps, next_token_logps

    model, _ = fresh_model(tiny_model_dir)
    perturb(model)
    tokens = mx.array([[(7 * i + 3 * r) % 200 + 1 for i in range(24)] for r in range(3)])
    full = full_logps(model, tokens[:, :-1])
    want = mx.take_along_axis(full, tokens[:, 1:, None], axis=-1).squeeze(-1)
    assert mx.allclose(next_token_logps(model, tokens[:, :-1], tokens[:, 1:]), want, atol=1e-4, rtol=1e-5)
    with adapter_disabled(model):
        base = full_logps(model, tokens[:, :-1])
    top, index = base_topk(model, tokens, k=5)
    assert index.dtype == mx.int32 and top.shape == index.shape == (3, 23, 5)
    assert mx.allclose(top, mx.take_along_axis(base, index, axis=-1), atol=1e-5)
    assert mx.allclose(mx.sort(top, axis=-1), mx.sort(base, axis=-1)[..., -5:], atol=1e-5)  # the 5 largest


@pytest.mark.parametrize("bias", [False, True])
def test_vocabulary_blocked_head_equals_full_logits(bias):
    """The LM head in vocabulary blocks: same log-probs and gradients as full logits + logsumexp."""
    from asls_mlx.adaptation.logprobs import _token_logps, _vocab_block, head_token_logps

    mx.random.seed(3)
    rows, vocab = 600, 5000
    assert _vocab_block(rows, vocab) < vocab  # several blocks, the last one partial
    hidden, weight = mx.random.normal((rows, 64)), mx.random.normal((vocab, 64)) * 0.3
    b = mx.random.normal((vocab,)) if bias else None
    targets = mx.random.randint(0, vocab, (rows,))
    w = mx.random.normal((rows,))

    def full(h):
        logits = h @ weight.T + (b if bias else 0.0)
        return (_token_logps(logits, targets) * w).sum()

    v1, g1 = mx.value_and_grad(lambda h: (head_token_logps(h, weight, b, targets) * w).sum())(hidden)
    v2, g2 = mx.value_and_grad(full)(hidden)
    assert abs(v1.item() - v2.item()) <= 1e-5 * abs(v2.item())
    assert mx.allclose(g1, g2, rtol=1e-4, atol=1e-5).item()


def test_cached_reference_logps_equal_recomputed_base(tiny_model_dir):
    model, tok = fresh_model(tiny_model_dir)
    enc = encode_pairs(tok, short_pairs(TOPICS[:5]))
    cache = reference_logps(model, enc[:3])
    perturb(model)  # the adapter is now on and non-trivial: the reference must still be the base
    cache = reference_logps(model, enc, cache)
    assert len(cache) == 5
    with adapter_disabled(model):
        direct = naive_answer_logps(model, *collate(pair_rows(enc)).arrays()).tolist()
    for i, e in enumerate(enc):
        assert math.isclose(cache[e.key][0], direct[i], abs_tol=1e-3)
        assert math.isclose(cache[e.key][1], direct[5 + i], abs_tol=1e-3)
    # cached entries are reused, not recomputed
    cache[enc[0].key] = (123.0, 456.0)
    assert reference_logps(model, enc, cache)[enc[0].key] == (123.0, 456.0)


def test_compiled_step_equals_uncompiled(tiny_model_dir):
    results = []
    for compiled in (True, False):
        model, tok = fresh_model(tiny_model_dir)
        r = train_on_pairs(model, tok, short_pairs(TRAIN), args(max_steps=3, compile=compiled), general_texts=GENERAL)
        results.append((r.losses, lora_parameters(model)))
    (l1, w1), (l2, w2) = results
    assert l1 == pytest.approx(l2, abs=1e-5)
    for k in w1:
        assert mx.allclose(w1[k], w2[k], atol=1e-6), k


def test_dpo_raises_held_out_margin_and_changes_only_lora(tiny_model_dir):
    model, tok = fresh_model(tiny_model_dir)
    base = {k: v for k, v in tree_flatten(model.parameters()) if "lora_" not in k}
    ref = {}
    before = preference_metrics(model, tok, short_pairs(HELD_OUT, "val"), ref)
    progress = []
    r = train_on_pairs(model, tok, short_pairs(TRAIN), args(max_steps=6), general_texts=GENERAL, callback=progress.append)
    after = preference_metrics(model, tok, short_pairs(HELD_OUT, "val"), ref)
    assert r.steps == 6 and r.stopped_reason == "max_steps" and not r.diverged
    assert [p.step for p in progress] == list(range(1, 7)) and progress[-1].total == 6
    assert before["margin"] == pytest.approx(0.0, abs=1e-5) and before["accuracy"] == 0.0
    assert after["margin"] > 0.1 and after["accuracy"] == 1.0
    for k, v in tree_flatten(model.parameters()):
        if "lora_" not in k:
            assert mx.array_equal(v, base[k]), k
    assert any(not mx.array_equal(v, mx.zeros_like(v)) for k, v in lora_parameters(model).items() if k.endswith("lora_b"))
    ret = retention_perplexity(model, tok, GENERAL)
    decision = gate(before, after, ret["ratio"], bound=10.0)
    assert decision.commit, decision.reason


@pytest.mark.parametrize("loss", ["simpo", "orpo", "sft"])
def test_other_losses_train(tiny_model_dir, loss):
    model, tok = fresh_model(tiny_model_dir)
    r = train_on_pairs(model, tok, short_pairs(TRAIN), args(loss=loss, max_steps=3))
    assert r.steps == 3 and all(math.isfinite(x) for x in r.losses)
    assert r.losses[-1] < r.losses[0]


def test_absurd_lr_is_rejected_and_old_version_stays_active(tiny_model_dir, tmp_path):
    """Eight held-out pairs: enough for the gate's sign test to call a collapse harm (1-4 pairs never can)."""
    model, tok = fresh_model(tiny_model_dir)
    repo = AdapterRepo(tmp_path / "adapters")
    train_on_pairs(model, tok, short_pairs(TRAIN), args(max_steps=2))
    good = repo.commit(model, LoraConfig(), {"note": "good"})
    good_weights = lora_parameters(model)
    ref = {}
    before = preference_metrics(model, tok, short_pairs(HELD_OUT + EXTRA_HELD_OUT, "val"), ref)
    r = train_on_pairs(model, tok, short_pairs(TRAIN), args(max_steps=5, lr=1e3, grad_clip=1e9), general_texts=GENERAL)
    after = preference_metrics(model, tok, short_pairs(HELD_OUT + EXTRA_HELD_OUT, "val"), ref)
    ratio = retention_perplexity(model, tok, GENERAL)["ratio"]
    decision = gate(before, after, ratio, diverged=r.diverged)
    assert not decision.commit, decision
    if r.diverged:  # the trainer already put the old weights back
        assert all(mx.array_equal(good_weights[k], v) for k, v in lora_parameters(model).items())
    else:
        set_lora_weights(model, good_weights)
    assert [i.version for i in repo.list()] == [good]  # nothing new was written


def test_resume_from_optimizer_state_equals_uninterrupted(tiny_model_dir):
    whole, tok = fresh_model(tiny_model_dir)
    r = train_on_pairs(whole, tok, short_pairs(TRAIN), args(max_steps=4), general_texts=GENERAL)
    split, _ = fresh_model(tiny_model_dir)
    r1 = train_on_pairs(split, tok, short_pairs(TRAIN), args(max_steps=2), general_texts=GENERAL)
    r2 = train_on_pairs(split, tok, short_pairs(TRAIN), args(max_steps=2, resume_moments=True), general_texts=GENERAL,
                        optimizer_state=r1.optimizer_state, reference_cache=r1.reference_cache)
    assert r1.losses + r2.losses == r.losses
    w_whole, w_split = lora_parameters(whole), lora_parameters(split)
    assert all(mx.array_equal(w_whole[k], w_split[k]) for k in w_whole)
    assert int(r2.optimizer_state["step"].item()) == 4


def test_cancel_and_time_limit(tiny_model_dir):
    model, tok = fresh_model(tiny_model_dir)
    calls = []
    r = train_on_pairs(model, tok, short_pairs(TRAIN), args(max_steps=5), should_stop=lambda: len(calls) >= 2, callback=calls.append)
    assert r.stopped_reason == "cancelled" and r.steps == 2
    r = train_on_pairs(model, tok, short_pairs(TRAIN), args(max_steps=5, time_limit_s=0.0))
    assert r.stopped_reason == "time_limit" and (r.steps, r.planned) == (1, 5)  # the first step always runs
    r = train_on_pairs(model, tok, [], args())
    assert r.stopped_reason == "no_data"


def test_epoch_cap_limits_passes_over_few_pairs(tiny_model_dir):
    """A session with few pairs must not see them over and over (over-training makes models loop)."""
    from asls_mlx.adaptation.config import LearningConfig

    model, tok = fresh_model(tiny_model_dir)
    assert train_on_pairs(model, tok, short_pairs(TRAIN[:3]), args(max_steps=10, max_epochs=2)).steps == 2  # 3 pairs per step
    assert train_on_pairs(model, tok, short_pairs(TRAIN), args(max_steps=10, max_epochs=1.5)).steps == 3  # 8 pairs, 4 per step
    assert train_on_pairs(model, tok, short_pairs(TRAIN[:3]), args(max_steps=4, max_epochs=None)).steps == 4  # no cap
    assert TrainingArgs().max_epochs == LearningConfig().max_epochs == 3.0


def test_train_in_mlx_lm_shape_equals_train_on_pairs(tiny_model_dir):
    """The session entry point is the composition of its parts: the same losses, weights and state."""
    from asls_mlx.adaptation.train_data import prepare, training_examples
    from asls_mlx.adaptation.trainer import build_optimizer, global_step, train

    a = args(max_steps=3)
    first, tok = fresh_model(tiny_model_dir)
    whole = train_on_pairs(first, tok, short_pairs(TRAIN), a, general_texts=GENERAL)
    second, _ = fresh_model(tiny_model_dir)
    data = prepare(second, tok, training_examples(tok, short_pairs(TRAIN), (), a), a, GENERAL)
    optimizer = build_optimizer(second, a)
    batches = data.batches(global_step(optimizer))
    assert len(batches) == 3 and global_step(optimizer) == 0
    parts = train(second, optimizer, batches, a)
    assert parts.losses == whole.losses and parts.stopped_reason == whole.stopped_reason == "max_steps"
    assert parts.tokens == whole.tokens and parts.metrics == whole.metrics
    w1, w2 = lora_parameters(first), lora_parameters(second)
    assert all(mx.array_equal(w1[k], w2[k]) for k in w1)
    assert all(mx.array_equal(v, parts.optimizer_state[k]) for k, v in whole.optimizer_state.items())


def test_train_takes_any_loss_and_any_iterable_of_batches(tiny_model_dir):
    from asls_mlx.adaptation.losses import LOSSES
    from asls_mlx.adaptation.train_data import prepare, training_examples
    from asls_mlx.adaptation.trainer import build_optimizer, global_step, train

    a = args(loss="sft", max_steps=5)
    model, tok = fresh_model(tiny_model_dir)
    data = prepare(model, tok, training_examples(tok, short_pairs(TRAIN), (), a), a)
    seen = []

    def loss(m, batch):
        seen.append(batch.n_examples)
        return LOSSES["sft"](m, batch)  # TrainingArgs() weights

    two = list(data.batches())[:2]
    r = train(model, build_optimizer(model, a), (b for b in two), a, loss=loss)  # a generator: no len
    assert r.steps == 2 and r.stopped_reason == "max_steps" and seen and set(seen) == {4}
    assert r.tokens == sum(b.n_tokens for b in two)
    empty = train(model, build_optimizer(model, a), [], a)
    assert (empty.steps, empty.stopped_reason) == (0, "no_data")
    with pytest.raises(ASLSError, match="optimizer state does not match"):
        build_optimizer(model, TrainingArgs(resume_moments=True), {"step": mx.array(3)})
    assert global_step(build_optimizer(model, a, {"step": mx.array(3)})) == 3  # fresh moments need the step only


def test_adapt_schedule_is_monotone_and_conservative():
    assert adapt_schedule(0, 0.5) == (0, 0.0, 0.0)
    few, many = adapt_schedule(2, 0.0), adapt_schedule(40, 0.0)
    assert few[0] < many[0] <= 10 and few[1] < many[1] <= 2e-4
    calm, drifted = adapt_schedule(8, 0.0), adapt_schedule(8, 1.0)
    assert calm[0] <= drifted[0] and calm[2] > drifted[2]
    assert adapt_schedule(10_000, 5.0, max_steps=100)[0] <= 12


def test_gate_rules():
    ok = {"accuracy": 0.5, "margin": 0.1, "n": 8}
    better = {"accuracy": 0.75, "margin": 0.3, "n": 8}
    assert gate(ok, better, 1.02).commit
    assert not gate(better, ok, 1.0).commit  # means over >= 8 pairs (no per-pair margins): they decide
    few_ok, few_better = dict(ok, n=4), dict(better, n=4)
    assert gate(few_better, few_ok, 1.0).commit  # 4 pairs without per-pair margins: too few to judge
    assert not gate(ok, better, 1.2).commit
    assert not gate(ok, better, float("nan")).commit
    assert not gate(ok, dict(better, margin=float("inf")), 1.0).commit
    assert not gate(ok, better, 1.0, diverged=True).commit
    assert not gate(ok, better, 1.0, quality_failures=1).commit
    assert gate(ok, better, 1.0, quality_failures=1, max_quality_failures=1).commit
    empty = {"accuracy": float("nan"), "margin": float("nan"), "n": 0}
    assert not gate(empty, empty, 1.0).commit
    assert gate(empty, empty, 1.0, require_validation=False).commit


def _metrics(margins):
    return {"accuracy": sum(m > 1e-6 for m in margins) / len(margins), "margin": sum(margins) / len(margins),
            "n": len(margins), "margins": margins}


def test_gate_tells_noise_from_harm():
    """A paired sign test on the held-out pairs: 1-4 pairs never reject alone; a clear fall does."""
    assert sign_test_p(3, 0) == pytest.approx(1 / 8) and sign_test_p(5, 0) == pytest.approx(1 / 32)
    assert sign_test_p(0, 0) == 1.0 and sign_test_p(6, 1) == pytest.approx(8 / 128)
    # The case: 3 held-out pairs, 1.000 -> 0.667 (one pair flipped) and even 0.667 -> 0.000.
    assert gate(_metrics([0.2, 0.3, 0.1]), _metrics([0.2, 0.3, -0.1]), 1.0).commit
    decision = gate(_metrics([0.2, 0.3, -0.1]), _metrics([-0.2, -0.3, -0.4]), 1.0)
    assert decision.commit and "3 held-out pairs" in decision.reason
    # Ten pairs, seven turned wrong and none right: harm (p = 1/128).
    before = _metrics([0.1] * 10)
    decision = gate(before, _metrics([-0.1] * 7 + [0.1] * 3), 1.0)
    assert not decision.commit and "7 turned wrong" in decision.reason and "p=0.008" in decision.reason
    # Verdicts unchanged but every margin fell: harm through the margins' sign test.
    decision = gate(before, _metrics([0.05] * 10), 1.0)
    assert not decision.commit and "margin fell" in decision.reason
    # Mixed moves are noise: 6 fell, 4 rose.
    assert gate(before, _metrics([0.05] * 6 + [0.2] * 4), 1.0).commit
    assert heldout_harm(before, _metrics([0.05] * 6 + [0.2] * 4)) is None


def test_profile_fit_rejects_large_or_significant_falls_not_noise():
    """The eval's first concise update: held-out pairs 0.00 -> 0.67, profile fit 0.87 -> 0.81 on 6 gate prompts
    with mixed moves was rejected as 'fit the profile worse'; such a fall is noise. A fall on every prompt, or a
    large one, is harm."""
    from asls_mlx.adaptation.gate import profile_fit_harm

    noise = [(0.9, 0.8), (0.9, 0.95), (0.8, 0.7), (0.9, 0.9), (0.85, 0.75), (0.87, 0.76)]  # 0.87 -> 0.81, 4 fell 1 rose
    assert profile_fit_harm(noise) is None
    every = [(0.9, 0.8)] * 6  # 6 of 6 fell: p = 1/64
    assert "6 fell, 0 rose" in profile_fit_harm(every) and "p=0.016" in profile_fit_harm(every)
    assert "0.90 -> 0.30" in profile_fit_harm([(0.9, 0.3)] * 2)  # large: rejects on any number of prompts
    assert profile_fit_harm([(0.5, 0.49)] * 6) is None  # within min_score_gain
    assert profile_fit_harm([(0.5, 0.9)] * 6) is None and profile_fit_harm([]) is None


@pytest.fixture(scope="module")
def deep_tiny_dir(tmp_path_factory):
    from asls_mlx.engine.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("deep") / "model", num_hidden_layers=4)


def test_prefix_cache_gives_the_same_logps_grads_and_reference(deep_tiny_dir):
    from asls_mlx.adaptation.logprobs import answer_logps, frozen_depth
    from asls_mlx.adaptation.prefix_cache import PrefixCache

    model, tok = fresh_model(deep_tiny_dir, LoraConfig(num_layers=2))
    perturb(model)
    prefix = PrefixCache(model)
    assert frozen_depth(model) == 2 and prefix.depth == 2
    rows = pair_rows(encode_pairs(tok, short_pairs(TOPICS[:4])))
    b = collate(rows)
    hidden = prefix.inputs(rows, b)
    assert hidden.shape == (*b.inputs.shape, model.args.hidden_size)
    from_tokens = answer_logps(model, *b.arrays())
    assert mx.allclose(answer_logps(model, hidden, *b.arrays()[1:]), from_tokens, atol=1e-4, rtol=1e-5)

    def loss(x):
        return lambda m: answer_logps(m, x, *b.arrays()[1:]).sum()

    g_prefix = dict(tree_flatten(nn.value_and_grad(model, loss(hidden))(model)[1]))
    g_tokens = dict(tree_flatten(nn.value_and_grad(model, loss(b.inputs))(model)[1]))
    assert set(g_prefix) == set(lora_parameters(model))
    for k in g_prefix:
        assert mx.allclose(g_prefix[k], g_tokens[k], atol=1e-4, rtol=1e-3), k
    enc = encode_pairs(tok, short_pairs(TOPICS[:5]))
    with_prefix = reference_logps(model, enc, prefix=prefix)
    plain = reference_logps(model, enc)
    for key, (c, r) in plain.items():
        assert math.isclose(with_prefix[key][0], c, abs_tol=1e-3) and math.isclose(with_prefix[key][1], r, abs_tol=1e-3)


def test_training_from_the_prefix_cache_equals_training_from_tokens(deep_tiny_dir, monkeypatch):
    import asls_mlx.adaptation.logprobs as logprobs

    results = []
    for use_prefix in (True, False):
        if not use_prefix:
            monkeypatch.setattr(logprobs, "prefix_split_depth", lambda model: 0)
            monkeypatch.setattr(prefix_cache, "prefix_split_depth", lambda model: 0)
        model, tok = fresh_model(deep_tiny_dir, LoraConfig(num_layers=2))
        assert prefix_cache.PrefixCache(model).depth == (2 if use_prefix else 0)
        r = train_on_pairs(model, tok, short_pairs(TRAIN), args(max_steps=3), general_texts=GENERAL)
        assert r.steps == 3 and "retention_kl" in r.metrics
        results.append((r.losses, lora_parameters(model)))
    (l1, w1), (l2, w2) = results
    assert l1 == pytest.approx(l2, abs=1e-4)
    for k in w1:
        assert mx.allclose(w1[k], w2[k], atol=1e-5), k


def test_heldout_and_retention_checks_agree_with_and_without_the_prefix(deep_tiny_dir, monkeypatch):
    import asls_mlx.adaptation.logprobs as logprobs
    from asls_mlx.adaptation.lora import adapter_is_identity

    model, tok = fresh_model(deep_tiny_dir, LoraConfig(num_layers=2))
    assert adapter_is_identity(model)
    val = short_pairs(HELD_OUT, "val")
    base = preference_metrics(model, tok, val, {}, prefix=prefix_cache.PrefixCache(model))
    assert base == {"accuracy": 0.0, "margin": 0.0, "n": len(val), "margins": [0.0] * len(val)}  # the base model is its own reference
    ret0 = retention_perplexity(model, tok, GENERAL)
    assert ret0["ratio"] == 1.0 and ret0["ppl"] == ret0["base_ppl"]
    perturb(model)
    assert not adapter_is_identity(model)
    split = (preference_metrics(model, tok, val, {}, prefix=prefix_cache.PrefixCache(model)), retention_perplexity(model, tok, GENERAL))
    monkeypatch.setattr(logprobs, "prefix_split_depth", lambda model: 0)
    monkeypatch.setattr(prefix_cache, "prefix_split_depth", lambda model: 0)
    model.__dict__.pop("_asls_base_ppl")  # recompute the base perplexity from tokens as well
    plain = (preference_metrics(model, tok, val, {}, prefix=prefix_cache.PrefixCache(model)), retention_perplexity(model, tok, GENERAL))
    assert split[0]["margin"] == pytest.approx(plain[0]["margin"], abs=1e-4) and split[0]["margin"] != 0.0
    assert split[0]["accuracy"] == plain[0]["accuracy"]
    for k in ("ppl", "base_ppl", "ratio"):
        assert split[1][k] == pytest.approx(plain[1][k], rel=1e-4)
    assert split[1]["ratio"] != 1.0


def _uneven_pairs(tok):
    """Encoded pairs with prompts of different lengths, one of a single token (an empty prompt segment)."""
    pairs = [(e.prompt, e.chosen, e.rejected) for e in encode_pairs(tok, short_pairs(TOPICS[:5]))]
    pairs[1] = (pairs[1][0][-3:], pairs[1][1], pairs[1][2])
    pairs[2] = (pairs[2][0][-1:], pairs[2][1], pairs[2][2])
    return pairs


def test_shared_prompt_batch_layout(tiny_model_dir):
    from asls_mlx.adaptation.batching import collate_pairs

    _, tok = fresh_model(tiny_model_dir, None)
    pairs = _uneven_pairs(tok)
    b = collate_pairs(pairs)
    n, lp = b.prompts.shape
    la = b.answers.shape[1]
    assert lp % BUCKET == 0 and la % BUCKET == 0 and b.answers.shape[0] == 2 * n
    prompts, valid, answers = b.prompts.tolist(), b.prompt_valid.tolist(), b.answers.tolist()
    for i, (p, c, r) in enumerate(pairs):
        assert prompts[i][lp - len(p) + 1 :] == list(p[:-1]) and sum(valid[i]) == len(p) - 1  # left-padded
        assert valid[i][lp - len(p) + 1 :] == [True] * (len(p) - 1)
        for row, a in ((i, c), (n + i, r)):
            assert answers[row][: len(a)] == [p[-1], *a[:-1]]  # each position predicts the next answer token
    pos, tgt = b.positions.tolist(), b.targets.tolist()
    for k in range(int(b.select.sum().item())):
        row, col = divmod(pos[k], la)
        a = pairs[row % n][1 if row < n else 2]
        assert a[col] == tgt[k]
    assert b.counts.tolist() == [len(c) for _, c, _ in pairs] + [len(r) for _, _, r in pairs]


@pytest.mark.parametrize("use_prefix", [False, True])
def test_shared_prompt_logps_and_grads_equal_separate_rows(deep_tiny_dir, use_prefix):
    """Chosen and rejected answers after one run of their prompt: the numbers of two separate rows."""
    from asls_mlx.adaptation.batching import answer_rows, collate_pairs
    from asls_mlx.adaptation.logprobs import answer_logps, shares_prompt
    from asls_mlx.adaptation.prefix_cache import PrefixCache

    model, tok = fresh_model(deep_tiny_dir, LoraConfig(num_layers=2))
    perturb(model)
    assert shares_prompt(model)
    pairs = _uneven_pairs(tok)
    b, pb = collate(answer_rows(pairs)), collate_pairs(pairs)
    prefix = PrefixCache(model) if use_prefix else None
    shared_inputs = prefix.pair_inputs(pairs, pb) if use_prefix else pb.inputs
    if use_prefix:
        assert prefix.depth == 2 and shared_inputs[0].ndim == 3
    separate = answer_logps(model, b.inputs, *b.arrays()[1:])
    shared = answer_logps(model, shared_inputs, *pb.arrays()[1:])
    assert mx.allclose(shared, separate, atol=1e-4, rtol=1e-5), (shared, separate)

    def loss(x, batch):
        return lambda m: (answer_logps(m, x, *batch.arrays()[1:]) * mx.arange(1, 11)).sum()

    g_shared = dict(tree_flatten(nn.value_and_grad(model, loss(shared_inputs, pb))(model)[1]))
    g_rows = dict(tree_flatten(nn.value_and_grad(model, loss(b.inputs, b))(model)[1]))
    assert set(g_shared) == set(lora_parameters(model))
    for k in g_shared:  # float32 rounding relative to the gradient's scale
        assert mx.abs(g_shared[k] - g_rows[k]).max().item() <= 1e-4 * mx.abs(g_rows[k]).max().item(), k


def test_training_with_shared_prompts_equals_separate_rows(tiny_model_dir, monkeypatch):
    import asls_mlx.adaptation.logprobs as logprobs

    results = []
    for shared in (True, False):
        model, tok = fresh_model(tiny_model_dir)
        object.__setattr__(model, logprobs._SHARED_ATTR, shared)
        val = short_pairs(HELD_OUT, "val")
        r = train_on_pairs(model, tok, short_pairs(TRAIN), args(max_steps=3), general_texts=GENERAL)
        results.append((r.losses, lora_parameters(model), r.reference_cache, preference_metrics(model, tok, val, {})))
    (l1, w1, ref1, m1), (l2, w2, ref2, m2) = results
    assert l1 == pytest.approx(l2, abs=1e-4)
    for k in w1:
        assert mx.allclose(w1[k], w2[k], atol=1e-4, rtol=1e-3), k
    assert ref1.keys() == ref2.keys() and all(ref1[k] == pytest.approx(ref2[k], abs=1e-3) for k in ref1)
    assert m1["margin"] == pytest.approx(m2["margin"], abs=1e-4) and m1["margin"] != 0.0


def test_base_cache_keeps_retention_targets_and_base_perplexity_between_processes(tiny_model_dir, tmp_path, monkeypatch):
    """A later process (a fresh model object) reads the base model's retention targets and perplexity
    instead of recomputing them, and trains and checks exactly as without the cache."""
    import stat

    from asls_mlx.adaptation import train_data, validation
    from asls_mlx.adaptation.base_cache import BaseCache

    cache = BaseCache(tmp_path / "base")
    topk_calls, ppl_calls = [], []
    real_topk, real_ppl = train_data.base_topk, validation._perplexity
    monkeypatch.setattr(train_data, "base_topk", lambda *a, **k: topk_calls.append(1) or real_topk(*a, **k))
    monkeypatch.setattr(validation, "_perplexity", lambda *a, **k: ppl_calls.append(1) or real_ppl(*a, **k))

    def run(base_cache):
        model, tok = fresh_model(tiny_model_dir)  # a new model object: no in-process memo
        r = train_on_pairs(model, tok, short_pairs(TRAIN), args(max_steps=2), general_texts=GENERAL, base_cache=base_cache)
        return r.losses, validation.retention_perplexity(model, tok, GENERAL, base_cache=base_cache)

    plain = run(None)
    assert (len(topk_calls), len(ppl_calls)) == (1, 2)  # base + adapted
    first = run(cache)
    assert (len(topk_calls), len(ppl_calls)) == (2, 4)  # computed, then written
    files = sorted(p.name.split("-")[0] for p in (tmp_path / "base").iterdir())
    assert files == ["base", "retention"]  # base-perplexity-…, retention-…
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in (tmp_path / "base").iterdir())
    again = run(cache)
    assert (len(topk_calls), len(ppl_calls)) == (2, 5)  # only the adapted perplexity was computed
    assert plain == first == again
    for p in (tmp_path / "base").iterdir():  # a corrupt file is recomputed, not trusted
        p.write_bytes(b"not an npz")
    assert run(cache) == plain and (len(topk_calls), len(ppl_calls)) == (3, 7)


def test_base_cache_is_not_shared_by_different_weights(tiny_model_dir, tmp_path):
    """Two models whose directories have the same name (one model id) but different weights: the
    second computes its own values (the key holds a fingerprint of the base weights, not the id)."""
    from asls_mlx.adaptation.base_cache import BaseCache, base_fingerprint
    from asls_mlx.adaptation.validation import retention_perplexity
    from asls_mlx.engine.tiny import build_tiny_model

    other_dir = build_tiny_model(tmp_path / "other" / tiny_model_dir.name, seed=1)
    cache = BaseCache(tmp_path / "base")
    (a, tok), (b, _) = fresh_model(tiny_model_dir), fresh_model(other_dir)
    assert base_fingerprint(a) != base_fingerprint(b)
    retention_perplexity(a, tok, GENERAL, base_cache=cache)
    alone = retention_perplexity(fresh_model(other_dir)[0], tok, GENERAL)
    assert retention_perplexity(b, tok, GENERAL, base_cache=cache)["base_ppl"] == alone["base_ppl"]
    assert len(list((tmp_path / "base").iterdir())) == 2


def test_frozen_blocks_output_on_general_text_is_kept_between_processes(deep_tiny_dir, tmp_path, monkeypatch):
    """The frozen blocks' output on the retention texts is the base model's alone: a later process (a fresh model
    object) reads it from the base cache instead of running those blocks, and trains and checks exactly as
    without the cache."""
    from asls_mlx.adaptation import prefix_cache as pc, validation
    from asls_mlx.adaptation.base_cache import BaseCache

    cache, texts_run = BaseCache(tmp_path / "base"), []
    real = pc.prefix_hidden
    monkeypatch.setattr(pc, "prefix_hidden", lambda m, inputs, depth: texts_run.append(inputs.shape) or real(m, inputs, depth))

    def run(base_cache):
        model, tok = fresh_model(deep_tiny_dir, LoraConfig(num_layers=2))  # blocks 0-1 frozen
        r = train_on_pairs(model, tok, short_pairs(TRAIN), args(max_steps=2), general_texts=GENERAL, base_cache=base_cache)
        return r.losses, validation.retention_perplexity(model, tok, GENERAL, base_cache=base_cache)

    plain = run(None)
    assert len(texts_run) == 2  # the training texts and the check's (these short ones: the same tokens)
    first = run(cache)
    assert len(texts_run) == 3 and len(list((tmp_path / "base").glob("frozen-blocks-*"))) == 1  # the check read it
    again = run(cache)
    assert len(texts_run) == 3  # read back, not run
    assert plain == first == again


def test_fast_path_checks_are_kept_between_processes(deep_tiny_dir, tmp_path, monkeypatch):
    """A later process (a fresh model object) takes the fast-path decisions from the base cache
    instead of running the check forwards again; another LoRA layout runs its own checks."""
    import asls_mlx.adaptation.logprobs as logprobs
    from asls_mlx.adaptation.base_cache import BaseCache

    cache = BaseCache(tmp_path / "base")
    calls = []
    for name in ("naive_answer_logps", "prefix_hidden"):
        real = getattr(logprobs, name)
        monkeypatch.setattr(logprobs, name, lambda *a, real=real, **k: calls.append(1) or real(*a, **k))

    def decide(layers):
        model, _ = fresh_model(deep_tiny_dir, LoraConfig(num_layers=layers))
        before = len(calls)
        logprobs.decide_fast_paths(model, cache)
        paths = (logprobs.uses_answer_only(model), logprobs.shares_prompt(model), prefix_cache.PrefixCache(model).depth)
        return paths, len(calls) - before

    assert decide(2) == ((True, True, 2), 2)  # checked: the naive logps and the split forward
    assert decide(2) == ((True, True, 2), 0)  # read
    assert decide(3) == ((True, True, 1), 2)  # its own key: checked, then read
    assert decide(3) == ((True, True, 1), 0)
    assert sorted(p.name.split("-")[0] for p in (tmp_path / "base").iterdir()) == ["fast", "fast"]


def test_the_retention_check_gives_way_between_chunks_and_measures_the_same(tiny_model_dir):
    """The retention pass (~4 s on the embedded model) ran as one block, so an answer that started during it shared
    the CPU until it ended; now it runs RETENTION_ROWS texts at a time with a pause point between. Same perplexity."""
    from asls_mlx import yielding
    from asls_mlx.adaptation import validation
    from asls_mlx.adaptation.batching import text_batch
    from asls_mlx.adaptation.logprobs import next_token_logps

    model, tok = fresh_model(tiny_model_dir)
    train_on_pairs(model, tok, short_pairs(TRAIN), args(max_steps=2))
    texts = [f"{t} is a subject people write about in many ways, with facts and stories." for t in TOPICS][:9]
    paused = []
    yielding.set_pause_hook(lambda: paused.append(1) or 0.0)
    try:
        ret = retention_perplexity(model, tok, texts)
    finally:
        yielding.set_pause_hook(None)
    chunks = -(-len(texts) // validation.RETENTION_ROWS)
    assert len(paused) == 2 * (chunks - 1)  # the base pass and the adapter's, each between its chunks
    tokens, mask = text_batch(tok, texts, 128)
    whole = math.exp(float((-(next_token_logps(model, tokens[:, :-1], tokens[:, 1:]) * mask).sum() / mask.sum()).item()))
    assert ret["ppl"] == pytest.approx(whole, rel=1e-4) and ret["ratio"] != 1.0


def test_fresh_moments_keep_the_global_step_and_drop_the_carried_direction(tiny_model_dir):
    """``resume_moments=False`` (the default): a later session starts AdamW's moments at zero (MLX's AdamW has no bias
    correction, so a carried first moment re-applies the last session's direction) but keeps the step count."""
    models = {}
    for resume in (True, False):
        model, tok = fresh_model(tiny_model_dir)
        r1 = train_on_pairs(model, tok, short_pairs(TRAIN), args(max_steps=2), general_texts=GENERAL)
        r2 = train_on_pairs(model, tok, short_pairs(TRAIN), args(max_steps=2, resume_moments=resume),
                            general_texts=GENERAL, optimizer_state=r1.optimizer_state, reference_cache=r1.reference_cache)
        assert int(r2.optimizer_state["step"].item()) == 4 and r2.steps == 2
        models[resume] = (lora_parameters(model), r2.losses)
    assert TrainingArgs().resume_moments is False
    (carried, l_carried), (fresh, l_fresh) = models[True], models[False]
    assert l_carried[0] == l_fresh[0]  # the same weights and batch before the first step of session 2
    assert any(not mx.allclose(carried[k], fresh[k]) for k in carried)


def test_continued_lr_falls_with_the_steps_already_taken():
    from asls_mlx.adaptation.config import LearningConfig

    assert LearningConfig().continued_lr(2e-4, 7) == 2e-4  # no decay by default
    decayed = LearningConfig(lr_decay_steps=4.0)
    assert decayed.continued_lr(2e-4, 0) == 2e-4
    assert decayed.continued_lr(2e-4, 4) == pytest.approx(2e-4 / 2 ** 0.5)
    assert decayed.continued_lr(2e-4, 12) == pytest.approx(1e-4)
