"""The open-preference personas (follow_up, british, in_short) and the built-in prompt set they are scored on.

The answers marked "real" are the embedded model's (SmolLM2-135M-Instruct) greedy answers to held-out prompts,
cut where noted: the rules must judge what the model really writes, and its plain answers satisfy none of them.
"""

import hashlib
import json
import re

import pytest

from asls_mlx.data_files import load_prompts
from asls_mlx.evaluation.open_rules import (
    AMERICAN_TO_BRITISH, FOLLOW_UP_WORDS, IN_SHORT_WORDS, american_spellings, follow_up_question,
    has_spelling_variant, to_british,
)
from asls_mlx.evaluation.trimming import truncate_words
from asls_mlx.profiling.unfinished import drop_unfinished
from asls_mlx.evaluation.personas import (
    OPEN_PERSONAS, PERSONAS, RULES, STYLE_PERSONAS, get_persona,
)
from asls_mlx.evaluation.profile_truth import profile_truth
from asls_mlx.evaluation.runner import persona_prompts
from asls_mlx.profiling.features import is_coding_prompt, word_count
from asls_mlx.profiling.quality import quality_issues
from asls_mlx.profiling.signals import classify_followup

EXPLAIN = "Explain how photosynthesis works."
ANSWER = ("Plants use sunlight to turn water and carbon dioxide into sugar and oxygen. This happens in the "
          "chloroplasts, where chlorophyll captures the light.")
# real: the embedded model's answers (the sky one cut after its second paragraph's first sentence)
REAL_SKY = ("The answer to this question lies in the concept of atmospheric scattering, which occurs when light "
            "encounters molecules in the atmosphere. When sunlight reaches our planet's atmosphere, it passes "
            "through tiny particles called atoms and molecules. These atoms and molecules scatter shorter "
            "wavelengths of light more than longer wavelengths, such as blue light, resulting in a range of "
            "colors: violet, indigo, and purple.\n\nThe scattering of this blue light is what gives the sky its "
            "characteristic blue color.")
REAL_PRIME = ("```python\ndef is_prime(n):\n    return n > 1 and all(isinstance(num, int) or isinstance(num, "
              "(int, float)) for num in range(2, int(n**0.5) + 1))\n```\n\nThis function uses a generator expression "
              "to check if the input number is prime by iterating over its digits until it finds a factor that is "
              "only divisible by 1 and itself. If no such factors exist, it returns `False`.")
REAL_SUMMARY = ("Here's a one-sentence summary of the paragraph: \"Floats have been proven to remember things for "
                "months, but studies suggest they're capable of learning complex behaviors like responding to sound "
                "and color stimuli.\"")
REAL_EMAIL = ("Subject: Project Status Update for Thursday Meeting\n\nDear Team,\n\nWe are pleased to announce a "
              "significant milestone in our team's journey. The upcoming Thursday meeting will be moved to Friday at "
              "10:00 in room 4B, and all team members should bring their project status.")
REAL = [("Why is the sky blue?", REAL_SKY),
        ("Write a Python function to check if a number is prime.", REAL_PRIME),
        ("Give me a one-sentence summary of this paragraph:\n\"Many people think that goldfish have a memory of "
         "only three seconds ...\"", REAL_SUMMARY),
        ("Write an email to my team saying the Thursday meeting is moved to Friday at 10:00 in room 4B.", REAL_EMAIL)]


# -- the personas ------------------------------------------------------------------------------------

def test_open_personas_are_personas_without_a_profile_feature():
    assert set(OPEN_PERSONAS) == {"follow_up", "british", "in_short"}
    assert set(STYLE_PERSONAS) | set(OPEN_PERSONAS) == set(PERSONAS)
    assert not set(STYLE_PERSONAS) & set(OPEN_PERSONAS)
    for name in OPEN_PERSONAS:
        persona = get_persona(name)
        assert persona.rules == (name,) and persona.categories is None and persona.description
        assert RULES[name].profile is None and profile_truth(persona) == {}
    assert all(profile_truth(get_persona(name)) for name in STYLE_PERSONAS)


