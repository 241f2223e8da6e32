"""An answer must carry what was asked for: an extraction the input's items (``content_dropped``), a list of N
things N of them (``too_few_items``) — in the quality guard, and what uses it.

The positives are answers a concise user's adapter gave on the quick eval (issue 18); the negatives are the
embedded model's own answers to the same prompts and ordinary ways of listing items.
"""

import pytest

from adaptation_fixtures import WordTokenizer
from asls_mlx.data_files import load_prompts
from asls_mlx.evaluation.metrics import score_heldout
from asls_mlx.evaluation.personas import PERSONAS
from asls_mlx.profiling.content import (EXTRACTION, MIN_ITEMS, drops_content, items, items_asked, no_body,
                                       split_instruction, too_few_items)
from asls_mlx.profiling.mining import self_labelled_pairs
from asls_mlx.profiling.profile import Feature, Profile
from asls_mlx.profiling.quality import quality_issues

MONEY = ('Pull out every amount of money in this paragraph and say what each one is for:\n"The venue costs $1,200, '
         'catering is $850, and we set aside $300 for decorations. The band asked for $640."')
DATES = ('Extract every date in this text and write each in the format YYYY-MM-DD:\n"The contract was signed on '
         'January 5, 2023, renewed on 3/15/2024, and ends on the 30th of June 2025."')
CITIES = ('List the cities mentioned in this text and the country each is in:\n"After a week in Lisbon we took the '
          'train to Madrid, flew to Rome, and ended the trip in Vienna."')
SIGNATURE = ('Extract the email addresses and phone numbers from this signature:\n"Best, Jordan Ellis | Sales Lead | '
             'jordan.ellis@northpeak.example | +1 415 555 0192 | support: help@northpeak.example"')


@pytest.mark.parametrize("answer", [
    "This sentence provides information about a specific expense associated with planning a solo trip to Europe.",
    "This sentence sets up a scenario where you need to provide information about your budget.",
    "Here's a rewritten version of your text with justifications and edits:",
    "Here is a Python function that does what you're asking for: def get_amounts(text): return []",
])
def test_an_extraction_answer_naming_none_of_the_items_dropped_the_content(answer):
    assert "content_dropped" in quality_issues(MONEY, answer)


@pytest.mark.parametrize("prompt, answer", [
    (MONEY, "The venue costs $1,200, catering is $850, decorations $300 and the band $640."),
    (CITIES, "- Lisbon (Portugal)\n- Madrid (Spain)"),  # two of four cities: partial, not dropped
    (CITIES, "- Lisbon (Portugal)\n- Madrid (Spain)\n- Rome (Italy)\n- Vienna (Austria)"),
    (DATES, "2023-01-05, 2024-03-15, 2025-06-30"),  # every date's numbers, written anew
    (DATES, "January 5, 2023; March 15, 2024; June 30, 2025"),  # the month's name is its number
    ('Extract all the names of people from this text:\n"On 12 March, Maria Lopez met David Kim at 5 pm."',
     "Maria Lopez and David Kim."),  # names asked for: the numbers are not
])
def test_an_extraction_answer_that_names_an_item_passes(prompt, answer):
    assert not drops_content(prompt, answer)


@pytest.mark.parametrize("prompt, answer", [  # adapters' answers on the quick evals, each naming some amounts
    (MONEY, "- Venue: 1200 dollars\n- Catering: 850"),
    (MONEY, "It includes details such as the venue's cost (120 dollars), catering options (850 dollars), and the amount "
            "spent by the speaker(s) to decorate the venue."),  # "120 dollars" is not $1,200
    (MONEY, '"The venue costs $1,200, catering is $850, and we\'ll set aside $300 for decorations. This includes '
            'travel to the speakers\' event."'),  # the text read back with its last amount rewritten away
    (DATES, "2023-01-05, 2025-06-30"),
    (SIGNATURE, "This is a sales lead email with customer support numbers and phone addresses."),  # names no item
    (SIGNATURE, "- Email: jordan.ellis@northpeak.example\n- Phone: +1 415 555 0192"),  # the support address left out
])
def test_an_extraction_of_every_amount_or_date_that_leaves_one_out_dropped_content(prompt, answer):
    assert "content_dropped" in quality_issues(prompt, answer)


