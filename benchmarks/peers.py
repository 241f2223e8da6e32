"""Peer comparison: our MLX trainer and engine vs PyTorch + PEFT + transformers, one run, same machine.

    python benchmarks/peers.py                      # wait for a quiet machine, then measure (~6-8 min)
    python benchmarks/peers.py --reps 3 --no-wait   # quicker, noisier
    pip install -e ".[peers]"                       # the peers (torch CPU wheel, peft, transformers)

Same model and LoRA config on both sides: the embedded SmolLM2-135M-Instruct weights (fp32; the same
tensors are loaded into a transformers ``LlamaForCausalLM``, q/k un-permuted from GGUF's interleaved
RoPE layout, so both produce the same greedy tokens), LoRA rank 8 / scale 20 (PEFT: r=8,
lora_alpha=160) on all 7 linear kinds of the last 16 blocks (our default, mlx-lm's ``num_layers``;
PEFT: ``layers_to_transform``), batch 4 x 128 tokens, AdamW + grad-norm clip 1.0, 2 threads.

What is measured (each framework in its own subprocess, so peak RSS is separable):
1. LoRA SFT tokens/s: our compiled step (loss on all 127 targets per row) vs PEFT fwd+bwd+AdamW.
2. DPO: 4 pairs of (64-token prompt, 64-token chosen / rejected) = 8 rows x 128 tokens per step.
   Ours: DPO (beta 0.1) + 0.2 x SFT, answer-only logits, reference log-probs cached, compiled step
   starting from the cached output of the 14 frozen blocks (``PrefixCache``, computed once per row
   with the reference pass), each prompt run once for its chosen and rejected answer
   (``PairedBatch``: 4 x 64 prompt + 8 x 64 answer positions instead of 8 x 128); plus the whole per-session update through ``trainer.train`` (20 pairs,
   10 steps: reference log-probs + frozen-block cache once per row, compile, steps). PyTorch: a step in TRL's default style (policy fwd+bwd
   on chosen+rejected with full logits, a reference forward with the adapter disabled every step);
   a session of 10 steps is 10 such steps (nothing to amortise).
3. Prompt and decode tokens/s: our ``ChatEngine`` vs transformers ``generate`` (greedy, same
   prompt ids, 128 new tokens, KV cache on, EOS ignored on both sides so both decode 128 tokens).
4. Our MLX with and without the optimized BLAS (``ASLS_BLAS=off``), SFT at batch 1 x 128.
5. Fraction of the measured fp32 GEMM peak (``asls_mlx.blas.measure_gflops``) reached by training.
6. Peak RSS per framework.

Timings are medians of ``--reps`` repetitions after warm-up. Results: ``results/peers.json`` and
``results/peers.md``. Peers missing -> their columns are skipped with a message.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

MARK = "PEERS_RESULT "
THREADS = 2
BATCH, SEQ = 4, 128  # SFT batch: 4 rows x 128 tokens
PROMPT_LEN, ANSWER_LEN = 64, 64  # DPO rows: 64-token prompt + 64-token answer (incl. eos)
SESSION_PAIRS, SESSION_STEPS = 20, 10
NEW_TOKENS = 128
LORA_KEYS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
LORA_RANK, LORA_SCALE = 8, 20.0
LORA_LAYERS = 16  # adapters on the last 16 blocks on both sides


# ---------------------------------------------------------------------------------------------
# FLOPs model
# ---------------------------------------------------------------------------------------------
def flops_model(cfg: dict, rank: int = LORA_RANK, seq: int = SEQ, lora_layers: int = LORA_LAYERS) -> dict:
    """FLOPs per token of LoRA training with a frozen base (multiply-add = 2 FLOPs).

    N_lin: frozen linear weights in the blocks, N_head: LM head (tied embedding), N_lora: adapter
    weights, A: attention scores+values forward per token (causal: on average seq/2 keys, each
    2 x d_model FLOPs for QK^T and 2 x d_model for AV, per layer), u = adapted share of the blocks
    (16/30): activation gradients stop at the lowest adapted block.
      forward                      2 (N_lin + N_head + N_lora) + A
      backward, activation grads   2 (u N_lin + N_head + N_lora) + 2 u A   (frozen weights: no weight grads)
      backward, LoRA weight grads  2 N_lora
      train  = 2 (1 + u) N_lin + 4 N_head + 6 N_lora + (1 + 2u) A
      DPO, TRL default (full logits + a reference forward every step):
             = train + 2 (N_lin + N_head) + A
      DPO, ours (head on answer positions only, reference cached, frozen blocks cached):
             = 4 u N_lin + 4 f N_head + 6 N_lora + 3 u A,  f = answer share of positions (64/128)
    The compute limit is the *useful* work of a step (``train``), the same for both frameworks.
    """
    d, ff, layers = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    heads, kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = d // heads
    q, k = d * d, d * kv * hd
    n_lin = layers * (q + 2 * k + d * d + 3 * d * ff)
    n_head = d * cfg["vocab_size"]
    lora_shapes = [(d, d), (d, kv * hd), (d, kv * hd), (d, d), (d, ff), (d, ff), (ff, d)]
    u = lora_layers / layers
    n_lora = lora_layers * sum(rank * (i + o) for i, o in lora_shapes)
    attn = layers * 4 * d * (seq / 2)
    train = 2 * (1 + u) * n_lin + 4 * n_head + 6 * n_lora + (1 + 2 * u) * attn
    f = ANSWER_LEN / SEQ
    return {
        "N_lin": n_lin,
        "N_head": n_head,
        "N_lora": n_lora,
        "A_attn_fwd": attn,
        "train_flops_per_token": train,
        "dpo_ours_flops_per_token": 4 * u * n_lin + 4 * f * n_head + 6 * n_lora + 3 * u * attn,
        "dpo_trl_flops_per_token": train + 2 * (n_lin + n_head) + attn,
        "formula": "train = 2 (1 + u) N_lin + 4 N_head + 6 N_lora + (1 + 2u) A  (fwd 2N + A, activation grads from the "
        "lowest adapted block up 2 (u N_lin + N_head + N_lora) + 2uA, LoRA weight grads 2 N_lora; u = adapted blocks / blocks)",
        "u": u,
    }


def peak_rss_mb() -> float:
    from common import peak_rss_mb as rss

    return rss()


def median_time(fn, reps: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def synthetic_data(vocab: int):
    """The same token ids on both sides: SFT rows (4 x 128) and DPO pairs (prompt, chosen, rejected)."""
    import numpy as np

    rng = np.random.default_rng(0)
    sft = rng.integers(3, vocab, (BATCH, SEQ)).tolist()
    pairs = [
        tuple(rng.integers(3, vocab, n).tolist() for n in (PROMPT_LEN, ANSWER_LEN, ANSWER_LEN))
        for _ in range(BATCH)
    ]
    return sft, pairs


# ---------------------------------------------------------------------------------------------
# MLX workers
# ---------------------------------------------------------------------------------------------
class _IdsTokenizer:
    """Token ids written as text ("12 7 93"): lets ``trainer.train`` run on pairs of exact lengths."""

    eos_token_id = 2

    def apply_chat_template(self, messages, add_generation_prompt=True, tokenize=True, **_):
        return [int(x) for x in messages[-1]["content"].split()]

    def encode(self, text, add_special_tokens=False):
        return [int(x) for x in text.split()]


def _mlx_model(model_dir: str):
    import asls_mlx  # noqa: F401  (BLAS before mlx.core)
    from asls_mlx.adaptation.lora import LoraConfig, attach_lora
    from asls_mlx.engine import load_model

    model, tok, mid = load_model(model_dir)
    attach_lora(model, LoraConfig(rank=LORA_RANK, scale=LORA_SCALE, num_layers=LORA_LAYERS))
    return model, tok, mid


def _sft_setup(model, rows):
    import mlx.core as mx
    import mlx.optimizers as optim

    from asls_mlx.adaptation.batching import TrainBatch, collate
    from asls_mlx.adaptation.trainer import TrainingArgs, make_loss, make_step, no_retention

    n = len(rows)
    batch = collate([(tuple(s[:1]), tuple(s[1:])) for s in rows])  # loss on all 127 targets
    ones = mx.ones(n)
    opt = optim.AdamW(learning_rate=1e-5)
    opt.init(model.trainable_parameters())
    sft_args = TrainingArgs(loss="sft", retention_weight=0.0)
    step, state = make_step(model, opt, make_loss(sft_args), sft_args)
    arrays = TrainBatch(*batch.arrays(), ones, ones * 0, ones * 0, *no_retention())

    def run():
        loss, norm, _ = step(arrays)
        mx.eval(state, loss, norm)

    return run


def worker_mlx_train(model_dir: str, reps: int) -> dict:
    t_load = time.perf_counter()
    model, _, mid = _mlx_model(model_dir)
    import mlx.core as mx
    import mlx.nn as nn
    import mlx.optimizers as optim

    from asls_mlx import blas
    from asls_mlx.adaptation.batching import EncodedPair, TrainBatch, collate, pair_key, pair_rows
    from asls_mlx.adaptation.logprobs import _head, _head_matrix, answer_logps, head_token_logps, pair_batch, reference_logps
    from asls_mlx.adaptation.prefix_cache import PrefixCache
    from asls_mlx.adaptation.trainer import TrainingArgs, make_loss, make_step, no_retention, train_on_pairs

    out: dict = {"model": mid, "blas": blas.status().name, "load_s": time.perf_counter() - t_load}
    out["gemm_gflops"] = max(blas.measure_gflops(1024, 5), blas.measure_gflops(2048, 3))
    sft_rows, dpo_pairs = synthetic_data(model.args.vocab_size)

    # 1) SFT 4 x 128
    run = _sft_setup(model, sft_rows)
    t0 = time.perf_counter()
    run()
    out["sft_first_step_s"] = time.perf_counter() - t0  # trace + compile + step
    run()
    out["sft_step_s"], out["sft_step_times"] = median_time(run, reps)
    out["sft_tok_s"] = BATCH * SEQ / out["sft_step_s"]
    # same shape as the no-BLAS worker: 1 x 128
    run1 = _sft_setup(model, sft_rows[:1])
    run1()
    run1()
    out["sft_b1_step_s"], _ = median_time(run1, reps)
    out["sft_b1_tok_s"] = SEQ / out["sft_b1_step_s"]
    out["rss_after_sft_mb"] = peak_rss_mb()

    # 2) DPO step, reference cached
    pairs = [EncodedPair(tuple(p), tuple(c), tuple(r), 1.0, 0, pair_key(p, c, r)) for p, c, r in dpo_pairs]
    t0 = time.perf_counter()
    prefix = PrefixCache(model)
    ref = reference_logps(model, pairs, prefix=prefix)
    out["ref_logps_4pairs_s"] = time.perf_counter() - t0  # + the frozen blocks' output of each row
    out["frozen_blocks"] = prefix.depth
    # as the trainer batches them: each prompt run once for its chosen and rejected answer
    batch, hidden = pair_batch(model, [(p.prompt, p.chosen, p.rejected) for p in pairs], prefix)
    unshared = collate(pair_rows(pairs))  # the same pairs as separate rows, for the profile below
    ones = mx.ones(BATCH)
    ref_c = mx.array([ref[p.key][0] for p in pairs])
    ref_r = mx.array([ref[p.key][1] for p in pairs])
    dpo_args = TrainingArgs(loss="dpo", retention_weight=0.0)
    opt = optim.AdamW(learning_rate=1e-5)
    opt.init(model.trainable_parameters())
    step, state = make_step(model, opt, make_loss(dpo_args), dpo_args)
    arrays = TrainBatch(hidden, *batch.arrays()[1:], ones, ref_c, ref_r, *no_retention())

    def dpo_run():
        loss, norm, m = step(arrays)
        mx.eval(state, loss, norm, m)

    t0 = time.perf_counter()
    dpo_run()
    out["dpo_first_step_s"] = time.perf_counter() - t0
    dpo_run()
    out["dpo_step_s"], out["dpo_step_times"] = median_time(dpo_run, reps)
    rows_tokens = 2 * BATCH * SEQ
    out["dpo_step_pair_tok_s"] = rows_tokens / out["dpo_step_s"]
    out["rss_after_dpo_mb"] = peak_rss_mb()

    # 3) the whole per-session update through trainer.train: reference once per pair, compile, steps
    import numpy as np

    rng = np.random.default_rng(1)
    from types import SimpleNamespace

    def text(n):
        return " ".join(str(x) for x in rng.integers(3, model.args.vocab_size, n).tolist())

    session = [
        SimpleNamespace(prompt=text(PROMPT_LEN), chosen=text(ANSWER_LEN - 1), rejected=text(ANSWER_LEN - 1), weight=1.0, label=0)
        for _ in range(SESSION_PAIRS)
    ]
    marks = []
    args = TrainingArgs(loss="dpo", max_steps=SESSION_STEPS, time_limit_s=1e9, retention_weight=0.0, batch_size=BATCH)
    t0 = time.perf_counter()
    res = train_on_pairs(model, _IdsTokenizer(), session, args, callback=lambda p: marks.append(p.elapsed))
    total = time.perf_counter() - t0
    per_step = np.diff(marks).tolist()
    out["session"] = {
        "pairs": SESSION_PAIRS,
        "steps": res.steps,
        "seconds": total,
        "first_step_done_at_s": marks[0],  # encode + reference (20 pairs) + compile + step 1
        "later_step_median_s": statistics.median(per_step) if per_step else None,
        "pair_tokens": res.tokens,
        "pair_tok_s": res.tokens / total,
    }
    # reference log-probs for the 20 pairs alone (uncompiled forward, adapter off), as train() does
    from asls_mlx.adaptation.batching import encode_pairs

    enc = encode_pairs(_IdsTokenizer(), session, args.max_length)
    t0 = time.perf_counter()
    reference_logps(model, enc)
    out["session"]["reference_20pairs_s"] = time.perf_counter() - t0
    out["rss_after_session_mb"] = peak_rss_mb()

    # 4) profile of one DPO step (8 rows x 128, 512 answer positions), each piece compiled
    inputs, positions, targets, select = unshared.arrays()
    head = _head(model)
    prof = {}

    def timeit(name, fn, *xs):
        f = mx.compile(fn)
        mx.eval(f(*xs))
        mx.eval(f(*xs))
        prof[name], _ = median_time(lambda: mx.eval(f(*xs)), max(2, reps - 2))

    hidden = model.model(inputs).reshape(-1, model.args.hidden_size)[positions]
    mx.eval(hidden)
    L, V, F = model.args.num_hidden_layers, model.args.vocab_size, model.args.intermediate_size
    timeit(f"body_forward ({L} blocks + norm, {2 * BATCH * SEQ} positions)", lambda x: model.model(x), inputs)
    matrix = _head_matrix(model)
    from asls_mlx.engine import backend_of

    lse = backend_of(model).logsumexp
    timeit("head+logsumexp forward (512 answer positions, vocabulary blocks)", lambda h: head_token_logps(h, *matrix, targets, lse), hidden)
    timeit(
        "head+logsumexp fwd+bwd (512 positions, vocabulary blocks)",
        lambda h: mx.grad(lambda z: head_token_logps(z, *matrix, targets, lse).sum())(h),
        hidden,
    )
    timeit("head+logsumexp fwd+bwd (512 positions, whole logits, MLX logsumexp)",
           lambda h: mx.grad(lambda z: (mx.take_along_axis(head(z), targets[:, None], -1).squeeze(-1)
                                        - mx.logsumexp(head(z), axis=-1)).sum())(h), hidden)
    timeit("answer_logps forward (policy, compiled, separate rows)", lambda *a: answer_logps(model, *a), inputs, positions, targets, select)
    timeit("answer_logps forward (policy, compiled, prompt shared)", lambda x: answer_logps(model, x, *batch.arrays()[1:]),
           batch.inputs)
    loss_fn = make_loss(dpo_args)
    vg = nn.value_and_grad(model, lambda m, *a: loss_fn(m, TrainBatch(*a)))
    timeit("loss fwd+bwd (no optimizer)", lambda *a: vg(model, *a), *arrays.arrays())
    prof["full compiled step (fwd+bwd+clip+AdamW)"] = out["dpo_step_s"]
    t0 = time.perf_counter()
    mx.eval(answer_logps(model, batch.inputs, *batch.arrays()[1:]))
    prof["answer_logps forward, uncompiled, prompt shared (as reference_logps runs)"] = time.perf_counter() - t0
    # elementwise probes (single-threaded on MLX CPU)
    logits = mx.random.normal((512, model.args.vocab_size))
    g = mx.random.normal((BATCH * 2 * SEQ, model.args.intermediate_size))
    mx.eval(logits, g)
    timeit(f"probe: MLX logsumexp over 512 x {V}", lambda z: mx.logsumexp(z, axis=-1), logits)
    from asls_mlx.engine.cpu import cpu_kernels as fastmath

    timeit(f"probe: fastmath.logsumexp over 512 x {V}", lambda z: fastmath.logsumexp(z), logits)
    silu_name = f"probe: silu(g)*u, {2 * BATCH * SEQ} x {F}, fwd, x{L} layers"
    timeit(silu_name, lambda z: nn.silu(z) * z, g)
    prof[silu_name] *= L

    fast_name = f"probe: fastmath.swiglu(g, u), same shape, fwd, x{L} layers"
    timeit(fast_name, lambda z: fastmath.swiglu(z, z), g)
    prof[fast_name] *= L
    out["dpo_profile_s"] = prof
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def worker_mlx_noblas(model_dir: str, reps: int) -> dict:
    """SFT at batch 1 x 128 with MLX's bundled reference BLAS (ASLS_BLAS=off is set by the parent)."""
    model, _, _ = _mlx_model(model_dir)
    from asls_mlx import blas

    out = {"blas": blas.status().name, "gemm_gflops": blas.measure_gflops(1024, 2)}
    sft_rows, _ = synthetic_data(model.args.vocab_size)
    run = _sft_setup(model, sft_rows[:1])
    t0 = time.perf_counter()
    run()
    out["sft_b1_first_step_s"] = time.perf_counter() - t0
    out["sft_b1_step_s"], out["sft_b1_step_times"] = median_time(run, reps)
    out["sft_b1_tok_s"] = SEQ / out["sft_b1_step_s"]
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def worker_mlx_gen(model_dir: str, reps: int) -> dict:
    import asls_mlx  # noqa: F401
    from asls_mlx.adaptation.lora import LoraConfig, attach_lora
    from asls_mlx.engine import ChatEngine, SamplingOptions, load_model
    from generate import LONG_PROMPT

    model, tok, mid = load_model(model_dir)
    engine = ChatEngine(model, tok, mid)
    messages = [{"role": "user", "content": LONG_PROMPT}]
    ids, _ = engine.encode_chat(messages, reserve=NEW_TOKENS)
    tok.eos_token_ids = set()  # decode exactly NEW_TOKENS tokens, like generate(eos_token_id=None)

    def one(max_tokens=NEW_TOKENS):
        engine.reset_cache()  # a cold prompt every time: measure prefill, not the prompt cache
        t0 = time.perf_counter()
        stamps, tokens = [], []
        for chunk in engine.stream(messages, SamplingOptions(max_tokens=max_tokens, repetition_penalty=None)):
            stamps.append(time.perf_counter())
            tokens.append(chunk.token)
        prompt_s = stamps[0] - t0
        decode_s = stamps[-1] - stamps[0]
        return len(ids) / prompt_s, (len(tokens) - 1) / decode_s, tokens

    one(8)  # warm-up
    runs = [one() for _ in range(reps)]
    out = {
        "prompt_tokens": len(ids),
        "prompt_ids": ids,
        "new_tokens": len(runs[0][2]),
        "tokens": runs[0][2],
        "prompt_tok_s": statistics.median(r[0] for r in runs),
        "decode_tok_s": statistics.median(r[1] for r in runs),
        "prompt_tok_s_all": [r[0] for r in runs],
        "decode_tok_s_all": [r[1] for r in runs],
        "rss_base_mb": peak_rss_mb(),
    }
    # the product generates with the user's adapter attached (LoRA layers unfused)
    attach_lora(model, LoraConfig(rank=LORA_RANK, scale=LORA_SCALE, num_layers=LORA_LAYERS))
    engine.reset_cache()
    one(8)
    runs = [one() for _ in range(max(2, reps - 1))]
    out["adapter_prompt_tok_s"] = statistics.median(r[0] for r in runs)
    out["adapter_decode_tok_s"] = statistics.median(r[1] for r in runs)
    out["peak_rss_mb"] = peak_rss_mb()
    return out


