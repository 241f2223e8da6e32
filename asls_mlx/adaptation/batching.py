"""Pairs -> token ids -> length-bucketed batches that mark answer tokens only.

A pair is anything with the attributes of ``asls_mlx.store.PreferencePair`` (``prompt``,
``chosen``, ``rejected`` (None for unpaired thumbs), ``weight``, ``label``). The prompt is the user
message as one user turn (optionally after a system turn) rendered by the tokenizer's chat template
with the generation prompt; the answer is the answer's tokens plus eos.

Shapes are rounded up (sequence length and answer-token count to multiples of ``BUCKET``) so that a
compiled step sees fewer distinct shapes. The granularity is small because on the CPU padding costs
more than tracing a new shape (docs/performance.md, "Training").

A training step consumes a ``TrainBatch``: the rows' arrays plus the weights, reference log-probs and
retention rows of that step, named.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import mlx.core as mx
import numpy as np

from asls_mlx.adaptation.sft_target import added_opening, adds_one_line
from asls_mlx.engine.generate import common_prefix

BUCKET = 8  # shape granularity: padding waste < 8 tokens per row and segment


@dataclass(frozen=True)
class EncodedPair:
    prompt: tuple[int, ...]
    chosen: tuple[int, ...]
    rejected: tuple[int, ...] | None  # None: an unpaired answer (``chosen``) with ``label`` +-1
    weight: float
    label: int
    key: str  # sha256 of the token ids: the reference log-prob cache key
    sft_tokens: int | None = None  # the SFT term imitates the chosen answer's first n tokens only (None: all)

    @property
    def length(self) -> int:
        return len(self.prompt) + max(len(self.chosen), len(self.rejected or ()))


def round_up(n: int, multiple: int = BUCKET) -> int:
    return max(multiple, -(-n // multiple) * multiple)


def prompt_ids(tokenizer, prompt: str, system: str | None = None) -> list[int]:
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    return list(ids["input_ids"] if isinstance(ids, dict) else ids)


def answer_ids(tokenizer, answer: str) -> list[int]:
    return list(tokenizer.encode(answer, add_special_tokens=False)) + [tokenizer.eos_token_id]


def truncate(prompt: list[int], answer: list[int], max_length: int) -> tuple[list[int], list[int]]:
    """Fit prompt + answer into ``max_length``: keep the prompt's tail and the answer's head.

    The answer keeps at most ``max_length - min(len(prompt), max_length // 2)`` tokens, so each side
    is guaranteed at least half the room when both are long.
    """
    if len(prompt) + len(answer) <= max_length:
        return prompt, answer
    keep_answer = min(len(answer), max_length - min(len(prompt), max_length // 2))
    keep_prompt = max_length - keep_answer
    return prompt[len(prompt) - keep_prompt :], answer[:keep_answer]


def pair_key(prompt, chosen, rejected) -> str:
    h = hashlib.sha256()
    for part in (prompt, chosen, rejected or ()):
        h.update(np.asarray(part, dtype=np.int32).tobytes())
        h.update(b"|")
    return h.hexdigest()[:32]


def with_replay(pairs, replay_pairs, fraction: float, seed: int) -> list:
    """``pairs`` plus older pairs drawn (seeded, without replacement) from ``replay_pairs`` so that
    they make up ``fraction`` of the result (at least one when there are any and 0 < fraction < 1)."""
    pool = list(pairs)
    replay = list(replay_pairs)
    if replay and 0 < fraction < 1:
        want = min(len(replay), int(round(len(pool) * fraction / (1 - fraction))) or 1)
        rng = np.random.default_rng([seed, 7])
        pool += [replay[i] for i in sorted(rng.choice(len(replay), size=want, replace=False))]
    return pool


def shared_head_as_context(prompt: list[int], chosen: list[int], rejected: list[int],
                           adds_only: bool = False) -> tuple[list, list, list]:
    """Move the answers' common first tokens to the end of the prompt: the answers start where they differ.

    For a pair too long to fit, keeping the answers' heads can keep only what they share: a user who added a closing
    question to a full-length chat answer (256 tokens) gave a chosen and a rejected answer that are the same tokens
    once cut, and the pair taught nothing but the answer's head. DPO's log-ratios of a shared head cancel between
    chosen and rejected, so as context it changes nothing of the preference; the SFT term then imitates what the
    user's version adds, not the model's own words before it. Pairs that fit are encoded as they are.

    ``adds_only``: only when the chosen answer goes on past the shared head (a closing question added): one that
    only stops there (an answer cut short) keeps its whole text as the SFT term's target."""
    shared = common_prefix(chosen, rejected)
    if shared >= min(len(chosen), len(rejected)) or adds_only and len(chosen) - shared <= 1:
        return prompt, chosen, rejected  # one answer is the other's start (or both are the same): nothing to move
    return prompt + chosen[:shared], chosen[shared:], rejected[shared:]


def encode_pair(tokenizer, pair, max_length: int = 512, system: str | None = None,
                shared_head: bool = False) -> EncodedPair:
    """``pair`` as token ids fitted into ``max_length``. ``shared_head`` (``LearningConfig.sft_on_change``): the SFT
    term imitates what the user added. A line added at the end (``adds_one_line``): the answers' shared head goes
    into the context (``shared_head_as_context``; without the option only when the pair is too long). A line added
    at the start (``added_opening``): ``sft_tokens`` counts its tokens, and the SFT term imitates those alone."""
    p = prompt_ids(tokenizer, pair.prompt, system)
    c_full = answer_ids(tokenizer, pair.chosen)
    r_full = answer_ids(tokenizer, pair.rejected) if pair.rejected is not None else None
    fits = r_full is None or len(p) + max(len(c_full), len(r_full)) <= max_length
    sft_tokens = None
    if r_full is not None and (not fits or shared_head and adds_one_line(pair.chosen, pair.rejected)):
        p, c_full, r_full = shared_head_as_context(p, c_full, r_full, adds_only=fits)
    elif r_full is not None and shared_head and (opening := added_opening(pair.chosen, pair.rejected)):
        sft_tokens = len(answer_ids(tokenizer, opening)) - 1  # the line's tokens, without the eos
    # Both answers must see the same prompt: truncate for the longer one.
    longest = c_full if r_full is None or len(c_full) >= len(r_full) else r_full
    p_t, _ = truncate(p, longest, max_length)
    c = truncate(p_t, c_full, max_length)[1]
    r = truncate(p_t, r_full, max_length)[1] if r_full is not None else None
    label = int(getattr(pair, "label", 0) or 0)
    if r is None and label == 0:
        label = 1
    return EncodedPair(tuple(p_t), tuple(c), tuple(r) if r is not None else None, float(getattr(pair, "weight", 1.0)),
                       label, pair_key(p_t, c, r), min(sft_tokens, len(c)) if sft_tokens else None)


def encode_pairs(tokenizer, pairs, max_length: int = 512, system: str | None = None,
                 shared_head: bool = False) -> list[EncodedPair]:
    return [encode_pair(tokenizer, p, max_length, system, shared_head) for p in pairs]


@dataclass
class Batch:
    """Rows of prompt+answer, with the answer-token positions gathered flat.

    inputs (R, L) int32: tokens[:-1] per row, right-padded with 0.
    positions (A,) int32: flat index into the (R, L) grid of each position whose *next* token is an
        answer token; targets (A,) the answer token; select (R, A) float32: 1 where answer token a
        belongs to row r (0 for padding entries), so ``select @ token_logps`` sums per row.
    counts (R,) float32: answer tokens per row.
    """

    inputs: mx.array
    positions: mx.array
    targets: mx.array
    select: mx.array
    counts: mx.array

    @property
    def n_tokens(self) -> int:
        return int(self.inputs.shape[0] * (self.inputs.shape[1] + 1))

    def arrays(self) -> tuple[mx.array, ...]:
        return (self.inputs, self.positions, self.targets, self.select)


@dataclass
class TrainBatch:
    """The arrays one training step needs, named; ``arrays()`` is their order as the compiled step takes them.

    inputs, positions, targets, select: a ``Batch`` or ``PairedBatch`` of the step's examples (``inputs``
        the token ids, the frozen blocks' cached outputs, or a ``PairedBatch.inputs`` triple); for pair
        losses all chosen rows come first, then all rejected rows.
    weights (n,): each example's confidence weight.
    reference_chosen, reference_rejected (n,): the base model's answer log-probs (DPO), else zeros.
    retention_inputs (k, L) / (k, L, D), retention_mask (k, L), retention_top, retention_index (k, L, topk):
        general-text rows and the base model's top-k next-token log-probs on them; k = 0 without retention.
    n_tokens: tokens the step processes (rows x padded length), for throughput; not an array.
    """

    inputs: mx.array | tuple
    positions: mx.array
    targets: mx.array
    select: mx.array
    weights: mx.array
    reference_chosen: mx.array
    reference_rejected: mx.array
    retention_inputs: mx.array
    retention_mask: mx.array
    retention_top: mx.array
    retention_index: mx.array
    n_tokens: int = 0

    def arrays(self) -> tuple:
        return (
            self.inputs, self.positions, self.targets, self.select, self.weights, self.reference_chosen,
            self.reference_rejected, self.retention_inputs, self.retention_mask, self.retention_top, self.retention_index,
        )

    @property
    def n_examples(self) -> int:
        """Examples (pairs, or single answers) in the batch."""
        return self.weights.shape[0]


def no_retention() -> tuple[mx.array, mx.array, mx.array, mx.array]:
    """Empty retention arrays (inputs, mask, top, index) for steps without general text."""
    return mx.zeros((0, 1), mx.int32), mx.zeros((0, 1), mx.float32), mx.zeros((0, 1, 1)), mx.zeros((0, 1, 1), mx.int32)


def collate(rows: list[tuple[tuple[int, ...], tuple[int, ...]]], bucket: int = BUCKET) -> Batch:
    """Build a ``Batch`` from (prompt_ids, answer_ids) rows, shapes rounded up to ``bucket``."""
    n = len(rows)
    length = round_up(max(len(p) + len(a) - 1 for p, a in rows), bucket)
    n_answer = round_up(sum(len(a) for _, a in rows), bucket)
    inputs = np.zeros((n, length), np.int32)
    positions = np.zeros(n_answer, np.int32)
    targets = np.zeros(n_answer, np.int32)
    select = np.zeros((n, n_answer), np.float32)
    k = 0
    for r, (p, a) in enumerate(rows):
        seq = list(p) + list(a)
        inputs[r, : len(seq) - 1] = seq[:-1]
        start = len(p) - 1  # input position whose next token is the first answer token
        m = len(a)
        positions[k : k + m] = r * length + start + np.arange(m)
        targets[k : k + m] = a
        select[r, k : k + m] = 1.0
        k += m
    return Batch(mx.array(inputs), mx.array(positions), mx.array(targets), mx.array(select), mx.array(select.sum(1)))


@dataclass
class PairedBatch:
    """Pairs whose chosen and rejected answers share one run of their prompt.

    The prompt segment is ``prompt[:-1]`` per pair, left-padded to (n, Lp) (``prompt_valid`` marks
    real tokens); the answer segment is ``[prompt[-1]] + answer[:-1]`` per row, chosen rows then
    rejected rows, right-padded to (2n, La): every answer-segment position predicts an answer token.
    Left padding keeps each prompt's last token next to its answers, and RoPE only sees relative
    positions, so attention equals that of the unshared rows. positions/targets/select/counts as in
    ``Batch``, indexing the (2n, La) answer grid.
    """

    prompts: mx.array
    prompt_valid: mx.array
    answers: mx.array
    positions: mx.array
    targets: mx.array
    select: mx.array
    counts: mx.array

    @property
    def inputs(self) -> tuple[mx.array, mx.array, mx.array]:
        return (self.prompts, self.prompt_valid, self.answers)

    @property
    def n_tokens(self) -> int:
        """Tokens of the (prompt + answer) rows this batch stands for, as ``Batch.n_tokens`` counts them."""
        return int(self.answers.shape[0] * (self.prompts.shape[1] + self.answers.shape[1]))

    def arrays(self) -> tuple:
        return (self.inputs, self.positions, self.targets, self.select)


def collate_pairs(pairs: list[tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]], bucket: int = BUCKET) -> PairedBatch:
    """Build a ``PairedBatch`` from (prompt_ids, chosen_ids, rejected_ids), shapes rounded up to ``bucket``."""
    n = len(pairs)
    lp = round_up(max(len(p) - 1 for p, _, _ in pairs), bucket)
    answers = answer_rows(pairs)
    la = round_up(max(len(a) for _, a in answers), bucket)
    n_answer = round_up(sum(len(a) for _, a in answers), bucket)
    prompts = np.zeros((n, lp), np.int32)
    valid = np.zeros((n, lp), bool)
    for i, (p, _, _) in enumerate(pairs):
        if len(p) > 1:
            prompts[i, lp - len(p) + 1 :] = p[:-1]
            valid[i, lp - len(p) + 1 :] = True
    inputs = np.zeros((2 * n, la), np.int32)
    positions = np.zeros(n_answer, np.int32)
    targets = np.zeros(n_answer, np.int32)
    select = np.zeros((2 * n, n_answer), np.float32)
    k = 0
    for r, (p, a) in enumerate(answers):
        m = len(a)
        inputs[r, :m] = (p[-1], *a[:-1])
        positions[k : k + m] = r * la + np.arange(m)
        targets[k : k + m] = a
        select[r, k : k + m] = 1.0
        k += m
    return PairedBatch(
        mx.array(prompts), mx.array(valid), mx.array(inputs), mx.array(positions), mx.array(targets),
        mx.array(select), mx.array(select.sum(1)),
    )


