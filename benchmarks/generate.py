"""Generation speed of the embedded default model: prompt and decode tok/s, time to first token
on turn 1 and turn 2 (prompt cache reused), peak RSS. Goals (2-core CPU): decode >= 17 tok/s,
turn-2 TTFT <= 0.3 s. Then a batch like a session update's self-labelled one (4 prompts x 4 sampled
answers of 96 tokens + 6 greedy answers of 64) decoded together on the CPU backend's NumPy path
(``engine.cpu.batch_answers``) and on mlx-lm's ``BatchGenerator`` (``CpuBackend(numpy_decode=False)``:
the same kernels), in the same run.

    python benchmarks/generate.py [--model DIR] [--max-tokens 128]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import asls_mlx  # noqa: E402,F401  (OpenBLAS first)
from asls_mlx.engine import ChatEngine, SamplingOptions, load_model  # noqa: E402
from common import peak_rss_mb, report  # noqa: E402

LONG_PROMPT = (
    "Here are my notes from this week's planning meeting. " * 12
    + "Summarise the notes above in three sentences for a colleague who missed the meeting."
)


def timed_turn(engine: ChatEngine, messages: list[dict], options: SamplingOptions):
    start = time.perf_counter()
    ttft, text, last = None, "", None
    for chunk in engine.stream(messages, options):
        if ttft is None:
            ttft = time.perf_counter() - start
        text += chunk.text
        last = chunk
    return ttft, text, last


QUESTIONS = ["What is the capital of France?", "Explain photosynthesis briefly.", "Give me three tips for sleeping better.",
             "How do I reverse a list in Python?", "What is a black hole?", "Write a haiku about autumn."]


def batched_answers(engine: ChatEngine) -> tuple[float, int, float, int]:
    """Seconds and answer tokens of one batch on the host path, then on mlx-lm's ``BatchGenerator``."""
    from asls_mlx.engine.backend_choice import backend_of, use_backend
    from asls_mlx.engine.cpu import CpuBackend

    conversation = lambda q: [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": q}]  # noqa: E731
    sampled = SamplingOptions(max_tokens=96, temperature=0.8, top_p=0.95, seed=1)
    greedy = SamplingOptions(max_tokens=64, temperature=0.0)
    requests = [(conversation(q), sampled) for q in QUESTIONS[:4] for _ in range(4)] + [(conversation(q), greedy) for q in QUESTIONS]
    results = []
    chosen = backend_of(engine.model)
    for host in (True, False):
        if not host and isinstance(chosen, CpuBackend):
            use_backend(engine.model, CpuBackend(numpy_decode=False))
        try:
            start = time.perf_counter()
            answers = engine.complete_requests(requests)
            results += [time.perf_counter() - start, sum(len(engine.tokenizer.encode(a)) for a in answers)]
        finally:
            use_backend(engine.model, chosen)
    return tuple(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None)
    parser.add_argument("--max-tokens", type=int, default=128)
    args = parser.parse_args()
    model, tokenizer, model_id = load_model(args.model)
    engine = ChatEngine(model, tokenizer, model_id)
    # Decode speed with no repetition penalty: the raw engine, comparable to other runtimes.
    opts = SamplingOptions(max_tokens=args.max_tokens, repetition_penalty=None)
    timed_turn(ChatEngine(model, tokenizer), [{"role": "user", "content": "Hello"}], SamplingOptions(max_tokens=8))  # warm-up
    messages = [{"role": "user", "content": LONG_PROMPT}]
    ttft1, answer, last1 = timed_turn(engine, messages, opts)
    messages += [{"role": "assistant", "content": answer}, {"role": "user", "content": "Now list the action items."}]
    ttft2, _, last2 = timed_turn(engine, messages, opts)
    host_s, host_tokens, mlx_s, mlx_tokens = batched_answers(engine)
    rows = [
        ("model", model_id, ""),
        ("prompt tokens (turn 1)", last1.prompt_tokens, ""),
        ("prompt tok/s", last1.prompt_tps, ""),
        ("decode tok/s", last1.generation_tps, ">= 17"),
        ("TTFT turn 1 (s)", ttft1, ""),
        ("turn 2: tokens computed / reused", f"{last2.prompt_tokens} / {last2.cached_tokens}", ""),
        ("TTFT turn 2 (s)", ttft2, "<= 0.3"),
        ("decode tok/s turn 2", last2.generation_tps, ">= 17"),
        ("batch of 22 answers: host path (s)", host_s, ""),
        ("batch of 22 answers: mlx-lm BatchGenerator (s)", mlx_s, ""),
        ("batch of 22 answers: host / mlx-lm tok/s", (host_tokens / host_s) / (mlx_tokens / mlx_s), ""),
        ("peak RSS (MB)", peak_rss_mb(), ""),
    ]
    report("generate", rows)


if __name__ == "__main__":
    main()
