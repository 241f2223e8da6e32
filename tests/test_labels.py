"""A classification answer must pick one of the offered labels: ``no_label`` in the quality guard.

The failing answers are the embedded model's and its adapters' answers to the quick eval's headline prompt (issue
18): the option list read back, or a description naming no topic; the passing ones are the base model's real
answers to the bundled classification prompts, which reason over several labels before or after choosing one.
"""

import pytest

from asls_mlx.data_files import load_prompts
from asls_mlx.profiling.labels import offered_labels, picks_no_label
from asls_mlx.profiling.quality import quality_issues

HEADLINE = ('What is the topic of this headline: sports, politics, business, science or entertainment? Give the label '
            'and a short reason.\n"Local startup raises $12 million to build cheaper batteries for e-bikes"')
SENTIMENT = ('Classify the sentiment of this review as positive, negative or mixed, and give one sentence of reason:\n'
             '"The room was spotless and the staff were lovely, but the walls were so thin we barely slept."')
TICKETS = ('Label each of these customer messages as billing, technical or shipping:\n1. "I was charged twice this '
           'month."\n2. "The app crashes when I open settings."\n3. "My package says delivered but it isn\'t here."')


@pytest.mark.parametrize("answer", [
    'The topic of this headline is "Sports, Politics, Business, Science or Entertainment."',
    'The topic of this headline is "Sport, Politics, Business, Science."',
    "Sports, Politics, Business, Science",
    "This headline focuses on a local startup that aims to create affordable electric bicycles with lower costs.",
])
def test_an_answer_that_reads_the_labels_back_or_names_none_picks_no_label(answer):
    assert "no_label" in quality_issues(HEADLINE, answer)


@pytest.mark.parametrize("prompt, answer", [
    (HEADLINE, "Business: a startup raising money is company news."),
    (HEADLINE, 'The topic of this headline is "Business & Economy"'),
    (SENTIMENT, "This review has a mixed sentiment due to both positive and negative aspects."),  # real
    (TICKETS, "1. Billing\n2. Technical\n3. Shipping"),  # each message labelled: all labels may appear
    ("Which department should handle this request: HR, IT or Facilities? Give the label and one reason.\n"
     '"The heating in meeting room 2 is broken."', "Facilities, because the heating is part of the building."),
    ("Why is the sky blue?", "Sunlight scatters off air molecules, blue light the most."),
])
def test_an_answer_that_picks_a_label_passes(prompt, answer):
    assert not picks_no_label(prompt, answer)


FACT = 'Decide whether this statement is a fact or an opinion and explain:\n"Paris is the capital of France."'
SPAM = 'Is this email spam or not spam? Give the label and one reason.\n"You won a FREE cruise! Click here."'


@pytest.mark.parametrize("prompt, answer", [
    (FACT, "The statement is not a fact or opinion based on subjective perception."),  # profile-in-prompt's, real
    (FACT, "To determine whether the statement is a fact or an opinion, we need to consider the evidence."),
    (SPAM, "Whether an email is spam or not spam depends on who sent it and why."),
])
def test_an_answer_that_only_restates_the_alternatives_picks_no_label(prompt, answer):
    assert picks_no_label(prompt, answer)


@pytest.mark.parametrize("prompt, answer", [
    (FACT, "It is a fact. Whether a claim is a fact or an opinion depends on evidence, and this one can be checked."),
    (SPAM, "Spam: a free prize and a link to click are the classic signs."),
    (SPAM, "Not spam or spam? It is spam."),
])
def test_an_answer_that_decides_besides_restating_the_alternatives_passes(prompt, answer):
    assert not picks_no_label(prompt, answer)


def test_the_labels_of_every_bundled_classification_prompt_are_read():
    rows = {r["id"]: r["prompt"] for r in load_prompts()}
    assert offered_labels(rows["classify-02"]) == ["spam", "not spam"]
    assert offered_labels(rows["classify-06"]) == ["low", "medium", "high"]
    assert offered_labels(rows["classify-10"]) == ["HR", "IT", "facilities"]
    assert all(offered_labels(p) for i, p in rows.items() if i.startswith("classify"))
    assert not [i for i, p in rows.items() if offered_labels(p) and not i.startswith("classify")]
    assert picks_no_label(rows["classify-10"], "Send it to the item desk.")  # neither "it" nor "item" is "IT"
    assert not picks_no_label(rows["classify-10"], "IT: the laptop is theirs to fix.")