# ---------------------------------------------------------------------------------------------
# PyTorch workers
# ---------------------------------------------------------------------------------------------
def _torch_model(model_dir: str):
    import torch
    from safetensors.torch import load_file
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.set_num_threads(THREADS)
    cfg = json.loads((Path(model_dir) / "config.json").read_text())
    config = LlamaConfig(
        vocab_size=cfg["vocab_size"],
        hidden_size=cfg["hidden_size"],
        intermediate_size=cfg["intermediate_size"],
        num_hidden_layers=cfg["num_hidden_layers"],
        num_attention_heads=cfg["num_attention_heads"],
        num_key_value_heads=cfg["num_key_value_heads"],
        rms_norm_eps=cfg.get("rms_norm_eps", 1e-5),
        rope_theta=cfg.get("rope_theta", 10000.0),
        max_position_embeddings=cfg.get("max_position_embeddings", 2048),
        tie_word_embeddings=cfg.get("tie_word_embeddings", True),
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=0,
    )
    model = LlamaForCausalLM(config).float()
    sd = load_file(str(Path(model_dir) / "model.safetensors"))
    if cfg.get("rope_traditional"):
        # GGUF stores q/k rows interleaved for RoPE on adjacent pairs; HF rotates halves.
        hd = cfg["hidden_size"] // cfg["num_attention_heads"]
        for name in list(sd):
            if name.endswith(("q_proj.weight", "k_proj.weight")):
                w = sd[name]
                n = w.shape[0] // hd
                sd[name] = w.reshape(n, hd // 2, 2, w.shape[1]).transpose(1, 2).reshape(w.shape).contiguous()
    missing, unexpected = model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=False)
    assert not unexpected and all("lm_head" in m for m in missing), (missing, unexpected)
    model.tie_weights()
    return model, config