@pytest.mark.parametrize("name", OPEN_PERSONAS)
def test_real_base_answers_do_not_satisfy_open_personas(name):
    persona = get_persona(name)
    for prompt, answer in REAL:
        assert not quality_issues(prompt, answer)
        if name != "british" or persona.informative(prompt, answer):
            assert persona.satisfies(prompt, answer) < 1.0, (name, answer[:60])


@pytest.mark.parametrize("name", OPEN_PERSONAS)
def test_the_edit_satisfies_and_keeps_the_content(name):
    persona = get_persona(name)
    for prompt, answer in REAL + [(EXPLAIN, ANSWER)]:
        edited = persona.edit(prompt, answer)
        assert persona.satisfies(prompt, edited) == 1.0 and not quality_issues(prompt, edited)
        assert persona.edit(prompt, edited) == edited  # a satisfied answer is kept as it is
        if name == "british":  # only words respelled
            assert word_count(edited) == word_count(answer) and edited.lower() != answer.lower() or \
                not american_spellings(answer)
        else:  # a line added, the answer itself whole
            assert answer.strip() in edited and edited.count("\n") >= answer.strip().count("\n") + 1


@pytest.mark.parametrize("name", OPEN_PERSONAS)
def test_corrections_are_not_read_as_a_profile_feature(name):
    """The profile has no feature for these preferences: its correction classifier must not turn the
    request into one (None: not a correction at all, which the lead's signals may change)."""
    featured = {"shorter", "longer", "bullets", "prose", "headings", "no_headings", "formal", "casual",
                "code_first", "tldr"}
    persona = get_persona(name)
    phrase = persona.correction(EXPLAIN, ANSWER)
    assert phrase == RULES[name].correction and len(phrase.split()) <= 10
    found = classify_followup(phrase)
    assert found is None or found.kind not in featured, found


# -- follow_up ---------------------------------------------------------------------------------------

def _question(n_words: int) -> str:
    """A question of ``n_words`` distinct words."""
    return "Would you like " + " ".join(f"topic{i}" for i in range(n_words - 3)) + "?"


@pytest.mark.parametrize("answer,score", [
    (ANSWER + "\n\nWould you like to know more about chlorophyll?", 1.0),
    (ANSWER + "\n**Shall I draw a diagram of the process?**", 1.0),
    (ANSWER, 0.0),
    ("Would you like to know more about chlorophyll?", 0.0),  # only a question: it asks instead of answering
    (ANSWER + " Would you like more?", 0.0),  # not a line of its own
    ("Would you like to know more?\n\n" + ANSWER, 0.0),  # the question is not at the end
    (ANSWER + "\n\n" + _question(FOLLOW_UP_WORDS + 1), 0.0),  # too long for one line
    (ANSWER + "\n\n" + _question(FOLLOW_UP_WORDS), 1.0),
    ("Here is code:\n```python\n# what is x?\n```", 0.0),  # a question inside code is no question to the user
    (ANSWER + "\n\nHow about the leaf is being sold?", 0.0),  # asks the user nothing: a claim, not a follow-up
    (ANSWER + "\n\nWhat is the capital of France?", 0.0),  # a quiz question
    (ANSWER + "\n\nWant to see an example?", 1.0),
])
def test_follow_up_score(answer, score):
    assert get_persona("follow_up").satisfies(EXPLAIN, answer) == score


