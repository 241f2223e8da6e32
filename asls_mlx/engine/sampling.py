"""Batched sampling helpers: many prompts decoded together (cheap on CPU, where decoding is memory-bound)."""

from __future__ import annotations

from asls_mlx.engine.generate import ChatEngine, SamplingOptions


def single_turn(system: str, prompt: str) -> list[dict]:
    """A conversation of one user message under ``system``."""
    return [{"role": "system", "content": system}, {"role": "user", "content": prompt}]


class BatchSampler:
    """The ``generate(prompt, k, seed)`` that pair mining calls, answering from one batched decode of
    every prompt it announced with ``prefetch`` (decoding 16 sequences together costs little more
    than one on a CPU, where decoding is memory-bound)."""

    def __init__(self, engine: ChatEngine, system: str, options: SamplingOptions,
                 also: list[tuple[list[dict], SamplingOptions]] = ()):
        """``also``: other requests (e.g. the commit gate's greedy answers) decoded in the same batch
        as the first ``prefetch``; their answers land in ``also_answers``."""
        self.engine, self.system, self.options = engine, system, options
        self.also, self.also_answers = list(also), None
        self._ready: dict[tuple[str, int], list[str]] = {}

    def prefetch(self, requests: list[tuple[str, int, int]]) -> None:
        if requests:
            self.options.seed = requests[0][2]
        rows = [(prompt, k) for prompt, k, _seed in requests for _ in range(k)]
        extra = self.also if self.also_answers is None else []
        texts = self.engine.complete_requests(
            [(single_turn(self.system, prompt), self.options) for prompt, _ in rows] + extra
        )
        if self.also_answers is None:
            self.also_answers = texts[len(rows) :]
        for (prompt, k), text in zip(rows, texts):
            self._ready.setdefault((prompt, k), []).append(text)

    def __call__(self, prompt: str, k: int, seed: int) -> list[str]:
        if (prompt, k) not in self._ready:
            self.options.seed = seed
            self._ready[(prompt, k)] = self.engine.complete_batch([single_turn(self.system, prompt)], self.options, k=k)[0]
        return self._ready.pop((prompt, k))


def greedy_answers(engine: ChatEngine, prompts: list[str], system: str, max_tokens: int = 48,
                   options: SamplingOptions | None = None, loras: list | None = None) -> list[str]:
    """Greedy answers to single prompts, decoded together (the commit gate's quality check).
    ``options`` (temperature 0) replaces the defaults, e.g. to keep an assistant's repetition penalty;
    ``loras``: each prompt's adapter weights when they are not the model's (``engine.row_lora``)."""
    options = options or SamplingOptions(max_tokens=max_tokens, temperature=0.0)
    return [a[0] for a in engine.complete_batch([single_turn(system, p) for p in prompts], options, loras=loras)]
