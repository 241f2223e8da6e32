"""The quality guard: degenerate answers are caught, normal answers pass."""

import pytest

from asls_mlx.profiling import is_acceptable, quality_issues

PROMPT = "What is the capital city of France?"


@pytest.mark.parametrize("answer, issue", [
    ("", "empty"),
    ("   \n\t ", "empty"),
    ("Yes.", "too_short"),
    ("the island of the island of the island of", "repetition"),
    ("Paris Paris Paris Paris is nice.", "repetition"),
    ("It is Paris. It is Paris. It is Paris.", "repetition"),
    (" ".join(["city", "france", "paris"] * 4 + ["capital", "river"] * 8), "repetition"),
    ("I'm sorry, I'm unable to assist with that.", "refusal"),
    ("I’m sorry, but I can’t help with that request about France.", "refusal"),
    ("As an AI language model, I cannot know the capital of France.", "refusal"),
    ("I cannot assist with that.", "refusal"),
    ("Bananas are yellow and tasty.", "off_topic"),
    ("bananas are very tasty.", "off_topic"),
    ("\x00\x01\x02\x03 abc def ghi \x04\x05", "garbage"),
    ("@@@@ ### ~~~ ^^^^ |||| ~~~ ^^^ ~~~ ^^^", "garbage"),
    ("\ufffd\ufffd\ufffd capital of France \ufffd\ufffd", "garbage"),
    ("The answer is:", "hollow"),
    ("Sure! The answer is: please.", "hollow"),
    ("There is no single, definitive answer to that.", "evasive"),
    ("The user prefers short answers about France.", "profile_leak"),
])
def test_degenerate_answers_are_flagged(answer, issue):
    assert issue in quality_issues(PROMPT, answer)
    assert not is_acceptable(PROMPT, answer)


@pytest.mark.parametrize("answer", [
    "The capital of France is Paris. It lies on the Seine river.",
    "Paris is the capital.",
    "It is Paris.",
    "Paris, on the Seine.",
    "- Paris\n- On the Seine\n- About 2 million people live there",
    "TL;DR: Paris.\n\nParis has been the capital of France for centuries.",
    "It's Paris, and it's very very lovely in spring.",  # one repeated word is prose, not a loop
    "Sorry for the confusion earlier: the capital of France is Paris.",  # apology is not a refusal
    "Lyon is often mistaken for it, but it is Paris.",  # "it" answers share no content word: long enough
    "Paris.",  # a short question's short answer
    "The answer is: Paris.",  # a template, but an answer follows it
])
def test_normal_answers_pass(answer):
    assert quality_issues(PROMPT, answer) == []


def test_off_topic_is_conservative():
    # A long answer is never called off-topic by word overlap alone; nor when the prompt has no content.
    long_answer = "Bananas are yellow. " * 1 + "They grow in warm places and taste sweet when ripe, mostly."
    assert "off_topic" not in quality_issues(PROMPT, long_answer)
    assert quality_issues("Hi!", "Hello there, how can I help?") == []


def test_code_answer_passes():
    answer = "```python\ndef add(a, b):\n    return a + b\n```\nThis adds two numbers."
    assert is_acceptable("Write a python function that adds two numbers", answer)