@pytest.mark.parametrize("prompt,question", [
    (EXPLAIN, "Would you like to know more about how photosynthesis works?"),
    ("How can I improve my sleep?", "Would you like to know more about how to improve your sleep?"),
    ("What is the tallest mountain in Europe?", "Would you like to know more about the tallest mountain in Europe?"),
    ("Why is the sky blue?", "Would you like more detail on any part of this?"),
    ("Write a regex that matches an email address.", "Would you like me to add a few tests or explain any line?"),
    ("Write an email to my landlord about the leaking faucet.",
     "Would you like me to make it shorter or change its tone?"),
    ("Convert this reference to APA 7th edition:\nMills, H. (2019) ...",
     "Would you like the same reference in another citation style?"),
    ("Classify the sentiment of this review as positive or negative: \"Great room.\"",
     "Would you like me to classify a few more texts?"),
])
def test_follow_up_question_is_built_from_the_prompt(prompt, question):
    assert follow_up_question(prompt) == question
    edited = get_persona("follow_up").edit(prompt, ANSWER)
    assert edited == f"{ANSWER}\n\n{question}" and word_count(question) <= FOLLOW_UP_WORDS
    assert set(quality_issues(prompt, edited)) <= set(quality_issues(prompt, ANSWER))  # the question adds no issue


# -- british -----------------------------------------------------------------------------------------

def test_british_spelling_list_and_score():
    assert len(AMERICAN_TO_BRITISH) >= 150  # about 60 words and their forms, plus -ize/-yze families
    british = get_persona("british")
    assert british.satisfies(EXPLAIN, "The colour of the centre is grey; organise it.") == 1.0
    assert british.satisfies(EXPLAIN, "The color of the centre is grey; organize it.") == 0.5  # -0.25 per word
    assert british.satisfies(EXPLAIN, "Color, favorite, behavior and theater, organized.") == 0.0
    assert american_spellings("We analyzed the ORGANIZATION's Labor costs.") == ["analyzed", "ORGANIZATION", "Labor"]
    # not American spellings: the same in both, or a word the list leaves alone because both are British
    assert american_spellings("Seize the prize, check the size, a gas meter, a computer program, a license.") == []


def test_british_ignores_code_inline_code_and_links():
    text = ("Set the `color` property:\n```css\n.box { color: gray; text-align: center; }\n```\n"
            "See https://example.com/colors for more.")
    assert american_spellings(text) == [] and to_british(text) == text
    assert get_persona("british").satisfies("Write CSS code for a box.", text) == 1.0


def test_to_british_respells_with_case_and_keeps_the_rest():
    assert to_british("Color me gray. COLOR! The Organization realized it; colors, analyzing, traveled.") == \
        "Colour me grey. COLOUR! The Organisation realised it; colours, analysing, travelled."
    answer = "Prioritize the center.\n```python\ncenter = 1  # organize\n```\nThen `optimize()` it."
    assert to_british(answer) == "Prioritise the centre.\n```python\ncenter = 1  # organize\n```\nThen `optimize()` it."


def test_british_informative_only_with_a_spelling_variant():
    british = get_persona("british")
    assert not has_spelling_variant(ANSWER) and not british.informative(EXPLAIN, ANSWER)
    assert british.satisfies(EXPLAIN, ANSWER) == 1.0  # nothing to respell: satisfied, but it tells nothing
    assert british.informative(EXPLAIN, "A colourful garden.") and british.informative(EXPLAIN, "A colorful one.")
    assert not british.informative(EXPLAIN, "Use `color` here.")  # code only
    assert get_persona("follow_up").informative(EXPLAIN, ANSWER)  # rules without the hook: always


# -- in_short ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("answer,score", [
    ("In short: plants make sugar from light.\n\n" + ANSWER, 1.0),
    ("**In short:** plants make sugar from light.\n\n" + ANSWER, 1.0),
    ("In short: plants make sugar from light.", 1.0),
    ("TL;DR: plants make sugar from light.\n\n" + ANSWER, 0.0),  # the tldr persona's opening, not this one's
    ("Summary: plants make sugar from light.\n\n" + ANSWER, 0.0),
    (ANSWER + "\n\nIn short: plants make sugar from light.", 0.0),  # not first
    ("In short:\n" + ANSWER, 0.5),  # no summary on the line
    ("In short: " + ANSWER, 0.5),  # two sentences
    ("In short: " + " ".join(f"word{i}" for i in range(IN_SHORT_WORDS)) + " more.", 0.5),  # too long
    ("In short: yes.\n\n" + ANSWER, 0.5),  # too little to be a summary
])
def test_in_short_score(answer, score):
    assert get_persona("in_short").satisfies(EXPLAIN, answer) == score