def _peft(model):
    from peft import LoraConfig, get_peft_model

    layers = model.config.num_hidden_layers
    cfg = LoraConfig(r=LORA_RANK, lora_alpha=int(LORA_RANK * LORA_SCALE), lora_dropout=0.0, target_modules=list(LORA_KEYS),
                     bias="none", layers_to_transform=list(range(layers - LORA_LAYERS, layers)))
    return get_peft_model(model, cfg)


def worker_torch_train(model_dir: str, reps: int) -> dict:
    import torch
    import torch.nn.functional as F

    base, config = _torch_model(model_dir)
    model = _peft(base)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    out = {"torch": torch.__version__, "threads": torch.get_num_threads(), "lora_parameters": sum(p.numel() for p in params)}
    import peft
    import transformers

    out["peft"], out["transformers"] = peft.__version__, transformers.__version__
    a = torch.randn(1024, 1024)
    torch.mm(a, a)
    t0 = time.perf_counter()
    for _ in range(5):
        torch.mm(a, a)
    out["torch_gemm_gflops_1024"] = 2 * 1024**3 / ((time.perf_counter() - t0) / 5) / 1e9
    sft_rows, dpo_pairs = synthetic_data(config.vocab_size)

    # 1) SFT
    opt = torch.optim.AdamW(params, lr=1e-5)
    ids = torch.tensor(sft_rows)

    def sft():
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    sft()
    sft()
    out["sft_step_s"], out["sft_step_times"] = median_time(sft, reps)
    out["sft_tok_s"] = BATCH * SEQ / out["sft_step_s"]
    out["rss_after_sft_mb"] = peak_rss_mb()

    # 2) DPO, TRL's default: concatenated chosen+rejected policy forward (full logits), reference
    #    forward with the adapter disabled every step, sigmoid loss, backward, clip, AdamW.
    rows = [p + c for p, c, _ in dpo_pairs] + [p + r for p, _, r in dpo_pairs]
    x = torch.tensor(rows)
    labels = x[:, 1:]
    mask = torch.zeros_like(labels, dtype=torch.float32)
    mask[:, PROMPT_LEN - 1 :] = 1.0  # positions whose next token is an answer token
    beta = 0.1

    def seq_logps(m):
        logits = m(input_ids=x).logits[:, :-1]
        # TRL's selective_log_softmax for fp32: gather - logsumexp, row by row
        lse = torch.stack([torch.logsumexp(row, dim=-1) for row in logits])
        picked = torch.gather(logits, -1, labels.unsqueeze(-1)).squeeze(-1)
        return ((picked - lse) * mask).sum(-1)

    opt = torch.optim.AdamW(params, lr=1e-5)
    parts = {"policy_forward": [], "reference_forward": [], "backward": [], "clip+adamw": []}

    def dpo():
        t0 = time.perf_counter()
        lp = seq_logps(model)
        t1 = time.perf_counter()
        with torch.no_grad(), model.disable_adapter():
            rp = seq_logps(model)
        t2 = time.perf_counter()
        logits = beta * ((lp[:BATCH] - rp[:BATCH]) - (lp[BATCH:] - rp[BATCH:]))
        loss = -F.logsigmoid(logits).mean()
        loss.backward()
        t3 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        t4 = time.perf_counter()
        for k, v in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            parts[k].append(v)

    dpo()
    dpo()
    for v in parts.values():
        v.clear()
    out["dpo_step_s"], out["dpo_step_times"] = median_time(dpo, reps)
    out["dpo_step_pair_tok_s"] = 2 * BATCH * SEQ / out["dpo_step_s"]
    out["dpo_profile_s"] = {k: statistics.median(v) for k, v in parts.items()}
    out["rss_after_dpo_mb"] = peak_rss_mb()
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def worker_torch_gen(model_dir: str, reps: int, prompt_ids: list[int]) -> dict:
    import torch
    from transformers.generation.streamers import BaseStreamer

    model, _ = _torch_model(model_dir)
    model.eval()
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0

    class Clock(BaseStreamer):
        def __init__(self):
            self.t = []

        def put(self, value):  # first call: the prompt; then one call per new token
            self.t.append(time.perf_counter())

        def end(self):
            pass

    x = torch.tensor([prompt_ids])

    def one(max_new=NEW_TOKENS):
        clock = Clock()
        t0 = time.perf_counter()
        with torch.inference_mode():
            y = model.generate(
                x, attention_mask=torch.ones_like(x), max_new_tokens=max_new, min_new_tokens=0, do_sample=False,
                use_cache=True, streamer=clock, eos_token_id=None, pad_token_id=0,
            )
        new = y[0, x.shape[1] :].tolist()
        stamps = clock.t[1:]
        return len(prompt_ids) / (stamps[0] - t0), (len(new) - 1) / (stamps[-1] - stamps[0]), new

    one(8)
    runs = [one() for _ in range(reps)]
    return {
        "prompt_tok_s": statistics.median(r[0] for r in runs),
        "decode_tok_s": statistics.median(r[1] for r in runs),
        "prompt_tok_s_all": [r[0] for r in runs],
        "decode_tok_s_all": [r[1] for r in runs],
        "new_tokens": len(runs[0][2]),
        "tokens": runs[0][2],
        "peak_rss_mb": peak_rss_mb(),
    }