def answer_rows(pairs: list[tuple]) -> list[tuple]:
    """(prompt, answer) rows of (prompt, chosen, rejected) pairs: all chosen answers first, then all rejected ones."""
    return [(p, c) for p, c, _ in pairs] + [(p, r) for p, _, r in pairs]


def pair_rows(pairs: list[EncodedPair]) -> list[tuple]:
    """``answer_rows`` of encoded pairs."""
    return answer_rows([(p.prompt, p.chosen, p.rejected) for p in pairs])


def text_batch(tokenizer, texts, max_length: int = 64, bucket: int = BUCKET) -> tuple[mx.array, mx.array]:
    """General text for retention/perplexity: (tokens (N, L) int32, mask (N, L-1) float32 over targets)."""
    ids = [list(tokenizer.encode(t, add_special_tokens=False))[:max_length] for t in texts]
    ids = [x for x in ids if len(x) >= 2]
    if not ids:
        return mx.zeros((0, 2), mx.int32), mx.zeros((0, 1), mx.float32)
    length = round_up(max(len(x) for x in ids) - 1, bucket) + 1
    tokens = np.zeros((len(ids), length), np.int32)
    mask = np.zeros((len(ids), length - 1), np.float32)
    for i, x in enumerate(ids):
        tokens[i, : len(x)] = x
        mask[i, : len(x) - 1] = 1.0
    return mx.array(tokens), mx.array(mask)