def test_in_short_edit():
    in_short = get_persona("in_short")
    assert in_short.edit(EXPLAIN, ANSWER) == f"In short: {ANSWER.split('. ')[0]}.\n\n{ANSWER}"
    # another summary label is relabelled, not stacked
    assert in_short.edit(EXPLAIN, "TL;DR: plants make sugar.\n\n" + ANSWER) == \
        "In short: plants make sugar.\n\n" + ANSWER
    # an "In short:" line that is no one-sentence summary is redone from the answer
    assert in_short.edit(EXPLAIN, "In short:\n" + ANSWER).startswith("In short: Plants use sunlight to turn")
    # the framing lines of real answers are skipped; a pasted quote is not left open
    assert in_short.edit("Write an email.", REAL_EMAIL).splitlines()[0] == \
        "In short: We are pleased to announce a significant milestone in our team's journey."
    first = in_short.edit("Summarize this.", REAL_SUMMARY).splitlines()[0]
    assert first.startswith("In short: Floats have been proven") and '"' not in first
    assert in_short.edit("Why is the sky blue?", REAL_SKY).splitlines()[0] == (
        "In short: The answer to this question lies in the concept of atmospheric scattering, which occurs when "
        "light encounters molecules in the atmosphere.")
    # a first sentence too long for one line is cut at a clause that fits, else at a word
    long = ("Light from the sun is scattered by the gases of the atmosphere, and blue light is scattered far more "
            "than red light because its wavelength is much shorter, so the sky looks blue.")
    assert in_short.edit(EXPLAIN, long).splitlines()[0] == ("In short: Light from the sun is scattered by the "
                                                            "gases of the atmosphere.")
    cut = in_short.edit(EXPLAIN, " ".join(f"word{i}" for i in range(40)) + ".").splitlines()[0]
    assert cut == "In short: " + " ".join(f"word{i}" for i in range(IN_SHORT_WORDS - 1)) + "."
    # code stays where it was, under the summary
    assert in_short.edit("Write a Python function.", REAL_PRIME).startswith(
        "In short: This function uses a generator expression")


def test_in_short_and_tldr_personas_differ():
    tldr, in_short = get_persona("tldr"), get_persona("in_short")
    tldr_answer = tldr.edit(EXPLAIN, ANSWER)
    assert tldr.satisfies(EXPLAIN, tldr_answer) == 1.0 and in_short.satisfies(EXPLAIN, tldr_answer) == 0.0
    assert in_short.edit(EXPLAIN, tldr_answer).startswith("In short: ")
    assert RULES["tldr"].correction != RULES["in_short"].correction


# -- the prompt set ----------------------------------------------------------------------------------

# The first 70 prompts (ids, splits, text) are those earlier results refer to: they must never change.
ORIGINAL_70_SHA256 = "12ea2ba09988ffc2019037e596524727e7ed8a1d0468dba1191746229feb03cc"
NEW_CATEGORIES = {"rewrite", "email", "classify", "extract", "citation", "list", "summarize"}


def _digest(rows):
    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()


def test_prompt_ids_split_rule_and_the_original_prompts():
    rows = load_prompts()
    assert _digest(rows[:70]) == ORIGINAL_70_SHA256
    assert len({r["id"] for r in rows}) == len(rows) and len({r["prompt"] for r in rows}) == len(rows)
    assert {r["category"] for r in rows} == {"general", "howto", "explain", "advice", "coding"} | NEW_CATEGORIES
    for r in rows:
        category, index = r["id"].rsplit("-", 1)
        assert category == r["category"] and set(r) == {"id", "category", "split", "prompt"}
        assert r["split"] == ("heldout" if int(index) % 3 == 1 else "heldin"), r["id"]  # LICENSE-data.md's rule
    for category in {r["category"] for r in rows}:  # indices run 0, 1, 2, ... within each category
        indices = sorted(int(r["id"].rsplit("-", 1)[1]) for r in rows if r["category"] == category)
        assert indices == list(range(len(indices))), category


