"""Is an answer about its prompt, whatever its length? The base model's pointwise mutual information.

    pmi(prompt, answer) = log p(answer | prompt) - log mean_j p(answer | reference prompt j)

under the base model (every LoRA scale 0), per answer token. An answer that answers its question is far more
likely after that question than after unrelated ones (PMI well above 0); an answer written for another
question is less likely after this one (PMI below 0); a content-free answer ("The answer is:", "Sure, I can
help with that.") is about as likely after any prompt (PMI near 0). The text checks of
``profiling.quality`` judge only what an answer looks like; this one judges whether it belongs to its
prompt, so it also catches a fluent, long, well-formed answer to something else.

The threshold (0.5 nats per token) is calibrated on the embedded model (``benchmarks/relevance_calibration.py``,
120 greedy answers to 60 built-in prompts and 60 correctness questions): 1.7% of its own answers are flagged,
95.0% of the same answers swapped between prompts, 95.0% of content-free ones by the PMI alone and all of them
with the text checks ("Great question!" scores up to 1.0 but is hollow). 0.6 would still flag <= 5% of own
answers (4.2%), too close to the limit on 120 answers.
"""

from __future__ import annotations

import math

from asls_mlx.adaptation.batching import answer_ids, prompt_ids, truncate
from asls_mlx.adaptation.logprobs import rows_logps
from asls_mlx.adaptation.lora import adapter_disabled
from asls_mlx.engine.backend_choice import backend_of

# Everyday requests of the kinds people ask (a fact, a how-to, an explanation, a piece of writing): an answer
# about as likely after all of them as after its own prompt (a template, an apology, an answer to another
# question of the same kind) gains nothing from its prompt. Unrelated kinds (a poem, code) made a factual answer to
# the wrong question look relevant: "12 times 3 is 36." after "What is the capital of France?" scored 0.73.
REFERENCE_PROMPTS = (
    "What is the tallest mountain in Africa?",
    "How do I clean a cast iron pan?",
    "Explain how a refrigerator keeps food cold.",
    "Write a short thank-you note to a colleague.",
)
# Mean PMI per answer token at or below which an answer is not about its prompt (see the module doc).
PMI_THRESHOLD = 0.5
MAX_LENGTH = 256  # tokens of prompt + answer
# The answer's head shows whether it answers; the tail only costs time (each answer is read 1 + 4 times).
MAX_ANSWER_TOKENS = 32


def answer_pmi(model, tokenizer, prompts: list[str], answers: list[str], system: str | None = None,
               references: tuple[str, ...] = REFERENCE_PROMPTS, batch_size: int = 16) -> list[float]:
    """Mean PMI per answer token of each (prompt, answer) under the base model (adapter off).

    A reference prompt equal to the answer's own prompt is skipped. Empty answers get -inf (nothing there
    belongs to the prompt).
    """
    rows, spans = [], []
    for prompt, answer in zip(prompts, answers):
        refs = [r for r in references if r != prompt]
        ans = answer_ids(tokenizer, answer or "")[:MAX_ANSWER_TOKENS]
        start = len(rows)
        for context in (prompt, *refs):
            rows.append(truncate(prompt_ids(tokenizer, context, system), ans, MAX_LENGTH))
        spans.append((start, len(rows), len(ans)))
    with adapter_disabled(model):
        logps = backend_of(model).answer_logps(model, rows)
        if logps is None:
            logps = []
            for i in range(0, len(rows), batch_size):
                logps += rows_logps(model, rows[i : i + batch_size]).tolist()
    out = []
    for (start, end, n_tokens), answer in zip(spans, answers):
        if not (answer or "").strip():
            out.append(-math.inf)
            continue
        own, refs = logps[start], logps[start + 1 : end]
        top = max(refs)
        ref_mean = top + math.log(sum(math.exp(x - top) for x in refs) / len(refs))
        out.append((own - ref_mean) / max(n_tokens, 1))
    return out


def irrelevant(pmi: float, threshold: float = PMI_THRESHOLD) -> bool:
    """Whether an answer with this PMI per token is not about its prompt."""
    return not pmi > threshold


def relevance_flags(model, tokenizer, prompts: list[str], answers: list[str], system: str | None = None,
                    threshold: float = PMI_THRESHOLD) -> list[bool]:
    """For each (prompt, answer): True when the answer is not about its prompt (``irrelevant``)."""
    return [irrelevant(x, threshold) for x in answer_pmi(model, tokenizer, prompts, answers, system)]


__all__ = ["PMI_THRESHOLD", "REFERENCE_PROMPTS", "answer_pmi", "irrelevant", "relevance_flags"]
