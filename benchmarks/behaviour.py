"""A fingerprint of what the product does, to show that a refactor changed nothing.

    python benchmarks/behaviour.py OUT.json      # then: diff before.json after.json

Through the public API, on the embedded model, with a fresh ASLS_HOME: greedy answers to a dozen
prompts (the chat's streaming path) and as one batch (the batched path), a scripted 10-turn session
with edits, regenerations, thumbs and a correction, then the session update with no wall-clock limit
(so the number of steps depends on the data only, not on how busy the machine is), its decision and
metrics, and the greedy answers with the new adapter. Timings are left out; everything else must be
identical between two versions that claim the same behaviour.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile

PROMPTS = [
    "Tell me about the moon.", "How do I boil an egg?", "What is a black hole?", "Give me tips for sleeping better.",
    "Explain what a mortgage is.", "Tell me about honey bees.", "What is photosynthesis?", "How do vaccines work?",
    "Tell me about chess.",
]
QUESTIONS = ["What is the capital of France?", "How do I reverse a list in Python?", "Write a haiku about autumn.",
             "What is 12 times 7?"]


def shorten(text: str) -> str:
    first = text.split(". ")[0].split()[:20]
    return " ".join(first).rstrip(".") + "."


def plain(value):
    """JSON-able view of a report: dataclasses as dicts, timings dropped."""
    if dataclasses.is_dataclass(value):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items() if k not in ("seconds", "timings") and not k.endswith("_s")}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value if isinstance(value, (int, float, str, bool, type(None))) else repr(value)


def fingerprint() -> dict:
    import asls_mlx  # noqa: F401
    from asls_mlx import Assistant, AssistantConfig

    out: dict = {}
    config = AssistantConfig(max_tokens=96, train_after_session="none", train_budget_s=1e6)
    with Assistant(user="behaviour", config=config) as a:
        turns = []
        for i, prompt in enumerate(PROMPTS):
            reply = a.chat(prompt)
            turns.append(reply.text)
            if i % 2 == 0:
                a.edit(shorten(reply.text))
            elif i in (1, 5):
                turns.append(a.regenerate().text)
                a.good()
            else:
                a.bad()
        turns.append(a.chat("Please keep your answers shorter.").text)
        out["session"] = turns
        report = a.end_session(train="wait")
        out["update"] = plain(report)
        out["adapter_version"] = a.adapter_version if hasattr(a, "adapter_version") else None
        out["after"] = [a.chat(q).text for q in QUESTIONS + PROMPTS[:3]]
    return out


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    with tempfile.TemporaryDirectory() as home:
        os.environ["ASLS_HOME"] = home
        result = fingerprint()
    with open(sys.argv[1], "w") as f:
        json.dump(result, f, indent=1, sort_keys=True)
    print(json.dumps(result, indent=1, sort_keys=True)[:3000])


if __name__ == "__main__":
    main()