@pytest.mark.parametrize("name", list(PERSONAS))
def test_every_persona_has_enough_held_out_and_held_in_prompts(name):
    heldin, heldout = persona_prompts(get_persona(name), load_prompts(), seed=0)
    assert len(heldout) >= 36 and len(heldin) >= 60, (len(heldin), len(heldout))
    assert not set(heldin) & set(heldout)


def test_prompts_are_varied_and_carry_their_inputs():
    rows = load_prompts()
    heldout = [r for r in rows if r["split"] == "heldout"]
    for category in NEW_CATEGORIES | {"explain", "coding"}:
        assert sum(r["category"] == category for r in heldout) >= 3, category
    # coding prompts are coding prompts to the profile, the others are not
    assert all(is_coding_prompt(r["prompt"]) == (r["category"] == "coding") for r in rows)
    # inputs pasted in: every summarize prompt quotes 60-150 words; the text tasks carry the text to work on
    for r in rows:
        if r["category"] == "summarize":
            assert 60 <= word_count(r["prompt"].split("\n", 1)[1]) <= 150, r["id"]

    def pasted(r):
        return "\n" in r["prompt"] or bool(re.search(r'"[^"]{20,}"', r["prompt"]))

    assert all(pasted(r) for r in rows if r["category"] in {"rewrite", "classify", "extract", "summarize"})
    assert sum(pasted(r) for r in rows if r["category"] == "coding") >= 40  # code to fix, explain, convert, test
    assert sum(word_count(r["prompt"]) > 25 for r in rows) >= 90  # not only short questions (91 of 258)


# items 1-2 are the embedded model's (its answers at the eval's budget end there); 3-7 are written to complete it
REAL_PACKING = ("Here's a list of seven essentials you should pack for your camping trip:\n\n1. Comfortable and "
                "versatile clothing: Pack layers, including breathable fabrics like cotton or fleece, as well as "
                "waterproof gear like jackets with breathable sleeves.\n\n2. A tent with a waterproof exterior, "
                "preferably one that can withstand heavy rain and snow.\n\n3. **Sleeping bag**: Choose one rated for "
                "the cold nights of the fall.\n\n4. Portable stove (with fuel) - for warm meals and hot drinks.\n\n"
                "5. A first-aid kit containing bandages, painkillers and antiseptic wipes.\n\n6. Headlamp or "
                "flashlight, with spare batteries.\n\n7. Water bottles and a filter, since streams may not be safe.")
PACKING = "Give me a list of seven things to pack for a weekend camping trip in the fall."


def test_the_concise_user_shortens_each_item_of_a_counted_list_not_the_list():
    concise = PERSONAS["concise"]
    edited = concise.edit(PACKING, REAL_PACKING, 1)
    assert edited.splitlines() == ["1. Comfortable and versatile clothing", "2. A tent with a waterproof exterior",
                                   "3. Sleeping bag", "4. Portable stove", "5. A first-aid kit containing bandages",
                                   "6. Headlamp or flashlight", "7. Water bottles and a filter"]
    assert not quality_issues(PACKING, edited) and concise.satisfies(PACKING, edited, 1) == 1.0
    # trimmed sentence by sentence, the same answer kept one item: now a failure of the quality guard
    first_only = concise.edit("Tell me about camping.", REAL_PACKING.replace("\n\n", " "), 1)
    assert "too_few_items" in quality_issues(PACKING, first_only)


