"""The correctness set and its checker (asls_mlx/evaluation/correctness.py): the data loads and is sound,
and each rule of the checker decides at least one case on its own."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from asls_mlx.evaluation.correctness import (
    CATEGORIES,
    CorrectnessItem,
    accuracy_by_category,
    base_accuracy_kept,
    correctness_rate,
    is_correct,
    judge,
    load_correctness_set,
    tokens,
)

ITEMS = load_correctness_set()
BY_ID = {it.id: it for it in ITEMS}


def item(question: str, accepted, **kw) -> CorrectnessItem:
    return CorrectnessItem(id="t", category="facts", question=question, accepted=tuple(accepted), **kw)


CAPITAL = item("What is the capital of Australia?", ["Canberra"])
SUM = item("What is 17 + 25?", ["42", "forty-two"])
TIMES_ONE = item("What is 7 times 1?", ["7", "seven"])
METRES = item("How many centimetres are in 3 metres?", ["300"], allow=("1", "100"))
CAPS = item("Write the word 'orange' in capital letters.", ["ORANGE"], case_sensitive=True)


def test_set_loads_with_enough_items_in_every_category():
    assert len(ITEMS) >= 120
    assert len(BY_ID) == len(ITEMS), "ids must be unique"
    counts = Counter(it.category for it in ITEMS)
    assert set(counts) == set(CATEGORIES)
    assert min(counts.values()) >= 15, counts
    assert all(it.question.strip() and it.accepted for it in ITEMS)


def test_every_accepted_answer_passes_alone_and_echoing_the_question_never_does():
    for it in ITEMS:
        for accepted in it.accepted:
            assert judge(it, accepted) == "correct", (it.id, accepted)
            assert is_correct(it, f"The answer is {accepted}."), (it.id, accepted)
        assert not is_correct(it, it.question), it.id
        assert not is_correct(it, ""), it.id


@pytest.mark.parametrize("answer", [
    "The capital of Australia is Canberra.",
    "canberra",
    "Canberra, not Sydney, is the capital.",
    "**Canberra** is Australia's capital city.",
])
def test_correct_answers(answer):
    assert judge(CAPITAL, answer) == "correct"


def test_correct_answers_with_working_and_allowed_numbers():
    assert is_correct(SUM, "17 + 25 = 42")
    assert is_correct(SUM, "Forty-two.")
    assert is_correct(SUM, "forty two")  # a hyphen between words is not part of the word
    assert is_correct(METRES, "1 metre is 100 centimetres, so 3 metres is 300 centimetres.")
    assert is_correct(TIMES_ONE, "7 times 1 is 7.")


@pytest.mark.parametrize("answer", ["Sydney.", "The capital is Melbourne.", "Canberr", "Canberras"])
def test_wrong_answers(answer):
    assert judge(CAPITAL, answer) == "wrong"


def test_wrong_number_and_word_numbers_only_where_listed():
    assert judge(SUM, "17 + 25 = 43") == "wrong"
    assert judge(SUM, "420") == "wrong"
    assert judge(item("What is 6 times 7?", ["42"]), "forty-two") == "wrong"


def test_case_matters_only_where_the_item_says_so():
    assert judge(CAPS, "ORANGE") == "correct"
    assert judge(CAPS, "Orange") == "wrong"
    assert judge(CAPITAL, "CANBERRA") == "correct"


def test_hedge_with_another_number_not_in_the_question():
    # no "or": only the number rule can reject this
    assert judge(SUM, "It is 42. It could also be 44.") == "hedge"
    # the question's own numbers and the item's allowed numbers are not candidates
    assert judge(SUM, "Adding 17 and 25 gives 42.") == "correct"
    assert judge(METRES, "There are 300 centimetres in 3 metres, since 1 metre is 100 centimetres.") == "correct"
    assert judge(item(METRES.question, ["300"]), "3 metres is 300 cm: 1 metre is 100 cm.") == "hedge"


def test_numbers_in_the_working_are_not_candidates():
    # only numbers stated as results count: "by 10" and "add 1" are working, "equal to 75" is the result
    times = item("What is 3 times 25?", ["75"])
    assert judge(times, "Multiply both sides by 10: 3 * 25 = 75. So 3 times 25 is equal to 75.") == "correct"
    assert judge(item("What is 11 times 11?", ["121"]), "Add 1 to that result: 11 * 11 = 121.") == "correct"
    assert judge(times, "3 * 25 = 75, so 3 times 25 is equal to 70.") == "hedge"
    assert judge(times, "3 * 25 = 75 ≈ 80") == "hedge"


def test_hedge_between_named_candidates():
    assert judge(CAPITAL, "Sydney or Canberra.") == "hedge"
    assert judge(CAPITAL, "It is Canberra/Sydney.") == "hedge"
    mice = item("What is the plural of 'mouse'?", ["mice"])
    assert judge(mice, "The plural is mice (or mouses).") == "hedge"
    # stated plainly once, the answer stands even if an alternative is mentioned with "or" elsewhere
    assert judge(CAPITAL, "Canberra. People often guess Sydney or Melbourne.") == "correct"
    assert judge(CAPITAL, "Sydney or Canberra? It is Canberra.") == "correct"


@pytest.mark.parametrize("answer", [
    "The answer is:",
    "Sure! Here is the answer:",
    "7 times 1",  # the question's echo holds the accepted "7", yet states nothing
    "The answer is: What is 7 times 1?",
])
def test_hollow_answers(answer):
    assert judge(TIMES_ONE, answer) == "hollow"


@pytest.mark.parametrize("answer", [
    "I'm not sure, but maybe Canberra.",
    "I'm sorry, but I can't answer that. It might be Canberra.",
    "I don't know. Canberra?",
    "As an AI, I have no opinion, though Canberra is often named.",
    "There is no single, definitive answer; Canberra is one option.",
])
def test_refusals_are_rejected_even_when_they_name_the_answer(answer):
    assert judge(CAPITAL, answer) == "refusal"


def test_empty():
    assert judge(CAPITAL, "   \n") == "empty"
    assert judge(CAPITAL, None) == "empty"


def test_number_normalisation():
    assert tokens("1,000 and 12.0 and 12.50 and 0.75") == ["1000", "and", "12", "and", "12.5", "and", "0.75"]
    big = item("What is 1000 + 250?", ["1250"])
    assert is_correct(big, "1,250")
    assert is_correct(big, "It is 1250.0.")
    assert not is_correct(big, "125")
    assert is_correct(["1000"], "One thousand is 1,000.")


def test_accepted_list_without_an_item():
    assert is_correct(["Paris"], "It is Paris.")
    assert not is_correct(["Paris"], "Lyon")
    assert is_correct("Paris", "Paris!")
    # the question given alongside makes echo and question numbers count
    assert not is_correct(["7"], "7 times 1", question="What is 7 times 1?")


def test_rates_per_category_and_kept_ratio():
    items = [CAPITAL, SUM, TIMES_ONE, METRES]
    base = ["Canberra", "42", "7", "300"]
    adapted = ["Canberra", "The answer is:", "7", "Sydney"]
    assert correctness_rate(items, base) == 1.0
    assert correctness_rate(items, adapted) == 0.5
    assert base_accuracy_kept(base, adapted, items) == 0.5
    assert base_accuracy_kept(["Canberra", "x", "x", "x"], adapted, items) == 2.0
    assert math.isnan(base_accuracy_kept(["x"] * 4, adapted, items))
    cats = [BY_ID["fact-00"], BY_ID["arith-00"], BY_ID["fact-01"]]
    assert accuracy_by_category(cats, ["Paris", "41", "Kyoto"]) == {"facts": 0.5, "arithmetic": 0.0}
    with pytest.raises(ValueError):
        correctness_rate(items, base[:3])


def test_a_gate_probe_answer_that_adds_a_true_number_is_right():
    """A concise user's adapter was turned down for "A square has four equal sides, which is the definition of a
    ..." (the rest stated the angles): the probe allows the numbers a right answer about a square states."""
    from asls_mlx.correctness import load_gate_probes

    square = next(p for p in load_gate_probes() if "square" in p.question)
    assert judge(square, "A square has four equal sides, which is the definition of a square: all sides are "
                         "equal and the angles are 90 degrees.") == "correct"
    assert judge(square, "A square has 4 sides, or maybe 5.") == "hedge"