# ---------------------------------------------------------------------------------------------
# Orchestration
# ---------------------------------------------------------------------------------------------
def run_worker(kind: str, model_dir: str, reps: int, env: dict | None = None, extra: list[str] | None = None) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, "--model-dir", model_dir, "--reps", str(reps), *(extra or [])]
    full_env = {**os.environ, "OMP_NUM_THREADS": str(THREADS), "OPENBLAS_NUM_THREADS": str(THREADS), **(env or {})}
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=full_env)
    wall = time.perf_counter() - t0
    line = next((l for l in reversed(proc.stdout.splitlines()) if l.startswith(MARK)), None)
    if proc.returncode != 0 or line is None:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-3:]
        print(f"  [{kind}] failed (rc {proc.returncode}): {' | '.join(tail)}")
        return {"error": "\n".join(tail)}
    res = json.loads(line[len(MARK) :])
    res["wall_s"], res["load_avg_1m_start"], res["load_avg_1m_end"] = wall, load0, os.getloadavg()[0]
    print(f"  [{kind}] {wall:.0f} s, load {load0:.2f} -> {res['load_avg_1m_end']:.2f}")
    return res


def peers_available() -> str | None:
    missing = []
    for mod in ("torch", "peft", "transformers"):
        try:
            __import__(mod)
        except ImportError:
            missing.append(mod)
    if missing:
        return f"peers not installed ({', '.join(missing)}): pip install -e '.[peers]'"
    return None


