"""A rewrite, shortening, summary or extraction of a pasted text states only the text's facts (``facts_changed``).
A user's own edit is exempt: ``tests/test_profiling_mining.py``."""

import pytest

from asls_mlx.profiling.faithfulness import changes_facts, new_facts
from asls_mlx.profiling.quality import quality_issues

ELEVATOR = ("Make this paragraph shorter without losing anything important:\n\"We wanted to take a moment to let "
            "everyone know that, due to the fact that the elevator in the east building will be undergoing scheduled "
            "maintenance work, it will not be available for use by residents or visitors from Monday morning until "
            "Wednesday evening of next week, and we apologize for any inconvenience this may cause.\"")
GOLDFISH = ("Give me a one-sentence summary of this paragraph:\n\"Many people think that goldfish have a memory of "
            "only three seconds, but studies have shown that they can remember things for months.\"")
SIGNATURE = ("Extract the email addresses and phone numbers from this signature:\n\"Best, Jordan Ellis | Sales Lead | "
             "jordan.ellis@northpeak.example | +1 415 555 0192 | support: help@northpeak.example\"")
AMOUNTS = ("Pull out every amount of money in this paragraph and say what each one is for:\n\"The venue costs $1,200, "
           "catering is $850, and we set aside $300 for decorations.\"")
APPOINTMENT = ("From this message, extract the date and the time of the appointment:\n\"Your dentist appointment is on "
               "9 May at 10:30 in the morning.\"")
MEETING = ("Rewrite this so it sounds more polite:\n\"Meeting moved to Friday 10am, room 4B. Bring twelve copies of "
           "the report or don't come.\"")


@pytest.mark.parametrize("prompt, answer, facts", [  # adapters' answers on the stored quick evals
    (ELEVATOR, "\"We wanted to take a moment to let everyone know that the elevator in the East Building will no "
               "longer be available on Monday through Thursday. We apologize for any inconvenience this may cause.\"",
     {"day:Thursday"}),
    (ELEVATOR, "We wanted to take a moment to let everyone know that the elevator in the East Building will no "
               "longer be available on Monday, March 15th, but we are sorry about any inconvenience this may cause.",
     {"month:March", "number:15"}),
    (GOLDFISH, "Studies suggest goldfish can recall events up to 12 weeks later.", {"number:12"}),
    (MEETING, "Hi all, the meeting is now on Saturday at 10:00 in room 4B. Could you please bring copies?",
     {"day:Saturday"}),
    # extractions: the base model's own answer, then adapters'
    (SIGNATURE, 'The email address is "jordan.ellis@nope.com." The phone number is "+1 415 555 0192".',
     {"email:jordan.ellis@nope.com"}),
    (AMOUNTS, "It includes the cost of the venue ($120), catering (850 dollars) and decorations ($300).",
     {"number:120"}),
    (AMOUNTS, "- Catering: 12% of the total cost ($850)\n- Venue: $1,200\n- Decorations: $300", {"number:12"}),
])
def test_a_rework_that_states_a_fact_its_input_lacks_is_flagged(prompt, answer, facts):
    assert new_facts(prompt, answer) == facts
    assert "facts_changed" in quality_issues(prompt, answer)


@pytest.mark.parametrize("prompt, answer", [
    (ELEVATOR, "The east building's elevator is out for maintenance from Monday morning to Wednesday evening next "
               "week. Sorry for the inconvenience."),
    (ELEVATOR, "Here's a revised version with only 27 words:\n\"The east elevator is closed for maintenance from "
               "Monday morning until Wednesday evening next week.\""),  # a count of its own words
    (MEETING, "Hi all, the meeting has moved to Friday at 10:00 in room 4B. May I ask you to bring 12 copies of the "
              "report?"),  # "10:00" for "10am", 12 for "twelve", "May I" is no month
    (MEETING, "Two changes:\n1. The meeting is on Friday at 10am.\n2. Please bring twelve copies."),  # list markers
    (GOLDFISH, "Goldfish remember things for months, not three seconds."),
    ("Give me a one-sentence summary of this note:\n\"The bus leaves at nine, so please be at the gate by a quarter "
     "to nine.\"", "The bus leaves at nine; be at the gate by 8:45."),  # a time in words, written in digits
    ("What happened on Monday, March 15th?", "Nothing on Thursday."),  # no pasted text reworked
    (SIGNATURE, "- Email: jordan.ellis@northpeak.example, help@northpeak.example\n- Phone: 1-415-555-0192"),
    (AMOUNTS, "1. $1,200: the venue\n2. $850: catering\n3. $300: decorations"),
    (APPOINTMENT, "The appointment is on May 9th at 10:30 a.m."),  # "9 May" is a month too
    ("Rewrite this Python code to use a with statement:\nf = open('a.txt')\ndata = f.read()\nf.close()",
     "```python\nwith open('a.txt') as f:\n    data = f.read(1024)\n```"),  # code may add a constant
])
def test_a_faithful_rework_or_another_task_passes(prompt, answer):
    assert not changes_facts(prompt, answer)
    assert "facts_changed" not in quality_issues(prompt, answer)