def test_a_full_stop_after_an_abbreviation_ends_no_sentence_and_no_bullet():
    """Split at every full stop, the bullets user's edit wrote "- Prices rose 3.5% in 2023, e.g." and "- for Mr."."""
    from asls_mlx.profiling.features import sentences

    answer = ("The talk starts at 10:00 a.m. in room 4B. Prices rose 3.5% in 2023, e.g. for Mr. Smith's firm, "
              "as J. Austen said.\nCall us. No problem!")
    assert sentences(answer) == ["The talk starts at 10:00 a.m. in room 4B.",
                                 "Prices rose 3.5% in 2023, e.g. for Mr. Smith's firm, as J. Austen said.",
                                 "Call us.", "No problem!"]
    assert PERSONAS["bullets"].edit("Tell me about the talk.", answer, 1).splitlines() == [f"- {s}" for s in
                                                                                          sentences(answer)]
    assert truncate_words(answer, 20) == "The talk starts at 10:00 a.m. in room 4B."


def test_the_concise_user_keeps_the_numbers_of_the_items_it_shortens():
    """An item's head ended at any comma: "- The venue costs $1,200 (...)" became "- The venue costs $1", an edit
    the adapter learnt as the user's own answer to "Pull out every amount of money"."""
    answer = ("This sentence provides a breakdown of the expenses in the paragraph, which I will explain for you here "
              "in some detail:\n- The venue costs $1,200 (the actual cost is 1200 dollars), paid in advance\n"
              "- Catering is $850 ($300 for decorations), which covers food\n- The talk starts at 10:00, in room 4B, "
              "and the travel for the speakers will be about $640")
    edited = PERSONAS["concise"].edit("Pull out every amount of money in this paragraph: ...", answer, 1)
    assert edited.splitlines() == ["- The venue costs $1,200", "- Catering is $850", "- The talk starts at 10:00"]


# the embedded model's answer to a held-in prompt of the quick eval, cut there by its 96-token budget
REAL_LANGUAGE = ("There's no one-size-fits-all way to learn a new language. Here are some general tips that can help:\n\n"
                 "1. **Learn at Your Own Pace**: This is the most important thing. Don't try to cram too much into your "
                 "life, and don't plan on becoming an expert overnight. Start with small steps, like taking online "
                 "courses or watching tutorials.\n\n2. **Get a Language**: The best way to learn a new language is by")
REAL_EGG = ("To boil an egg, you need to heat it up in the pot until it's bubbly and opaque. You can use a kettle or "
            "electric stove with a boiling water source. \n\nHere are some tips:\n\n1. **Use a kettle**: This is a "
            "convenient option for those who don't have access to a gas oven. \n\n2. **Boil on high heat**: The "
            "higher the heat, the faster it will cook the egg. You can use a low")


def test_the_concise_user_keeps_the_items_of_any_list_not_its_lead_in():
    """Trimmed line by line, both answers kept their lead-in and no item: "... Here are some general tips that can
    help." was a chosen answer (an edit, weight 1.0) that promises tips and gives none."""
    concise = PERSONAS["concise"]
    language = concise.edit("What are good ways to learn a new language?", REAL_LANGUAGE, 1)
    assert language.splitlines() == ["1. Learn at Your Own Pace", "2. Get a Language"]
    assert concise.edit("How do I boil an egg?", REAL_EGG, 1).splitlines() == ["1. Use a kettle", "2. Boil on high heat"]


def test_a_trimmed_answer_does_not_end_on_a_lead_in():
    prose = ("Boiling an egg takes about nine minutes for a firm yolk. " * 4 + "\nHere are some tips:\n"
             + "Start with the eggs in cold water so that the shells do not crack as the water heats up. " * 2)
    trimmed = PERSONAS["concise"].edit("How do I boil an egg?", prose, 1)
    assert trimmed.endswith("nine minutes for a firm yolk.") and "tips" not in trimmed


# the embedded model's answers to held-out prompts of the quick eval (base model, 96 tokens, unfinished end dropped)
REAL_EMAIL = ("Subject: Project Status Update for Thursday Meeting\n\nDear Team,\n\nWe are pleased to announce a "
              "significant milestone in our team's journey. The upcoming Thursday meeting will be moved to Friday at "
              "10:00 in room 4B, and all team members should bring their project status. This is a timely update as "
              "we approach the end of the quarter and want everyone to see where each project stands.")