def wait_for_quiet(threshold: float, max_wait: float, poll: float = 30.0) -> dict:
    t0 = time.time()
    while True:
        load = os.getloadavg()[0]
        waited = time.time() - t0
        if load < threshold or waited >= max_wait:
            return {"load_avg_1m": load, "waited_s": round(waited), "quiet": load < threshold}
        print(f"  load average {load:.2f} >= {threshold}: waiting ({waited:.0f}/{max_wait:.0f} s)")
        time.sleep(poll)


def ratio(a, b):
    return a / b if a and b else None


def build_rows(res: dict, fm: dict) -> list[dict]:
    mt, mg, tt, tg, nb = (res.get(k, {}) for k in ("mlx-train", "mlx-gen", "torch-train", "torch-gen", "mlx-noblas"))
    rows = []

    def add(metric, ours, peer, goal="", higher_better=True, goal_ratio=None, unit=""):
        r = ratio(ours, peer) if higher_better else ratio(ours, peer)
        met = None
        if goal_ratio is not None and r is not None:
            met = r >= goal_ratio if higher_better else r <= goal_ratio
        rows.append({"metric": metric, "ours": ours, "peer": peer, "ratio": r, "goal": goal, "met": met, "unit": unit})

    add("LoRA SFT tok/s (4x128)", mt.get("sft_tok_s"), tt.get("sft_tok_s"), ">= 1.2x", goal_ratio=1.2)
    add("DPO step, pair tok/s (8 rows x 128; ours: ref + frozen blocks cached, prompt run once per pair; TRL: ref fwd each step)", mt.get("dpo_step_pair_tok_s"), tt.get("dpo_step_pair_tok_s"))
    s = mt.get("session") or {}
    trl_session = tt.get("dpo_step_s") and SESSION_STEPS * tt["dpo_step_s"]
    trl_session_tok_s = trl_session and s.get("pair_tokens", SESSION_STEPS * 2 * BATCH * SEQ) / trl_session
    add(f"per-session DPO update, pair tok/s ({SESSION_PAIRS} pairs, {SESSION_STEPS} steps, all costs)", s.get("pair_tok_s"), trl_session_tok_s, ">= 1.5x", goal_ratio=1.5)
    add("per-session DPO update, seconds", s.get("seconds"), trl_session, "", higher_better=False)
    add("prompt tok/s (generation)", mg.get("prompt_tok_s"), tg.get("prompt_tok_s"), ">= 1.2x", goal_ratio=1.2)
    add("decode tok/s (greedy, 128 new)", mg.get("decode_tok_s"), tg.get("decode_tok_s"), ">= 1.0x", goal_ratio=1.0)
    add("decode tok/s, ours with LoRA attached", mg.get("adapter_decode_tok_s"), tg.get("decode_tok_s"), "")
    peak = mt.get("gemm_gflops")
    if peak:
        limit = peak * 1e9 / fm["train_flops_per_token"]
        add("SFT fraction of GEMM compute limit", mt.get("sft_tok_s") and mt["sft_tok_s"] / limit,
            tt.get("sft_tok_s") and tt["sft_tok_s"] / limit, "ours >= 0.60")
        rows[-1]["met"] = rows[-1]["ours"] is not None and rows[-1]["ours"] >= 0.6
        rows[-1]["ratio"] = ratio(rows[-1]["ours"], rows[-1]["peer"])
    add("training peak RSS MB (after SFT + DPO)", mt.get("rss_after_dpo_mb"), tt.get("rss_after_dpo_mb"), "<= 0.8x", higher_better=False, goal_ratio=0.8)
    add("generation peak RSS MB", mg.get("rss_base_mb"), tg.get("peak_rss_mb"), "", higher_better=False)
    rows.append({"metric": "MLX SFT tok/s (1x128): OpenBLAS vs reference BLAS", "ours": mt.get("sft_b1_tok_s"), "peer": nb.get("sft_b1_tok_s"),
                 "ratio": ratio(mt.get("sft_b1_tok_s"), nb.get("sft_b1_tok_s")), "goal": "(peer column = ASLS_BLAS=off)", "met": None, "unit": ""})
    return rows


