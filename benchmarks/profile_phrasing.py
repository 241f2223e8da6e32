"""How a profile line should be phrased in the system prompt: fit, helpfulness and correctness.

    python benchmarks/profile_phrasing.py [--max-tokens 96] [--words 25]   # the short-answers line (concise user)
    python benchmarks/profile_phrasing.py --persona formal                 # the formal-tone line (formal user)

The profile enters every answer as a line of the system prompt. On a 135M model the wording decides whether the
answers get shorter, and whether they still do the task: an earlier rendering that described "the user" was echoed
as the answer. The embedded model answers, with no adapter, all held-out prompts of the bundled set (greedy, at the
quick eval's budget) and the whole correctness set (64 tokens) under each phrasing; the table gives the concise
persona's satisfaction (0 for an answer with any quality issue; Python code is not run here), the share of answers
with no quality issue, the correctness accuracy, the mean words, and each phrasing's paired difference from the one
the product renders (95% bootstrap intervals over prompts / questions).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import asls_mlx  # noqa: F401,E402  (BLAS before mlx)
from common import report  # noqa: E402

from asls_mlx import AssistantConfig  # noqa: E402
from asls_mlx.correctness import is_correct, load_correctness_set  # noqa: E402
from asls_mlx.data_files import load_prompts  # noqa: E402
from asls_mlx.engine import ChatEngine, load_model  # noqa: E402
from asls_mlx.engine.models import resolve_model  # noqa: E402
from asls_mlx.engine.sampling import greedy_answers  # noqa: E402
from asls_mlx.evaluation.personas import get_persona  # noqa: E402
from asls_mlx.evaluation.stats import paired_delta_ci  # noqa: E402
from asls_mlx.profiling.features import word_count  # noqa: E402
from asls_mlx.profiling.profile import PHRASES  # noqa: E402
from asls_mlx.profiling.quality import quality_issues  # noqa: E402

# persona -> (the profile feature whose line the product renders, the alternatives measured against it)
ALTERNATIVES = {
    "concise": (("length", "short"), {
        "no profile text": "",
        "task first": "Keep answers short (about {n} words), but always do the whole task.",
        "be brief": "Be brief.",
        "at most": "Answer in at most {n} words.",
        "a few sentences": "Answer directly in a few sentences.",
    }),
    "formal": (("formality", "formal"), {
        "no profile text": "",
        "no contractions": "Write without contractions, slang or exclamation marks.",
        "formal English": "Answer in formal English.",
        "task first": "Answer the question fully, in a formal tone.",
        "professional": "Write in a professional register.",
    }),
}


def _ci(delta: tuple[float, float, float]) -> str:
    return f"{delta[0]:+.3f} [{delta[1]:+.3f}, {delta[2]:+.3f}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-tokens", type=int, default=96)
    ap.add_argument("--words", type=int, default=25, help="the length the profile states (a concise user: ~25)")
    ap.add_argument("--persona", choices=sorted(ALTERNATIVES), default="concise")
    a = ap.parse_args()
    base = AssistantConfig().system_prompt
    feature, alternatives = ALTERNATIVES[a.persona]
    phrasings = {"rendered (product)": PHRASES[feature], **alternatives}
    model, tokenizer, model_id = load_model(str(resolve_model(None, progress=lambda m: None)))
    engine = ChatEngine(model, tokenizer, model_id)
    prompts = [r["prompt"] for r in load_prompts() if r["split"] == "heldout"]
    items = load_correctness_set()
    persona = get_persona(a.persona)
    scores, rows, seconds = {}, [], {}
    for name, line in phrasings.items():
        system = base + ("\n" + line.format(n=a.words) if line else "")
        t0 = time.perf_counter()
        answers = greedy_answers(engine, prompts, system, max_tokens=a.max_tokens)
        checked = greedy_answers(engine, [it.question for it in items], system, max_tokens=64)
        seconds[name] = round(time.perf_counter() - t0, 1)
        scores[name] = {
            "satisfaction": [persona.satisfies(p, x) for p, x in zip(prompts, answers)],
            "quality pass": [float(not quality_issues(p, x)) for p, x in zip(prompts, answers)],
            "correct": [float(is_correct(it, x, it.question)) for it, x in zip(items, checked)],
            "words": [float(word_count(x)) for x in answers],
        }
    product = scores["rendered (product)"]
    for name, s in scores.items():
        for metric, values in s.items():
            note = "" if s is product or metric == "words" else _ci(paired_delta_ci(values, product[metric]))
            rows.append((f"{name}: {metric}", round(sum(values) / len(values), 3), note))
    name = "profile_phrasing" if a.persona == "concise" else f"profile_phrasing_{a.persona}"
    report(name, rows, {"persona": a.persona, "prompts": len(prompts), "questions": len(items),
                        "max_tokens": a.max_tokens, "words": a.words, "phrasings": phrasings, "seconds": seconds})


if __name__ == "__main__":
    main()