@pytest.mark.parametrize("prompt, answer", [
    ('Rewrite this message to my neighbor so it sounds polite but still firm:\n"Your dog barked all night AGAIN. '
     'Some of us have to work in the morning."', "Could you please keep the noise down at night? Thank you."),
    ('Summarize this in two sentences:\n"The town council met on Tuesday to discuss the old train station and '
     'voted 5 to 2 to keep it."', "The council decided to keep the station."),
    ("How do I extract the files from a zip archive on Linux?", "Run unzip followed by the archive's name."),
    ('Extract the key points from this memo:\n"From Monday, the Leeds office opens at 8:30 and Anna Berg leads the '
     'new support team of 12."', "The office opens earlier and a new support team starts."),
])
def test_only_extraction_from_a_pasted_input_is_judged(prompt, answer):
    assert not drops_content(SIGNATURE, "Emails: jordan.ellis@northpeak.example, help@northpeak.example. Phone: "
                                        "+1 415 555 0192.")
    assert not drops_content(prompt, answer)


def test_every_bundled_extraction_prompt_has_items_to_check():
    judged = []
    for row in load_prompts():
        instruction, pasted = split_instruction(row["prompt"])
        if pasted is not None and EXTRACTION.search(instruction):
            judged.append(row)
            assert len(items(pasted)) >= MIN_ITEMS, row["prompt"]
    assert len(judged) >= 10 and {r["category"] for r in judged} == {"extract"}


def test_a_self_labelled_sample_that_drops_the_content_is_never_the_chosen_answer():
    short = Profile(length=Feature(2.3, 10.0, 5))  # ~10 words: the dropped-content sample fits it best
    samples = ["This sentence lists a few expenses for planning a party.",
               "The venue costs $1,200, catering $850, decorations $300 and the band $640, for the party.",
               " ".join(["The paragraph talks about money and what the money is for in a party."] * 4)]
    pair = self_labelled_pairs(short, MONEY, lambda prompt, k, seed: samples, k=3, seed=0)
    assert pair is not None and "$1,200" in pair.chosen


def test_a_dropped_content_answer_scores_nothing_in_the_eval():
    concise = PERSONAS["concise"]
    dropped = "This sentence provides information about the expenses of a party."
    listed = "Venue $1,200, catering $850, decorations $300, band $640."
    score = score_heldout(concise, [MONEY, MONEY], [dropped, listed])
    assert score.per_prompt == [0.0, concise.satisfies(MONEY, listed)] and score.per_prompt[1] > 0
    assert score.issues == {"content_dropped": 1}


def test_an_earlier_evals_answers_are_scored_again_with_the_new_check():
    from asls_mlx.evaluation.rescore import rescore
    from asls_mlx.evaluation.results import EvalResult

    concise = PERSONAS["concise"]
    prompts = [MONEY, "How can I improve my sleep?"]
    listed = "Venue $1,200, catering $850, decorations $300, band $640."
    dropped = "This sentence provides information about the expenses of a party."
    sleep = "Keep a regular bedtime and avoid screens late."
    stale = {"per_prompt": [1.0, 1.0], "pmi": [1.0, 1.0]}  # scored before the check existed

    def run(arm, answers):
        return {"persona": "concise", "arm": arm, "seed": 0, "heldout_prompts": prompts,
                "sessions": [{"session": i, "answers": a, "heldout": dict(stale)} for i, a in enumerate(answers)]}

    old = EvalResult(config={}, runs=[run("base", [[listed, sleep]]), run("asls", [[listed, sleep], [dropped, sleep]])])
    new = rescore(old)
    after = new.run("concise", "asls")["sessions"][1]["heldout"]
    assert after["per_prompt"] == [0.0, concise.satisfies(prompts[1], sleep)] and after["per_prompt"][1] > 0
    assert after["issues"] == {"content_dropped": 1} and after["pmi"] == [1.0, 1.0]
    assert new.run("concise", "base")["sessions"][0]["heldout"]["per_prompt"][0] == concise.satisfies(MONEY, listed)
    assert old.runs[1]["sessions"][1]["heldout"]["per_prompt"] == [1.0, 1.0]  # the stored result is left alone


SEVEN = "Give me a list of seven things to pack for a weekend camping trip in the fall."


