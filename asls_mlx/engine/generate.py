"""Streaming chat generation with a prompt (KV) cache reused across the turns of a conversation.

Turn N of a conversation shares its whole prefix with turn N-1 (the earlier messages and the answer
just generated), so we keep the KV cache and only feed the tokens that are new. The cache is trimmed
back to the longest common token prefix whenever the conversation changes in the middle (regenerate,
edit, a new system text), and dropped when the model's weights change (adapter swap).

How the tokens are computed is the model's backend's business (``backend_choice.backend_of``):
NumPy loops on the CPU, mlx-lm's loops elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

from asls_mlx.errors import ASLSError


@dataclass
class GenerationChunk:
    """One streamed piece of an answer.

    text: the new text (may be empty while a multi-byte character is incomplete).
    token: the token id just generated.
    finish_reason: None while streaming, then "stop" (EOS), "length" (max_tokens) or "interrupted".
    prompt_tokens: prompt tokens actually computed this turn (the rest came from the cache).
    cached_tokens: prompt tokens reused from the cache.
    prompt_tps / generation_tps: tokens per second; peak_memory in GB.
    truncated: True when old turns were dropped to fit the context window.
    """

    text: str
    token: int
    finish_reason: str | None = None
    prompt_tokens: int = 0
    cached_tokens: int = 0
    prompt_tps: float = 0.0
    generation_tokens: int = 0
    generation_tps: float = 0.0
    peak_memory: float = 0.0
    truncated: bool = False


@dataclass
class SamplingOptions:
    max_tokens: int = 256
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    # the nucleus is sought among the 256 most likely tokens only: no full-vocabulary sort per step
    top_k: int = 256
    seed: int | None = None
    # Small models loop ("the island of the island of ..."); a mild penalty keeps answers readable.
    repetition_penalty: float | None = 1.1
    repetition_context: int = 64


@dataclass
class _CacheState:
    cache: list | None = None
    tokens: list[int] = field(default_factory=list)


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


class ChatEngine:
    """A loaded model + tokenizer that streams chat answers, reusing the prompt cache between turns.
    ``backend`` is the model's (``backend_of``), which generates the tokens."""

    def __init__(self, model, tokenizer, model_id: str = "model", context_window: int | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.model_id = model_id
        self.context_window = context_window or _context_window(model)
        self._state = _CacheState()

    @property
    def backend(self):
        from asls_mlx.engine.backend_choice import backend_of

        return backend_of(self.model)

    # -- prompt building -------------------------------------------------------------------------
    def encode_chat(self, messages: list[dict], reserve: int = 0) -> tuple[list[int], bool]:
        """Token ids for ``messages`` + the assistant header; drop the oldest turns to fit the window."""
        if not messages or messages[-1].get("role") != "user":
            raise ASLSError("a chat request must end with a user message")
        budget = max(64, self.context_window - reserve)
        system = [m for m in messages[:1] if m["role"] == "system"]
        turns = messages[len(system) :]
        truncated = False
        while True:
            ids = self.tokenizer.apply_chat_template(system + turns, add_generation_prompt=True)
            if len(ids) <= budget or len(turns) == 1:
                break
            turns, truncated = turns[2:] if len(turns) > 2 else turns[-1:], True
        if len(ids) > budget:  # a single huge message: keep its head and tail
            keep = budget // 2
            ids, truncated = ids[:keep] + ids[-(budget - keep) :], True
        return list(ids), truncated

    # -- cache ----------------------------------------------------------------------------------
    def reset_cache(self) -> None:
        """Forget the prompt cache (after the weights changed)."""
        self._state = _CacheState()

    def _reuse_cache(self, ids: list[int]) -> tuple[list, int]:
        from mlx_lm.models.cache import can_trim_prompt_cache, make_prompt_cache, trim_prompt_cache

        state = self._state
        if state.cache is not None:
            keep = min(common_prefix(state.tokens, ids), len(ids) - 1)  # always feed >= 1 token
            drop = len(state.tokens) - keep
            if keep > 0 and (drop == 0 or can_trim_prompt_cache(state.cache)):
                if drop:
                    trim_prompt_cache(state.cache, drop)
                return state.cache, keep
        return make_prompt_cache(self.model), 0

    # -- generation -----------------------------------------------------------------------------
    def stream(self, messages: list[dict], options: SamplingOptions | None = None) -> Iterator[GenerationChunk]:
        """Stream the answer to ``messages`` (a list of {"role", "content"} dicts ending with the user's turn)."""
        import mlx.core as mx

        opts = options or SamplingOptions()
        ids, truncated = self.encode_chat(messages, reserve=opts.max_tokens)
        cache, cached = self._reuse_cache(ids)
        if opts.seed is not None:
            mx.random.seed(opts.seed)
        backend = self.backend
        sampler = _sampler(opts, backend)
        # the penalty looks back over the cached part of the prompt too: the answer is the same as without the cache
        processors = _processors(opts, ids[:cached]) or None
        generated: list[int] = []
        self._state = _CacheState()  # invalid until we know what the cache holds
        try:
            steps = backend.stream_generate(
                self.model,
                self.tokenizer,
                mx.array(ids[cached:]),
                max_tokens=opts.max_tokens,
                sampler=sampler,
                logits_processors=processors,
                prompt_cache=cache,
            )
            for r in steps:
                eos = r.token in self.tokenizer.eos_token_ids
                generated.append(r.token)
                chunk = GenerationChunk(
                    text="" if eos else r.text,
                    token=r.token,
                    finish_reason=r.finish_reason,
                    prompt_tokens=len(ids) - cached,
                    cached_tokens=cached,
                    prompt_tps=r.prompt_tps,
                    generation_tokens=r.generation_tokens,
                    generation_tps=r.generation_tps,
                    peak_memory=r.peak_memory,
                    truncated=truncated,
                )
                yield chunk
        finally:
            # Generation runs one step ahead, so the cache may hold every token yielded (EOS too) or
            # all but the last; its offset says which. Also right after an interruption (Ctrl-C).
            offset = getattr(cache[0], "offset", 0)
            all_tokens = ids + generated
            if 0 < offset <= len(all_tokens):
                self._state = _CacheState(cache, all_tokens[:offset])

    def complete(self, messages: list[dict], options: SamplingOptions | None = None) -> str:
        """The whole answer as one string."""
        return "".join(c.text for c in self.stream(messages, options)).strip()

    def complete_batch(self, conversations: list[list[dict]], options: SamplingOptions | None = None, k: int = 1,
                       loras: list | None = None) -> list[list[str]]:
        """``k`` answers to each conversation, decoded together in one batch (much faster than one by one
        on CPU: decoding is matrix-vector work, batching makes it matrix-matrix). ``loras``: each conversation's
        adapter weights (``engine.row_lora``), when they are not the model's. Leaves the chat cache alone."""
        opts = options or SamplingOptions()
        if not conversations or k < 1:
            return [[] for _ in conversations]
        texts = self.complete_requests([(c, opts) for c in conversations for _ in range(k)],
                                       None if loras is None else [w for w in loras for _ in range(k)])
        return [texts[i * k : (i + 1) * k] for i in range(len(conversations))]

    def complete_requests(self, requests: list[tuple[list[dict], SamplingOptions]], loras: list | None = None) -> list[str]:
        """One answer per ``(conversation, options)``, all decoded in one batch even when their options
        differ (greedy next to sampled rows, different lengths) or their adapter weights do (``loras``, one per
        request: ``engine.row_lora``). Leaves the chat cache alone."""
        import mlx.core as mx

        from asls_mlx.engine.backend import Row

        if not requests:
            return []
        seeds = [o.seed for _, o in requests if o.seed is not None]
        if seeds:
            mx.random.seed(seeds[0])
        backend = self.backend
        # rows with the same options share one sampler object: mlx-lm then samples them in one call
        samplers: dict[int, object] = {}
        processors: dict[int, list] = {}
        for _, o in requests:
            if id(o) not in samplers:
                samplers[id(o)] = _sampler(o, backend)
                processors[id(o)] = _processors(o)
        sampled = {id(o) for _, o in requests if o.temperature > 0}
        if len(sampled) == 1 and len(samplers) > 1:
            # Greedy rows next to one kind of sampled row: one shared sampler, and greedy rows'
            # logits scaled so far apart that the sample is their argmax, so sampling stays one
            # batched call (mlx-lm's BatchGenerator calls different samplers row by row). The
            # samples still differ from a batch without the greedy rows (more rows share the draws).
            shared = samplers[next(iter(sampled))]
            for _, o in requests:
                if id(o) not in sampled and samplers[id(o)] is not shared:
                    samplers[id(o)] = shared
                    processors[id(o)] = processors[id(o)] + [_as_argmax()]
        prompts = [self.encode_chat(c, reserve=o.max_tokens)[0] for c, o in requests]
        loras = [None] * len(requests) if loras is None else loras
        if len(loras) != len(requests):
            raise ValueError(f"{len(loras)} adapter weight sets for {len(requests)} requests")
        rows = [Row(p, o.max_tokens, samplers[id(o)], processors[id(o)], lora)
                for p, (_, o), lora in zip(prompts, requests, loras)]
        answers = backend.generate_batch(self.model, rows, self.tokenizer.eos_token_ids)
        texts = [self.tokenizer.decode(a) for a in answers]
        return [t.replace(self.tokenizer.eos_token or "\0", "").strip() for t in texts]


def _processors(opts: SamplingOptions, history: list[int] = ()) -> list:
    from asls_mlx.engine.samplers import RepetitionPenalty

    return [RepetitionPenalty(opts.repetition_penalty, opts.repetition_context, history)] if opts.repetition_penalty else []


def _as_argmax():
    # gaps of 1e-5 become 10 nats at temperature 1: a sample is the argmax (float32 logits are finer
    # than that only in exact-tie cases, where greedy's choice is arbitrary too)
    from asls_mlx.engine.samplers import ScaleLogits

    return ScaleLogits(1e6)


def _sampler(opts: SamplingOptions, backend):
    from asls_mlx.engine.samplers import make_sampler

    return make_sampler(temp=opts.temperature, top_p=opts.top_p, top_k=opts.top_k, host_top_k=backend.host_top_k)


def _context_window(model) -> int:
    args = getattr(model, "args", None)
    return int(getattr(args, "max_position_embeddings", None) or 2048)