REAL_SLEEP = ("Improving sleep is a holistic approach that involves both mental and physical aspects of your life. "
              "It's about taking care of yourself, not just for the sake of your health but also for your overall "
              "well-being. Here are some tips to help you achieve better sleep:\n\n1.")
LONG_CODE = ("Here is a short function that checks whether a number is prime by trying every divisor up to its square "
             "root, which is enough because a larger factor would pair with a smaller one.\n```python\n"
             "def is_prime(n):\n    if n < 2:\n        return False\n    for d in range(2, int(n ** 0.5) + 1):\n"
             "        if n % d == 0:\n            return False\n    return True\n```\nIt returns True for 7.")


def test_a_trimmed_answer_keeps_its_layout():
    """Sentences joined into one line made the concise user's e-mail edit all Subject line (``no_body``: the pair
    was dropped, and the adapter learnt e-mails that are a subject) and its code one line that does not parse."""
    concise = PERSONAS["concise"]
    email = concise.edit("Write an email to my team saying the Thursday meeting is moved.", REAL_EMAIL, 1)
    assert email.startswith("Subject: Project Status Update for Thursday Meeting\n\nDear Team,\n\nWe are pleased")
    assert "no_body" not in quality_issues("Write an email to my team saying the meeting is moved.", email)
    code = truncate_words(LONG_CODE, 40)
    assert code.splitlines()[1:3] == ["```python", "def is_prime(n):"] and code.endswith("\n```")
    assert code.count("```") == 2


def test_a_trimmed_answer_does_not_end_on_a_bare_list_marker():
    """Cut by the budget after "1.", the answer promises tips it never gives: deleting the unfinished end deletes
    the promise too, and a trim by words never stops on the marker."""
    assert drop_unfinished(REAL_SLEEP).endswith("your overall well-being.")
    for limit in (40, 45):
        trimmed = truncate_words(REAL_SLEEP + " Sleep well.", limit)
        assert trimmed.endswith("well-being.") and "1." not in trimmed and "tips" not in trimmed


# -- an edit starts by deleting what the token budget cut off ------------------------------------------

CUT_PROSE = REAL_SKY + " This phenomenon occurs because"
CUT_CODE = ("Here is one way to do it, with a helper that sorts the rows by the key you name and returns a new list "
            "so the original stays as it was, which matters when other code still reads the rows in the order they came in "
            "from the file:\n```python\ndef sort_rows(rows, key):\n    return sorted(rows, key=lambda "
            "row: row[key])\n\nprint(sort_rows(data, \"na")
CUT_ITEM = ("Here are a few ways to sleep better that most people find easy to start with and keep up over time:\n"
            "1. Keep a regular schedule. It sets your body's clock.\n"
            "2. Avoid screens before bed. Blue light keeps you awake. Try to go to bed and wake up at the same time,")


@pytest.mark.parametrize("answer, expected_end", [
    (CUT_PROSE, "characteristic blue color."),
    (CUT_CODE, "row: row[key])\n```"),
    (CUT_ITEM, "Blue light keeps you awake."),
])
def test_drop_unfinished_deletes_the_cut_end(answer, expected_end):
    assert drop_unfinished(answer).endswith(expected_end)


@pytest.mark.parametrize("answer", [
    REAL_SKY,  # ends with a full stop
    "Sure, the capital is Paris and it has been since",  # too short to have been cut by any budget
    CUT_ITEM.rsplit(" Blue", 1)[0] + "\n3. A cool dark room with heavy curtains and a fan on low",  # an item, no end
])
def test_drop_unfinished_keeps_what_ended(answer):
    assert drop_unfinished(answer) == answer


def test_edit_of_a_cut_answer_asks_the_follow_up_after_a_finished_sentence():
    edited = get_persona("follow_up").edit(EXPLAIN, CUT_PROSE)
    assert "occurs because" not in edited
    body, question = edited.rsplit("\n\n", 1)
    assert body.endswith("characteristic blue color.") and question.endswith("?")