@pytest.mark.parametrize("prompt, answer", [
    (SEVEN, "1. A tent with a waterproof exterior, preferably one that can withstand heavy rain and snow."),
    (SEVEN, "1. Socks"),
    (SEVEN, "1. Socks, 2. Tent, 4. Stove"),  # one line, numbered 1, 2 and then 4: two in a row
    (SEVEN, "Here's a list:\n\n1. Comfortable, waterproof clothing\n2. Sunscreen with at least SPF 30"),
    ("Name 3 colours of the rainbow.", "Red is the first colour of the rainbow."),
])
def test_a_list_that_ends_short_of_the_count_asked_has_too_few_items(prompt, answer):
    assert "too_few_items" in quality_issues(prompt, answer)


@pytest.mark.parametrize("prompt, answer", [
    (SEVEN, "1. Tent\n2. Sleeping bag\n3. Stove\n4. Food\n5. Water\n6. Headlamp\n7. Warm jacket"),
    (SEVEN, "A tent, a sleeping bag, a stove, food, water, a headlamp and a warm jacket."),
    ("Give me two tips for remembering people's names.", "Repeat the name when you meet them and link it to an image."),
    ("List four ways to reduce food waste at home.", "Plan meals. Freeze leftovers. Buy less. Compost scraps."),
    # cut off by the token budget mid-list: which items would have followed is unknown
    (SEVEN, "Here's a list of seven essentials you should pack:\n\n1. Comfortable and versatile clothing: Pack "
            "layers, including breathable fabrics like cotton or fleece, as well as waterproof gear like jackets with "
            "breathable sleeves. Don't forget hiking boots.\n\n2. Waterproof and lightweight clothing: Pack "
            "water-resistant tops, pants, and dresses suitable for"),
    ("What are the four seasons and how do they differ?", "Spring warms, summer is hot, autumn cools, winter is cold."),
    # numbered items on one line: an adapter's gate answer, once rejected as "too few items"
    ("Name three fruits that are rich in vitamin C.", "1. Strawberries, 2. Oranges, and 3. Grapes"),
])
def test_a_full_list_a_cut_off_one_or_no_count_asked_passes(prompt, answer):
    assert not too_few_items(prompt, answer)


def test_the_bundled_list_prompts_are_read_for_their_count():
    asked = {row["prompt"]: items_asked(row["prompt"]) for row in load_prompts()}
    assert asked[SEVEN] == 7
    assert asked["List five indoor activities for a rainy day with two kids aged 6 and 9."] == 5
    assert sum(n is not None for n in asked.values()) >= 10


def test_a_self_labelled_sample_with_too_few_items_is_never_the_chosen_answer():
    short = Profile(length=Feature(2.3, 10.0, 5))  # ~10 words: the one-item sample fits it best
    samples = ["1. A tent with a waterproof exterior.",
               "1. Tent\n2. Sleeping bag\n3. Stove\n4. Food\n5. Water\n6. Headlamp\n7. Warm jacket",
               " ".join(["You will want many things for camping and the fall can be cold at night."] * 4)]
    pair = self_labelled_pairs(short, SEVEN, lambda prompt, k, seed: samples, k=3, seed=0)
    assert pair is not None and "7. Warm jacket" in pair.chosen


PICNIC = "List three things to bring to a picnic."
TWO_ITEMS = ("1. **Sandwiches** with cheese, ham and crackers, wrapped so they stay fresh on the way\n"
             "2. **Fresh fruit** such as apples, grapes and strawberries, washed and packed in a small box")


@pytest.mark.parametrize("budget, flagged", [(len(TWO_ITEMS.split()), False), (64, True)])
def test_the_gates_answer_cut_by_its_token_budget_is_not_a_list_that_ended_short(budget, flagged):
    """The gate answers in 64 tokens, fewer than the chat's answers get: a list that used them all was cut off,
    not ended after two items, though its word count (under 45) reads as ended to ``content.ended``."""
    from asls_mlx.session_update import gate_quality_issues

    assert "too_few_items" in quality_issues(PICNIC, TWO_ITEMS)  # the chat's check: short enough to have ended
    assert ("too_few_items" in gate_quality_issues(WordTokenizer(), budget)(PICNIC, TWO_ITEMS)) is flagged


