"""Hidden states entering the first adapted block, computed once per row (``PrefixCache``).

The blocks below the adapter never change during training, so training steps, the reference pass and
the held-out metrics all start from their cached output.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from asls_mlx.adaptation.base_cache import BaseCache, array_key, base_fingerprint, cached
from asls_mlx.adaptation.batching import Batch, PairedBatch, answer_rows, collate, collate_pairs
from asls_mlx.adaptation.logprobs import paired_hidden, prefix_hidden, prefix_split_depth


class PrefixCache:
    """Hidden states entering the first adapted block, per (prompt, answer) row — or per prompt and
    per answer segment for paired batches — computed once.

    Over a session's steps each pair is seen several times, and the reference pass needs the same
    rows: the frozen blocks (14 of 30 with mlx-lm's default of adapting the last 16) run once per row.
    """

    def __init__(self, model: nn.Module):
        self.model = model
        self.depth = prefix_split_depth(model)
        self.rows: dict[tuple, mx.array] = {}  # (prompt, answer) -> the whole row's positions
        self.prompts: dict[tuple, mx.array] = {}  # prompt -> its prompt segment (``PairedBatch``)
        self.answers: dict[tuple, mx.array] = {}  # (prompt, answer) -> its answer segment

    def inputs(self, rows: list[tuple], batch: Batch) -> mx.array:
        """The model inputs for ``batch`` (collated from ``rows``): cached hidden states, or token ids."""
        if not self.depth:
            return batch.inputs
        missing = list(dict.fromkeys(r for r in rows if r not in self.rows))
        if missing:
            b = collate(missing)
            hidden = prefix_hidden(self.model, b.inputs, self.depth)
            mx.eval(hidden)
            for i, (prompt, answer) in enumerate(missing):
                self.rows[(prompt, answer)] = hidden[i, : len(prompt) + len(answer) - 1]
        width = batch.inputs.shape[1]
        # rows are right-padded; causal attention keeps padding (zeros here) out of real positions
        return mx.stack([mx.pad(self.rows[r], [(0, width - self.rows[r].shape[0]), (0, 0)]) for r in rows])

    def pair_inputs(self, pairs: list[tuple], batch: PairedBatch) -> tuple[mx.array, mx.array, mx.array]:
        """``batch.inputs`` (collated from (prompt, chosen, rejected) ``pairs``) with cached hidden states."""
        if not self.depth:
            return batch.inputs
        missing = list(dict.fromkeys(
            t for t in pairs if t[0] not in self.prompts or (t[0], t[1]) not in self.answers or (t[0], t[2]) not in self.answers
        ))
        if missing:
            b = collate_pairs(missing)
            embed = self.model.model.embed_tokens
            p_h, a_h = paired_hidden(embed(b.prompts), b.prompt_valid, embed(b.answers), self.model.model.layers[: self.depth])
            mx.eval(p_h, a_h)
            k, lp = len(missing), b.prompts.shape[1]
            for i, (prompt, chosen, rejected) in enumerate(missing):
                self.prompts[prompt] = p_h[i, lp - len(prompt) + 1 :]
                self.answers[(prompt, chosen)] = a_h[i, : len(chosen)]
                self.answers[(prompt, rejected)] = a_h[k + i, : len(rejected)]
        lp, la = batch.prompts.shape[1], batch.answers.shape[1]
        prompts = mx.stack([mx.pad(self.prompts[p], [(lp - self.prompts[p].shape[0], 0), (0, 0)]) for p, _, _ in pairs])
        answers = mx.stack([mx.pad(self.answers[r], [(0, la - self.answers[r].shape[0]), (0, 0)]) for r in answer_rows(pairs)])
        return prompts, batch.prompt_valid, answers

    def text_inputs(self, tokens: mx.array, base_cache: BaseCache | None = None) -> mx.array:
        """The model inputs predicting ``tokens[:, 1:]`` (general text): hidden states or token ids. Not kept here;
        kept in ``base_cache`` when given: the frozen blocks' output on the bundled texts and the base model's
        anchor answers is the base model's alone, the same in every update (20 rows of 136 positions: 1.8 s)."""
        inputs = tokens[:, :-1]
        if not self.depth:
            return inputs
        if base_cache is None:
            return prefix_hidden(self.model, inputs, self.depth)

        def compute() -> dict:
            hidden = prefix_hidden(self.model, inputs, self.depth)
            return {"hidden": np.asarray(hidden.astype(mx.float32)), "dtype": np.array(str(hidden.dtype).split(".")[-1])}

        kept = cached(base_cache, "frozen-blocks", array_key(inputs, self.depth, base_fingerprint(self.model)),
                      ("hidden", "dtype"), compute)
        return mx.array(kept["hidden"]).astype(getattr(mx, str(kept["dtype"])))


__all__ = ["PrefixCache"]
