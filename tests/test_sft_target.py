"""What the SFT term imitates of a pair whose chosen answer adds a line to the rejected one (``sft_on_change``)."""

import asls_mlx  # noqa: F401
import mlx.core as mx
import pytest

from adaptation_fixtures import fresh_model
from asls_mlx.adaptation.batching import TrainBatch, encode_pairs, no_retention
from asls_mlx.adaptation.logprobs import pair_batch, rows_logps
from asls_mlx.adaptation.lora import LoraConfig, lora_parameters, set_lora_weights
from asls_mlx.adaptation.losses import dpo
from asls_mlx.adaptation.sft_target import added_opening, adds_one_line, with_sft_rows
from asls_mlx.store import PreferencePair

ANSWER = "Cast iron wants heat and oil. Scrub it with salt, rinse it, dry it on the stove and oil it thinly."


@pytest.mark.parametrize("chosen, rejected, added", [
    ("Stir.\n\nWould you like a bread recipe too?", "Stir.", True),
    ("Stir.\n\nWould you like a bread recipe too?", "Stir.\n\nThen ser", True),  # a cut end replaced
    ("```\nx = 1\n```\n\nWant tests?", "```\nx = 1", True),  # a closing fence is markup, not a line
    ("Stir.\nWhat else?", "Stir.\nWhen it boils, serve.", True),  # parted within the line's first word
    ("Stir and serve hot.", "Stir and wait, then taste.", False),  # parted mid-line: a rewrite
    ("Stir.", "Stir.\n\nThen taste it.", False),  # cut short: nothing added
    ("Stir.\n\nTaste it.\n\nWant more?", "Stir.", False),  # two lines added
    ("Stir.\n\n" + "Then taste it and season. " * 10, "Stir.", False),  # a paragraph, not a line
    ("1. Stir\n2. Serve", "Boil the water first.", False),  # nothing shared
])
def test_adds_one_line_tells_an_added_line_from_a_rewrite(chosen, rejected, added):
    assert adds_one_line(chosen, rejected) is added


@pytest.mark.parametrize("chosen, rejected, opening", [
    ("In short: salt, heat, oil.\n\n" + ANSWER, ANSWER, "In short: salt, heat, oil.\n\n"),
    ("In short: salt, heat, oil.\n\n" + ANSWER[:30], ANSWER[:30] + " Then the un", "In short: salt, heat, oil.\n\n"),
    ("Here's how:\n\n" + ANSWER, ANSWER, None),  # a lead-in announces the rest: no line of its own
    ("In short: salt.\n\n" + ANSWER[:30], ANSWER, None),  # keeps a third of the answer: a rewrite
    ("In short: salt.\n\n" + ANSWER, "In short: salt.\n\n" + ANSWER + " More.", None),  # the same opening
    ("In short: salt. " + ANSWER, ANSWER, None),  # no line of its own
    ("Wash it.\n\nOil it.", ANSWER, None),  # nothing kept
])
def test_added_opening_finds_a_line_put_before_the_answer(chosen, rejected, opening):
    assert added_opening(chosen, rejected) == opening


def test_an_added_opening_line_is_the_sft_terms_whole_target_and_the_preference_is_unchanged(tiny_model_dir):
    model, tok = fresh_model(tiny_model_dir, LoraConfig(rank=4))
    mx.random.seed(3)
    set_lora_weights(model, {k: v + 0.05 * mx.random.normal(v.shape) for k, v in lora_parameters(model).items()})
    pair = PreferencePair("How do I clean a cast iron pan?", "In short: salt, heat, oil.\n\n" + ANSWER, ANSWER,
                          "edit", 1.0)
    whole, line = (encode_pairs(tok, [pair], 256, shared_head=s)[0] for s in (False, True))
    assert whole.sft_tokens is None and line.chosen == whole.chosen  # the preference sees the whole answer
    assert tok.decode(list(line.chosen[:line.sft_tokens])).strip() == "In short: salt, heat, oil."

    def metrics(rows):
        b, inputs = pair_batch(model, [(line.prompt, line.chosen, line.rejected)])
        b = with_sft_rows(b, rows) if rows else b
        zero = mx.zeros((1,))
        batch = TrainBatch(inputs, b.positions, b.targets, b.select, mx.ones((1,)), zero, zero, *no_retention())
        return dpo(model, batch)[1]

    plain, focused = metrics(None), metrics([line.sft_tokens])
    assert focused["accuracy"].item() == plain["accuracy"].item()
    assert focused["margin"].item() == pytest.approx(plain["margin"].item(), abs=1e-5)
    k = line.sft_tokens
    expected = -rows_logps(model, [(line.prompt, line.chosen[:k])]).item() / k
    assert focused["sft"].item() == pytest.approx(expected, rel=1e-4)
    assert abs(focused["sft"].item() - plain["sft"].item()) > 1e-3
