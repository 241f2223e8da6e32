"""Generation speed of the embedded default model: prompt and decode tok/s, time to first token
on turn 1 and turn 2 (prompt cache reused), peak RSS. Goals (2-core CPU): decode >= 17 tok/s,
turn-2 TTFT <= 0.3 s.

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
    rows = [
        ("model", model_id, ""),
        ("prompt tokens (turn 1)", last1.prompt_tokens, ""),
        ("prompt tok/s", last1.prompt_tps, ""),
        ("decode tok/s", last1.generation_tps, ">= 17"),
        ("TTFT turn 1 (s)", ttft1, ""),
        ("turn 2: tokens computed / reused", f"{last2.prompt_tokens} / {last2.cached_tokens}", ""),
        ("TTFT turn 2 (s)", ttft2, "<= 0.3"),
        ("decode tok/s turn 2", last2.generation_tps, ">= 17"),
        ("peak RSS (MB)", peak_rss_mb(), ""),
    ]
    report("generate", rows)


if __name__ == "__main__":
    main()