def fmt(v, digits=3):
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def markdown(rows, res, fm, meta) -> str:
    mt, tt, mg, tg, nb = (res.get(k, {}) for k in ("mlx-train", "torch-train", "mlx-gen", "torch-gen", "mlx-noblas"))
    lines = [
        "# Peer comparison: asls_mlx (MLX) vs PyTorch + PEFT + transformers",
        "",
        f"Machine: {meta['machine']}. Load average (1 min) at start: {meta['load_at_start']:.2f}"
        f" (waited {meta['waited_s']} s; per worker: {meta['load_per_worker']}). Script wall time {meta['wall_s']:.0f} s.",
        f"Versions: torch {tt.get('torch', '—')} ({tt.get('threads', '—')} threads), peft {tt.get('peft', '—')}, "
        f"transformers {tt.get('transformers', '—')}. Medians of {meta['reps']} repetitions after warm-up.",
        f"Config: the same weights on both sides ({mt.get('model', '—')}, fp32; PyTorch gets them un-permuted from GGUF's q/k layout), "
        f"LoRA r=8 scale 20 (PEFT lora_alpha 160) on all 7 linear kinds of the last {LORA_LAYERS} blocks "
        f"({fm['N_lora']:,} parameters), batch 4 x 128, AdamW + clip 1.0. Ours with the CPU kernels of "
        "`asls_mlx.engine.cpu.cpu_kernels` (SwiGLU, attention softmax, logsumexp) and the LM head in vocabulary blocks.",
        "",
        "| metric | ours (MLX) | PyTorch | ours / peer | goal | met |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        met = "" if r["met"] is None else ("yes" if r["met"] else "**no**")
        lines.append(f"| {r['metric']} | {fmt(r['ours'])} | {fmt(r['peer'])} | {fmt(r['ratio'])} | {r['goal']} | {met} |")
    lines += [
        "",
        f"GEMM peak (MLX fp32, max of 1024/2048): {fmt(mt.get('gemm_gflops'))} GFLOP/s; torch mm 1024: {fmt(tt.get('torch_gemm_gflops_1024'))} GFLOP/s; "
        f"reference BLAS: {fmt(nb.get('gemm_gflops'))} GFLOP/s.",
        f"FLOPs per token: {fm['formula']}; N_lin = {fm['N_lin']:,}, N_head = {fm['N_head']:,}, N_lora = {fm['N_lora']:,}, "
        f"A = {fm['A_attn_fwd']:,.0f} -> {fm['train_flops_per_token'] / 1e9:.3f} GFLOP/token "
        f"(compute limit {fmt(mt.get('gemm_gflops') and mt['gemm_gflops'] * 1e9 / fm['train_flops_per_token'])} tok/s). "
        f"DPO per row-token: ours {fm['dpo_ours_flops_per_token'] / 1e9:.3f}, TRL default {fm['dpo_trl_flops_per_token'] / 1e9:.3f} GFLOP.",
        "",
        "## Where a DPO step's time goes (8 rows x 128, 512 answer positions)",
        "",
        "| ours (MLX, each piece compiled) | s |",
        "|---|---|",
    ]
    for k, v in (mt.get("dpo_profile_s") or {}).items():
        lines.append(f"| {k} | {v:.3f} |")
    lines += ["", "| PyTorch TRL-style step | s |", "|---|---|"]
    for k, v in (tt.get("dpo_profile_s") or {}).items():
        lines.append(f"| {k} | {v:.3f} |")
    s = mt.get("session") or {}
    if s:
        lines += [
            "",
            f"Per-session update (ours, `trainer.train`): {s['pairs']} pairs, {s['steps']} steps, {s['seconds']:.1f} s in all; "
            f"first step done at {s['first_step_done_at_s']:.1f} s (encode + reference log-probs of all pairs + trace/compile + step), "
            f"later steps {fmt(s['later_step_median_s'])} s each; reference log-probs of the {s['pairs']} pairs alone "
            f"{s['reference_20pairs_s']:.1f} s. First compiled SFT step {fmt(mt.get('sft_first_step_s'))} s vs "
            f"{fmt(mt.get('sft_step_s'))} s steady; first DPO step {fmt(mt.get('dpo_first_step_s'))} s vs {fmt(mt.get('dpo_step_s'))} s.",
        ]
    if mg and tg and mg.get("tokens") and tg.get("tokens"):
        same = sum(a == b for a, b in zip(mg["tokens"], tg["tokens"]))
        first_diff = next((i for i, (a, b) in enumerate(zip(mg["tokens"], tg["tokens"])) if a != b), None)
        lines += ["", f"Generation: prompt of {mg['prompt_tokens']} tokens, {mg['new_tokens']} / {tg['new_tokens']} new tokens; "
                  f"greedy tokens identical for the first {first_diff if first_diff is not None else len(mg['tokens'])} "
                  f"({same}/{len(mg['tokens'])} positions equal): same weights, same computation."]
    if meta.get("skipped"):
        lines += ["", f"Skipped: {meta['skipped']}"]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=5, help="timed repetitions per measurement (median)")
    ap.add_argument("--wait-load", type=float, default=1.5, help="wait until the 1-min load average is below this")
    ap.add_argument("--wait-max", type=float, default=600, help="give up waiting after this many seconds")
    ap.add_argument("--no-wait", action="store_true")
    ap.add_argument("--model", default=None, help="mlx-lm llama model dir (default: the embedded model, fp32)")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--model-dir", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--prompt-file", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:
        fn = {
            "mlx-train": worker_mlx_train,
            "mlx-gen": worker_mlx_gen,
            "mlx-noblas": worker_mlx_noblas,
            "torch-train": worker_torch_train,
        }
        if args.worker == "torch-gen":
            res = worker_torch_gen(args.model_dir, args.reps, json.loads(Path(args.prompt_file).read_text()))
        else:
            res = fn[args.worker](args.model_dir, args.reps)
        print(MARK + json.dumps(res))
        return

    import asls_mlx  # noqa: F401
    from common import RESULTS, machine

    from asls_mlx.engine.models import resolve_model

    t_start = time.perf_counter()
    model_dir = str(resolve_model(args.model))
    cfg = json.loads((Path(model_dir) / "config.json").read_text())
    fm = flops_model(cfg)
    skipped = peers_available()
    if skipped:
        print(f"  {skipped}: measuring ours only")
    quiet = {"load_avg_1m": os.getloadavg()[0], "waited_s": 0, "quiet": None}
    if not args.no_wait:
        quiet = wait_for_quiet(args.wait_load, args.wait_max)
    t_start = time.perf_counter()
    res = {}
    print(f"measuring (model {model_dir}, load {quiet['load_avg_1m']:.2f})")
    res["mlx-train"] = run_worker("mlx-train", model_dir, args.reps)
    if not skipped:
        res["torch-train"] = run_worker("torch-train", model_dir, args.reps)
    res["mlx-gen"] = run_worker("mlx-gen", model_dir, max(3, args.reps - 2))
    if not skipped and res["mlx-gen"].get("prompt_ids"):
        prompt_file = RESULTS / ".peers_prompt.json"
        prompt_file.write_text(json.dumps(res["mlx-gen"]["prompt_ids"]))
        try:
            res["torch-gen"] = run_worker("torch-gen", model_dir, max(3, args.reps - 2), extra=["--prompt-file", str(prompt_file)])
        finally:
            prompt_file.unlink(missing_ok=True)
    res["mlx-noblas"] = run_worker("mlx-noblas", model_dir, 1, env={"ASLS_BLAS": "off"})
    wall = time.perf_counter() - t_start

    rows = build_rows(res, fm)
    meta = {
        "machine": ", ".join(f"{k} {v}" for k, v in machine().items()),
        "load_at_start": quiet["load_avg_1m"],
        "waited_s": quiet["waited_s"],
        "load_per_worker": ", ".join(
            f"{k} {v['load_avg_1m_start']:.2f}->{v['load_avg_1m_end']:.2f}" for k, v in res.items() if "load_avg_1m_start" in v
        ),
        "wall_s": wall,
        "reps": args.reps,
        "skipped": skipped,
    }
    md = markdown(rows, res, fm, meta)
    print("\n" + md)
    RESULTS.mkdir(exist_ok=True)
    for v in res.values():
        v.pop("prompt_ids", None)
    payload = {"machine": machine(), "meta": meta, "flops": fm, "rows": rows, "workers": res}
    (RESULTS / "peers.json").write_text(json.dumps(payload, indent=2))
    (RESULTS / "peers.md").write_text(md)
    print(f"wrote {RESULTS / 'peers.json'} and {RESULTS / 'peers.md'}")


if __name__ == "__main__":
    main()
