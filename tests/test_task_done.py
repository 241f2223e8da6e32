"""Answers that leave the task undone: offered or announced instead of done, not shorter, no citation form.

The failing answers are the adapters' (and, for citations, the embedded base model's) own, from the stored quick
evals; the passing ones are what a person would accept, and the follow-up persona's own closing questions."""

import pytest

from adaptation_fixtures import WordTokenizer
from asls_mlx.data_files import load_prompts
from asls_mlx.evaluation.open_rules import append_follow_up, follow_up_question
from asls_mlx.profiling.content import drops_content
from asls_mlx.profiling.quality import quality_issues
from asls_mlx.profiling.task_done import announces_only, defers_task, no_citation, not_shorter, offers_the_task

MLA = ("Format this book as an MLA 9 citation: author Laura Finch, title The Quiet Coast, publisher Harrow Press, "
       "year 2016.")
ELEVATOR = ('Make this paragraph shorter without losing anything important:\n"We wanted to take a moment to let '
            'everyone know that, due to the fact that the elevator in the east building will be undergoing scheduled '
            'maintenance work on Monday through Wednesday, it will not be available for use by residents or visitors '
            'from Monday morning until Wednesday evening of next week. We apologize for any inconvenience."')
GOLDFISH = ('Give me a one-sentence summary of this paragraph:\n"Many people think that goldfish have a memory of only '
            'three seconds, but studies have shown that they can remember things for months."')


@pytest.mark.parametrize("prompt, answer", [
    (MLA, "The Quiet Coast, published by Harrow Press, is a must-read for anyone interested in literature and "
          "history.\n\nWould you like me to provide the MLA 9 citation?"),
    (MLA, "The Quiet Coast is a novel by Laura Finch and published by Harrow Press in 2016.\n\nWould you like me to "
          "add the MLA 9 citation?"),
    (ELEVATOR, "We want to help others understand a important detail about a project.\nWould you like me to make the "
               "paragraph shorter with some key details?"),
    (GOLDFISH, "Here's a one-sentence summary of the paragraph:\n\nWould you like me to provide a longer summary with "
               "your key details?"),
    ("Write a Python function to check if a number is prime.",
     "Here's a simple and efficient way to check if a number is prime in Python:"),
    ("How many millilitres are in 2 litres?",  # the follow-up user's adapter, on the correctness set
     "To convert a volume to liters, you need to divide the volume by the density of water.\n\nWould you like me to "
     "calculate it for you?"),
    ("What is 64 divided by 4?", "We can divide both numbers by their greatest common factor.\n\nShall I work it out?"),
])
def test_an_answer_that_offers_or_announces_the_task_deferred_it(prompt, answer):
    assert "deferred" in quality_issues(prompt, answer)


@pytest.mark.parametrize("prompt, answer", [
    (MLA, "Finch, Laura. The Quiet Coast. Harrow Press, 2016.\n\nWould you like the same reference in another "
          "citation style?"),
    ("Explain what inflation is.", "Inflation is a general rise in prices that lowers what money can buy.\n\n"
                                   "Would you like to know more about what inflation is?"),
    (GOLDFISH, "Here's a one-sentence summary:\n\nGoldfish remember things for months, not three seconds."),
    ("Write a Python function to check if a number is prime.",
     "Here it is:\n```python\ndef is_prime(n):\n    for d in range(2, n):\n        if n % d == 0:"),  # cut by the budget
    ("Write a Python function that reverses a string.",  # the code-first user moves the code before its lead-in
     "```python\ndef rev(s):\n    return s[::-1]\n```\n\nYou can use slicing, which walks the string backwards. For example:"),
    ("Write three interview questions for a barista.", "Here are three:\n1. Why coffee?\n2. Why here?\n3. Why now?"),
    ("How can I improve my sleep?", "Go to bed at the same time each night and keep screens out of the bedroom.\n\n"
                                    "Would you like me to suggest an evening routine?"),
    ("How many grams are in 2 kilograms?",  # the result is there: the odd offer after it defers nothing
     "One kilogram is 1000 grams. So, 2 kg * 1000 g = 2000 g.\n\nWould you like me to calculate it for you?"),
    ("How many centimetres are in 3 metres?", "There are 300 centimetres in 3 metres.\n\nWould you like me to "
                                              "convert other lengths too?"),
    ("Explain how a budget works.", "A budget plans what you earn against what you spend.\n\nWould you like me to "
                                    "calculate one for you?"),  # asked for no number
])
def test_an_answer_that_does_the_task_and_offers_more_is_not_deferred(prompt, answer):
    assert not defers_task(prompt, answer)