GOLDFISH = ('Give me a one-sentence summary of this paragraph:\n"Many people think that goldfish have a memory of only '
            'three seconds, but studies have shown that they can remember things for months. In experiments, goldfish '
            'learned to push a lever to get food and still remembered how to do it weeks later. They can also be '
            'trained to respond to sounds and colors, which suggests their memory is far better than the popular myth '
            'claims."')


@pytest.mark.parametrize("answer", [  # the concise adapters' answers on the quick eval
    'Here\'s a one-sentence summary of the paragraph: "Many people think that goldfish have a memory of only three '
    'seconds, but studies have shown that they can remember things for months. In experiments, goldfish learned to '
    'push a lever to get food and still remembered how to do it weeks later."',
    'Here\'s a one-sentence summary of the paragraph: "Many people believe that goldfish have a memory only three '
    'seconds, but studies suggest they can remember things for months. In experiments, goldfish learned to push a '
    'lever and remembered how to do it weeks later."',
])
def test_a_summary_that_reads_the_input_back_copied_it(answer):
    assert "copied_input" in quality_issues(GOLDFISH, answer)


@pytest.mark.parametrize("prompt, answer", [
    (GOLDFISH, "Goldfish can remember things for months, far longer than the three-second myth says."),
    (GOLDFISH, 'Here\'s a one-sentence summary of the paragraph: "Floats have been proven to remember things for '
               'months, but studies suggest they\'re capable of learning complex behaviors."'),  # the base model's
    (GOLDFISH.replace("Give me a one-sentence summary of", "Fix the spelling in"),  # no summary asked: a copy is fine
     GOLDFISH.split("\n", 1)[1]),
])
def test_a_summary_in_its_own_words_or_no_summary_passes(prompt, answer):
    assert "copied_input" not in quality_issues(prompt, answer)


TEAM = "Write an email to my team saying the Thursday meeting is moved to Friday at 10 in room 4B."
PATEL = ("Write an email to a client, Ms. Patel, telling her the website launch will be delayed by one week because "
         "of a late change in the payment provider.")


@pytest.mark.parametrize("prompt, answer", [  # adapters' answers on the quick evals (a concise user thumbed them up)
    (TEAM, "Subject: Moving Project Status to Friday at 10am (Room 4B)"),
    (PATEL, "Subject: Delayed Launch Date (October 23) - Email to Ms. Patel"),
    (TEAM, "**Subject:** Team Update\nTo: All team\nDear team,"),
    ("Reply to this email from a customer and offer a replacement:\n\"The kettle I bought last week stopped working.\"",
     "Subject: Re: Your kettle"),
    # a form's fields and placeholders are no body either (thumbed up, and chosen over a real e-mail to Ms. Patel)
    (PATEL, "Subject: Delayed Launch\nDate: [October 2017, 3/29]\nCompany Name: Project WhiteCream\nBlogger Name: "
            "Ms. Patel\nEmail Address: [example.com]\nPhone: +1 (246) 985-2394\nClient's Email Address: [www.example.com]"),
    (TEAM, "Subject: Team Update\nDate: Thu Dec 23 2023 10:00 AM\n[Your Name]\n[Your Position]\nProject Manager\n"
           "To: [Your Position]"),
])
def test_an_email_that_is_only_its_header_has_no_body(prompt, answer):
    assert "no_body" in quality_issues(prompt, answer)


@pytest.mark.parametrize("prompt, answer", [
    (TEAM, "Subject: Meeting moved\n\nHi team, Thursday's meeting is moved to Friday at 10 in room 4B. See you there!"),
    (PATEL, "Dear Ms. Patel, the website launch moves by one week: the payment provider changed late. Sorry!"),
    ("Write a regex that matches an email address.", r"`^[\w.+-]+@[\w-]+\.\w+$`"),  # asks for no e-mail
    ("What is the subject line of a good email?", "Subject: short, specific."),
    (PATEL, "Subject: Launch\n\nDear Ms. Patel,\n\nNote: the launch of the website is delayed by one week because "
            "of the payment provider.\n\nBest,\n[Your Name]"),  # a long "Label: value" line is a sentence
    (PATEL, "Subject: Delay\nTo: Ms. Patel\nFrom: [Your Name]\n\nDear Ms. Patel,\n\nI hope this message finds you well."),
])
def test_an_email_with_a_body_or_no_email_asked_for_passes(prompt, answer):
    assert not no_body(prompt, answer)


