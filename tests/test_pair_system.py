"""The pairs' system turn (``LearningConfig.pair_system``): trained and validated after the chat's system prompt when
``AssistantConfig.pairs_in_chat_prompt`` is on, after the tokenizer's default one otherwise."""

import mlx_lm
import pytest

from adaptation_fixtures import fresh_model
from asls_mlx import AssistantConfig
from asls_mlx.adaptation.batching import prompt_ids
from asls_mlx.adaptation.config import LearningConfig
from asls_mlx.adaptation.train_data import training_examples
from asls_mlx.adaptation.validation import preference_metrics
from asls_mlx.store.records import PreferencePair

PAIR = PreferencePair("How do I boil an egg?", "Boil it for nine minutes.", "Eggs are nice.", "edit", 1.0)


def test_the_config_gives_the_chats_system_prompt_only_when_asked():
    assert AssistantConfig().learning_config().pair_system is None
    on = AssistantConfig(pairs_in_chat_prompt=True, system_prompt="Answer plainly.")
    assert on.learning_config().pair_system == "Answer plainly."
    assert AssistantConfig.from_dict(on.to_dict()).learning_config().pair_system == "Answer plainly."  # the worker's


@pytest.mark.parametrize("system", [None, "Answer plainly."])
def test_training_and_held_out_pairs_are_encoded_after_that_system_turn(tiny_model_dir, system):
    _, tokenizer = mlx_lm.load(str(tiny_model_dir))
    args = LearningConfig(pair_system=system).training_args()
    (example,) = training_examples(tokenizer, [PAIR], [], args)
    assert example.prompt == tuple(prompt_ids(tokenizer, PAIR.prompt, system))
    assert (tokenizer.encode("Answer plainly.", add_special_tokens=False)[0] in example.prompt) == (system is not None)


def test_held_out_metrics_read_the_pairs_after_the_same_system_turn(tiny_model_dir):
    model, tokenizer = fresh_model(tiny_model_dir)
    refs: dict = {}
    preference_metrics(model, tokenizer, [PAIR], refs, system="Answer plainly.")
    args = LearningConfig(pair_system="Answer plainly.").training_args()
    (example,) = training_examples(tokenizer, [PAIR], [], args)
    assert list(refs) == [example.key]  # the reference computed for validation is the one training reads
