"""How often a sampled answer is still right, by temperature: what self-labelled pairs are made of.

    python benchmarks/sample_correctness.py [--questions 40] [--k 4]

Self-labelled pairs rank k sampled answers to a past prompt by the profile and train on the best one as
chosen, so a sample that gets the content wrong can become an answer the adapter learns. The embedded model
answers questions of the bundled correctness set greedily and k times sampled (top-p 0.95, top-k 256, as
the assistant samples) at several temperatures; the table gives the share of answers the checker accepts.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import asls_mlx  # noqa: F401,E402  (BLAS before mlx)
from common import report  # noqa: E402

from asls_mlx import AssistantConfig  # noqa: E402
from asls_mlx.correctness import is_correct, load_correctness_set  # noqa: E402
from asls_mlx.engine import ChatEngine, load_model  # noqa: E402
from asls_mlx.engine.generate import SamplingOptions  # noqa: E402
from asls_mlx.engine.models import resolve_model  # noqa: E402
from asls_mlx.engine.sampling import single_turn  # noqa: E402

TEMPERATURES = (0.0, 0.4, 0.6, 0.8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--questions", type=int, default=40)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=48)
    a = ap.parse_args()
    items = load_correctness_set()
    random.Random(0).shuffle(items)
    items = items[: a.questions]
    model, tokenizer, model_id = load_model(str(resolve_model(None, progress=lambda m: None)))
    engine = ChatEngine(model, tokenizer, model_id)
    rows, seconds = [], {}
    system = AssistantConfig().system_prompt  # the assistant samples self-labelled answers under it
    for temperature in TEMPERATURES:
        k = 1 if temperature == 0 else a.k
        options = SamplingOptions(max_tokens=a.max_tokens, temperature=temperature, top_p=0.95, top_k=256, seed=0)
        t0 = time.perf_counter()
        answers = engine.complete_batch([single_turn(system, q.question) for q in items],
                                        options, k=k)
        seconds[temperature] = round(time.perf_counter() - t0, 1)
        right = [is_correct(q, answer, q.question) for q, group in zip(items, answers) for answer in group]
        rows.append((f"right at temperature {temperature} ({len(right)} answers)", sum(right) / len(right), ""))
    report("sample_correctness", rows, {"questions": a.questions, "k": a.k, "seconds": seconds})


if __name__ == "__main__":
    main()
