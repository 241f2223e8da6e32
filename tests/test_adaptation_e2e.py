"""End to end on the embedded model: pairs that prefer short answers make held-out answers shorter."""

import asls_mlx  # noqa: F401
import mlx_lm
import pytest

from asls_mlx.adaptation.lora import LoraConfig, attach_lora
from asls_mlx.adaptation.trainer import TrainingArgs, train_on_pairs
from asls_mlx.store import PreferencePair

pytestmark = pytest.mark.e2e

TRAIN = ["the moon", "volcanoes", "honey bees", "the Roman empire", "rainbows", "coffee", "whales", "chess"]
HELD_OUT = ["glaciers", "the violin", "tomatoes", "lighthouses"]
GENERAL = [
    "The capital of France is Paris, a city known for its museums and cafes.",
    "Water boils at one hundred degrees Celsius at sea level.",
]


def answer(model, tok, topic, max_tokens):
    prompt = tok.apply_chat_template([{"role": "user", "content": f"Tell me about {topic}."}], add_generation_prompt=True)
    return mlx_lm.generate(model, tok, prompt=prompt, max_tokens=max_tokens, verbose=False).strip()


def first_sentence(text):
    words = text.split(".")[0].split()[:12]
    return " ".join(words) + "."


def test_short_answer_pairs_make_held_out_answers_shorter(default_model_dir):
    model, tok = mlx_lm.load(str(default_model_dir))
    attach_lora(model, LoraConfig())
    pairs = []
    for topic in TRAIN:
        long = answer(model, tok, topic, 48)
        pairs.append(PreferencePair(f"Tell me about {topic}.", first_sentence(long), long, "self", 1.0))
    before = [len(tok.encode(answer(model, tok, t, 64))) for t in HELD_OUT]
    # learning, not speed, is tested here: no time budget, and all 10 steps (no epoch cap)
    result = train_on_pairs(model, tok, pairs, TrainingArgs(max_steps=10, max_epochs=None, time_limit_s=1e9), general_texts=GENERAL)
    assert not result.diverged and result.steps == 10
    after_text = [answer(model, tok, t, 64) for t in HELD_OUT]
    after = [len(tok.encode(a)) for a in after_text]
    assert all(a.strip() for a in after_text)
    assert sum(after) < 0.8 * sum(before), (before, after, after_text)