def test_the_follow_up_persona_s_own_closing_questions_never_defer_the_task():
    """The follow-up user ends every answer with such a question: it must never make an answer fail."""
    answer = "Paris is the capital of France, on the Seine."
    for row in load_prompts():
        prompt = row["prompt"]
        closed = append_follow_up(prompt, answer)
        assert closed.endswith(follow_up_question(prompt)) and not offers_the_task(prompt, closed), prompt
        assert not announces_only(prompt, closed), prompt


def test_the_gates_answer_cut_after_its_lead_in_did_not_defer():
    """A lead-in with nothing after it ended there in a chat answer; the gate's 64-token answer may have been cut."""
    from asls_mlx.session_update import gate_quality_issues

    lead_in = "Here's a simple and efficient way to check if a number is prime in Python, step by step:"
    prompt = "Write a Python function to check if a number is prime."
    assert "deferred" in gate_quality_issues(WordTokenizer(), 64)(prompt, lead_in)
    assert "deferred" not in gate_quality_issues(WordTokenizer(), len(lead_in.split()))(prompt, lead_in)


@pytest.mark.parametrize("answer, flagged", [
    (ELEVATOR.split("\n", 1)[1], True),  # the base model reads the notice back
    ('Here\'s a revised version with fewer words: "We wanted to take a moment to let everyone know that, due to the '
     'fact that the elevator in the east building will be undergoing scheduled maintenance work on Monday through '
     'Wednesday, it will not be available for use by residents or visitors from Monday morning until Wednesday '
     'evening of next week."', True),  # the lead-in does not count: the text itself lost five words of 61
    ('Here is a shorter version: "The east building elevator is closed for maintenance Monday to Wednesday."\n\n'
     "Would you like another version with a different tone?", False),
])
def test_a_shortened_text_no_shorter_than_its_input_is_not_shorter(answer, flagged):
    assert not_shorter(ELEVATOR, answer) is flagged
    assert not not_shorter("Summarize this paragraph:\n" + ELEVATOR.split("\n", 1)[1], answer)  # no shortening asked


def test_a_shortened_text_that_keeps_no_day_or_name_dropped_the_content():
    assert drops_content(ELEVATOR, "We want to make sure everyone knows about the upcoming schedule updates.")
    assert not drops_content(ELEVATOR, "The east building elevator is closed for maintenance Monday to Wednesday.")


@pytest.mark.parametrize("prompt, answer, flagged", [
    (MLA, "The Quiet Coast is a novel by Laura Finch and published by Harrow Press in 2016.", True),
    (MLA, "Finch, Laura. The Quiet Coast. Harrow Press, 2016.", False),
    (MLA, "Finch, L. (2016). The quiet coast. Harrow Press.", False),  # the wrong style is not checked here
    ("Write a Chicago-style bibliography entry for this book: Samuel Ortega, Maps of the Inner Sea, Bluewater "
     "University Press, Chicago, 2012.", "Samson Ortega, Maps of the Inner Sea, Bluewater University Press.", True),
    ("Format this journal article in APA: authors Yuki Tanaka, Priya Raman and Leo Fischer; year 2020",
     "Yuki Tanaka, Priya Raman and Leo Fischer (2020).", True),  # "Tanaka, Priya" is a list, not a surname first
    ("Convert this MLA citation to APA 7:\nBrooks, Martin. The History of Salt Roads. Eastgate Books, 2008.",
     "Brooks, M. (2008). The history of salt roads. Eastgate Books.", False),
    ("Convert this MLA citation to APA 7:\nBrooks, Martin. The History of Salt Roads. Eastgate Books, 2008.",
     "The History of Salt Roads. Eastgate Books, 2009.", True),
    ("Who was Laura Finch?", "Laura Finch is a novelist.", False),  # no citation asked
    ("Format this as an APA citation: website, 2022, www.example.org", "Example. (2022).", False),  # no name to check
])
def test_a_citation_without_an_authors_surname_first_is_no_citation(prompt, answer, flagged):
    assert no_citation(prompt, answer) is flagged
    assert ("no_citation" in quality_issues(prompt, answer)) is flagged


def test_every_bundled_citation_prompt_is_read_as_one():
    citations = [r["prompt"] for r in load_prompts() if r["category"] == "citation"]
    assert len(citations) >= 8 and all(no_citation(p, "A fine book.") for p in citations)
    assert not any(no_citation(r["prompt"], "A fine book.") for r in load_prompts() if r["category"] != "citation")