def batch_schedule(lengths: list[int], batch_size: int, seed: int, start: int, count: int) -> list[list[int]]:
    """Indices of the batches for global steps ``start .. start+count-1``, a pure function of its inputs.

    Each epoch e: shuffle with rng(seed, e), sort by length (stable, so ties stay shuffled), cut into
    full batches of similar length (the last one topped up from the epoch's start), shuffle the batch
    order. Being a function of the global step makes a resumed run see the same batches as an
    uninterrupted one.
    """
    n = len(lengths)
    if n == 0 or count <= 0:
        return []
    batch_size = min(batch_size, n)
    per_epoch = -(-n // batch_size)
    out = []
    epochs = {}
    for step in range(start, start + count):
        e, b = divmod(step, per_epoch)
        if e not in epochs:
            rng = np.random.default_rng([seed, e])
            perm = rng.permutation(n)
            order = perm[np.argsort(np.asarray(lengths)[perm], kind="stable")].tolist()
            order += order[: per_epoch * batch_size - n]
            batches = [order[i * batch_size : (i + 1) * batch_size] for i in range(per_epoch)]
            epochs[e] = [batches[i] for i in rng.permutation(per_epoch)]
        out.append(epochs[e][b])
    return out


def free_openings(tokenizer, tokens: mx.array, mask: mx.array, n: int) -> mx.array:
    """``mask`` (``text_batch``'s) without the targets of the first ``n`` answer tokens of each row that is a chat
    turn: those after the last assistant header (``add_generation_prompt``'s tokens) in the row."""
    if n <= 0:
        return mask
    bare = tokenizer.apply_chat_template([{"role": "user", "content": "x"}], tokenize=True)
    full = tokenizer.apply_chat_template([{"role": "user", "content": "x"}], add_generation_prompt=True, tokenize=True)
    header = list(full)[len(list(bare)):]
    if not header:
        return mask
    rows, out = np.asarray(tokens).tolist(), np.array(mask)
    for i, row in enumerate(rows):
        starts = [j for j in range(len(row) - len(header) + 1) if row[j:j + len(header)] == header]
        if starts:
            first = starts[-1] + len(header)  # the first answer token; mask column t predicts token t + 1
            out[i, max(first - 1, 0):first - 1 + n] = 0.0
    return mx.array(out)