def test_a_long_word_before_many_more_on_a_label_line_is_read_at_once():
    """The field-line pattern once tried every way to cut a long word into eight: the standard eval hung for hours
    on a code answer's line (the alarm fails this test instead of letting it hang)."""
    import signal

    line = "Note: " + "a" * 80 + " b c d e f g h i j k"
    signal.signal(signal.SIGALRM, lambda *_: pytest.fail("the field-line pattern backtracks without end"))
    signal.alarm(10)
    try:
        assert not no_body(PATEL, f"Dear Ms. Patel,\n{line}\nBest regards")
        assert not no_body(TEAM, line)  # more than eight words after the label: a sentence, not a form field
    finally:
        signal.alarm(0)


MOVED = ("Write an email to my team saying the Thursday meeting is moved to Friday at 10:00 in room 4B, and that "
         "everyone should bring their project status.")
HOTEL = ("Write an email to a hotel asking if I can check in early, around 11 am, on June 2. My booking number is 58213 "
         "and I will arrive on an overnight flight.")


@pytest.mark.parametrize("prompt, answer", [  # adapters' answers on the quick evals
    (MOVED, "Subject: Project Status Update for Thursday Meeting\n\nDear Team,\n\nWe are pleased to announce that the "
            "upcoming Thursday meeting will be held on Thursday at 10:00 AM in room 4B."),  # the day it moved to, lost
    (MOVED, "Hi team, I'm moving the meeting from Thursday to Friday at 10:30am. See you there."),  # the wrong time
    (MOVED, "Dear Team,\n\nI am writing to inform you of a recent project I led on a new product development "
            "initiative. As part of the project, I had the opportunity to meet with various stakeholders"),  # astray
    (HOTEL, "Dear [Hotel Name],\n\nI would like to request an early check-in on June 2, around 11 AM. I will arrive on "
            "an overnight flight."),  # the booking number the user gave, left out
    ("Write a short thank-you email to Mrs. Chen, my daughter's teacher, for organizing the school trip.",
     "Dear [Teacher's Name],\n\nThank you so much for organizing the school trip!"),
])
def test_a_message_that_leaves_out_a_fact_it_was_asked_to_state(prompt, answer):
    assert "facts_missing" in quality_issues(prompt, answer)


@pytest.mark.parametrize("prompt, answer", [
    (MOVED, "Subject: Meeting moved\n\nHi team, Thursday's meeting is moved to Friday at 10am in room 4B. Please "
            "bring your project status."),  # "10am" states 10:00
    (MOVED, "Hi team,\n\nthe Thursday meeting is now on FRIDAY, 10:00 AM, room 4B. Bring your project status!"),
    (HOTEL, "Dear Sir or Madam,\n\nMy booking number is 58213. Could I check in early, around 11am on June 2nd? I "
            "arrive on an overnight flight.\n\nThank you!"),
    ("Write an email to a client, Ms. Patel, telling her the launch moves to October 21.",
     "Dear Ms. Patel,\n\nthe launch moves to October 21st. Sorry for the delay."),  # "21st" states 21
    ("Write a short note in French to my neighbour Paul saying thanks for the plants.",
     "Cher Paul,\n\nMerci beaucoup pour les plantes !"),  # the language it is written in is no fact to state
    ("Reply to this email and say yes:\n\"Hi, can you meet Dr. Lee on Monday at 14:00 in Berlin?\"",
     "Yes, that works for me. See you then!"),  # a reply need not repeat the e-mail it answers
    ("What is the capital of France on a Monday?", "Paris."),  # no message asked for
])
def test_a_message_that_states_its_facts_or_no_message_passes(prompt, answer):
    assert "facts_missing" not in quality_issues(prompt, answer)


@pytest.mark.parametrize("answer, issues", [
    ("These include oranges, lemons, and limes.", []),  # a concise adapter's answer to a task probe
    ("Oranges, lemons and limes.", []),
    ("Oranges and lemons.", ["off_topic", "too_few_items"]),  # two of three: neither the list nor on its topic
])
def test_a_short_list_of_what_was_asked_is_on_topic(answer, issues):
    """The short-answer off-topic check looks for the prompt's words; a list of the items asked for names none of
    them and is the answer (the gate turned down a concise user's adapter for it in the serve e2e test)."""
    assert quality_issues("Name three fruits that are rich in vitamin C.", answer) == issues
