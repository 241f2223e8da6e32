"""Helpfulness checks: hollow, evasive and profile-leaking answers, template collapse, and the gate using them.

The positives are the failures seen on the embedded model after adaptation (issue 18); the negatives are
ordinary helpful answers, including legitimately short answers to short questions.
"""

import re

import pytest

from adaptation_fixtures import one_try
from asls_mlx.adaptation.answer_check import AnswerCheck, answer_check
from asls_mlx.adaptation.gate import MIN_TEMPLATE_PROMPTS, GateChecks, gate
from asls_mlx.profiling import quality
from asls_mlx.profiling.content import SUMMARY, items_asked
from asls_mlx.profiling.profile import Feature, Profile
from asls_mlx.profiling.quality import (
    is_evasive,
    is_hollow,
    leaks_profile,
    quality_issues,
    short_question,
    strip_template,
    template_collapse,
    template_share,
)

CITATION = ("Convert this citation to MLA: Smith, J., & Lee, K. (2019). Sleep and memory in adults. "
            "Journal of Sleep Research, 28(3), 112-120.")
EMAIL = "Write a short email inviting my team to a farewell lunch for Maria on Friday at noon."


@pytest.mark.parametrize("prompt, answer, issue", [
    ("Give me three synonyms for 'Sincerely'.", "The answer is: Please.", "hollow"),
    (EMAIL, "The answer is:", "hollow"),
    (EMAIL, "Sure! Here is the email:", "hollow"),
    (CITATION, "The requested citation style is MLA.", "hollow"),
    (CITATION, "The corrected version is: MLA style.", "hollow"),
    ("Rewrite this so it flows better: the cat sat. it was happy. then it slept on the warm mat.",
     "The user requested a long answer with no breaks or rewording. The corrected version is: The cat sat.",
     "profile_leak"),
    ("What should I cook tonight?", "The user prefers short answers (about 27 words), bullet points and no headings. "
     "Interested in: given, write, output.", "profile_leak"),
    ("What should I cook tonight?", "Interested in: given, write, output.", "profile_leak"),
    ("How do I fix a flat tyre?", "Based on your profile, you like short answers.", "profile_leak"),
    ("How do I fix a flat tyre?", "Since the user's preference is brevity: patch it.", "profile_leak"),
    ("What is the meaning of life?", "There is no single, definitive answer to this question.", "evasive"),
    ("What is the meaning of life?", "There is no single, definitive answer to what the meaning of life is, "
     "as it depends on individual beliefs and values.", "evasive"),
    ("How many continents are there on Earth?", "There is no single, definitive answer to this question because it "
     "involves multiple dimensions. However, in recent years, scientists have made significant discoveries about the "
     "Earth's composition and structure that help resolve this issue.", "evasive"),  # the base model, profile in prompt
    ("Should I learn Python or JavaScript first?", "It depends.", "evasive"),
    ("Should I learn Python or JavaScript first?", "Well, it really depends on many factors.", "evasive"),
])
def test_observed_failures_are_flagged(prompt, answer, issue):
    assert issue in quality_issues(prompt, answer)


@pytest.mark.parametrize("prompt, answer", [
    ("What is the capital of France?", "Paris."),
    ("What is 7 + 5?", "12"),
    ("Is 17 a prime number?", "Yes."),
    ("What is the capital of France?", "The answer is: Paris."),
    ("Convert 5 km to miles.", "The answer is: 3.1 miles."),
    ("Reverse the word 'apple'.", "elppa"),
    ("Classify the sentiment of this review: 'The food was cold and the waiter was rude, never again.'",
     "The answer is: Negative."),
    (EMAIL, "Sure! Here is the email:\n\nHi team, let's say goodbye to Maria over lunch this Friday at noon. "
            "Reply so I can book a table. Best, Sam"),
    (CITATION, "Smith, John, and Kim Lee. \"Sleep and Memory in Adults.\" Journal of Sleep Research, vol. 28, "
               "no. 3, 2019, pp. 112-120."),
    ("What causes migraines?", "There is no single answer; common triggers include stress, lack of sleep, "
                               "caffeine and bright light."),
    ("What causes migraines?", "There is no single answer to this question, but stress, lack of sleep and "
                               "caffeine are common triggers."),  # a hedge that goes on to answer
    ("Should I water my plants daily?", "It depends on the plant: most succulents want water every two weeks, "
                                        "ferns like moist soil."),
    ("How do I write a login form?", "Add two fields; when the user submits, check the password on the server "
                                     "and show an error if it is wrong."),
    ("How do I improve my LinkedIn?", "Update your profile photo, write a clear headline and list recent projects."),
    ("How should I write to my landlord?", "Use a formal tone, state the problem and the date it started, "
                                           "and ask for a repair by a specific day."),
    ("Give me three synonyms for 'Sincerely'.", "Three synonyms: respectfully, cordially, warmly."),
    ("Explain photosynthesis.", "In short: plants make sugar from light."),  # a style users ask for, not a template
    ("Explain photosynthesis.", "TL;DR: plants make sugar from light."),
])
def test_helpful_answers_pass(prompt, answer):
    assert quality_issues(prompt, answer) == []


def test_short_questions_and_what_they_allow():
    assert short_question("What is the capital of France?") and short_question("What is 7 + 5?")
    assert not short_question(EMAIL) and not short_question(CITATION)
    assert not short_question("Why is the sky blue?")  # wants an explanation
    assert "too_short" in quality_issues("What is the capital city of France?", "Yes.")  # not an answer to "what"
    assert "too_short" in quality_issues(EMAIL, "Paris.")  # a word is not an email


def test_strip_template_peels_openers_in_turns():
    assert strip_template("Sure! Here is the answer: The answer is: Paris.") == ("Paris.", True)
    assert strip_template("Paris is the capital.") == ("Paris is the capital.", False)
    assert is_hollow(EMAIL, "Certainly! The answer is:")
    assert not is_hollow(EMAIL, "Hi team, lunch for Maria on Friday at noon, see you there!")  # no template
    assert not is_evasive("There is no single answer, but most people need seven to nine hours of sleep a night.")


def _profile(**values) -> Profile:
    return Profile(**{name: Feature(v, 10.0, 6) for name, v in values.items()}, topics={"gardening": 4.0})


def test_a_rendered_profile_echoed_as_the_answer_is_a_leak():
    profile = _profile(length=3.3, bullets=1.0, headings=-1.0)
    rendered = profile.render()
    assert rendered  # the profile says something
    assert "profile_leak" in quality_issues("What should I cook tonight?", rendered)
    assert leaks_profile(f"{rendered} Pasta with tomato sauce.")
    for prompt, answer in [("What should I cook tonight?", "Pasta with tomato sauce and a green salad, ready in 20 minutes."),
                           ("How do I write a report?", "Use bullet points for the findings and a formal tone in the summary.")]:
        assert not leaks_profile(answer), answer


def test_the_echo_follows_a_change_of_render_wording(monkeypatch):
    """The phrases come from render() itself: new wording there is caught without editing quality.py."""
    def render(self):
        n = self.target_words
        return f"Reply tersely, in roughly {n} words. Favour bulleted lists." if n else ""

    monkeypatch.setattr(Profile, "render", render)
    quality._phrase_patterns.cache_clear()
    try:
        assert leaks_profile("Reply tersely, in roughly 27 words. Favour bulleted lists.")
        assert not leaks_profile("Keep answers short (about 27 words). Use bullet points. No headings.")
    finally:
        monkeypatch.undo()
        quality._phrase_patterns.cache_clear()
    assert leaks_profile(_profile(length=3.3, bullets=1.0, headings=-1.0).render())  # the real wording again


def test_template_share_counts_the_most_common_opening():
    answers = ["The answer is: Paris.", "The answer is 12.", "the ANSWER is... three", "Paris is big.", ""]
    assert template_share(answers) == pytest.approx(3 / 5)
    assert template_share(answers, n_words=4) == pytest.approx(1 / 5)  # the fourth word is the answer itself
    assert template_share([]) == 0.0
    assert template_share(["", ""]) == 0.0  # empty answers never form the most common opening


def test_a_requested_summary_label_is_not_a_template():
    """Answers the user asked to open with "TL;DR:" / "In short:" share the label, not a template."""
    from asls_mlx.profiling.quality import opening

    assert opening("TL;DR: Paris is the capital.") == ("paris", "is", "the")
    assert opening("**In short:** water boils at 100 C.") == ("water", "boils", "at")
    labelled = ["In short: Paris.", "In short: it is 36.", "In short: boil it nine minutes.", "In short: use a key."]
    assert template_share(labelled) == 0.25
    assert opening("The answer is: Paris.") == ("the", "answer", "is")  # a real template stays one


def test_template_collapse_needs_more_than_the_margin_and_three_alike():
    base = [f"{w} answers this one its own way." for w in
            ["Alpha", "Beta", "Gamma", "Delta", "Epsilon", "Zeta", "Eta", "Theta", "Iota", "Kappa"]]
    adapted = ["The answer is: x."] * 5 + base[5:]
    assert template_share(base) == pytest.approx(0.1) and template_share(adapted) == pytest.approx(0.5)
    assert template_collapse(adapted, base) == "the answer is"  # the reason quotes it
    assert not template_collapse(adapted, adapted)  # the old answers were as alike
    three = ["The answer is: x."] * 3 + base[3:]  # share 0.3, base 0.1
    assert template_collapse(three, base, margin=0.15) and not template_collapse(three, base, margin=0.25)
    assert not template_collapse(["The answer is: x."] * 2 + base[2:], base, margin=0.05)  # two alike is chance
    assert not template_collapse([], base)


PROMPTS = ["What is the capital of France?", "Explain photosynthesis to me", "How do I boil an egg?",
           "What is a good name for a cat?", "Name a fruit that is red", "Why do cats purr?"]
OLD = [f"{p.rstrip('?')}: here are a few clear, useful details worth knowing about it." for p in PROMPTS]
TEMPLATED = [f"The answer is: a careful reply with several useful details about {p.rstrip('?').lower()}." for p in PROMPTS]


def _check(prompts, after, before, collapse=template_collapse):
    answers = iter([after, before])
    checks = GateChecks(answer_fn=lambda qs: next(answers)[:len(qs)], quality_issues=quality_issues,
                        template_collapse=collapse)
    return answer_check(prompts, checks, lambda: (lambda: None))


def test_answer_check_counts_template_collapse_as_one_failure():
    assert all(quality_issues(q, a) == [] for q, a in zip(PROMPTS, TEMPLATED))  # each answer alone passes
    result = _check(PROMPTS, TEMPLATED, OLD)
    failures, fit_before, fit_after = result
    assert (failures, fit_before, fit_after) == (1, None, None)
    assert isinstance(result, AnswerCheck) and "template collapse" in result.notes[0]
    assert _check(PROMPTS, TEMPLATED, TEMPLATED).notes == ()  # the old adapter already answered so
    assert _check(PROMPTS, TEMPLATED, OLD, collapse=None) == (0, None, None)  # not asked: as before
    few = PROMPTS[:MIN_TEMPLATE_PROMPTS - 1]
    assert _check(few, TEMPLATED, OLD) == (0, None, None)  # too few answers to judge
    hollow = ["The answer is:"] * len(PROMPTS)
    assert _check(PROMPTS, hollow, OLD) == (len(PROMPTS) + 1, None, None)  # each hollow answer, and the template


def test_answer_check_counts_answers_that_stopped_being_about_their_prompt():
    """Relevance (PMI per token, judged by the base model): a new answer below the threshold whose old answer
    was clearly above it is a failure; a flag that flips near the threshold (noise) or an unchanged answer is not."""
    from asls_mlx.adaptation.gate import RELEVANCE_MARGIN
    from asls_mlx.adaptation.relevance import PMI_THRESHOLD

    prompts = ["What is rain?", "Why is the sky blue?", "What is DNA?", "How do I boil an egg?"]
    old = ["Water falling from clouds.", "Sunlight scatters in air.", "A molecule of genes.", "Boil water, add the egg."]
    new = ["Water falling from clouds.", "Here is a poem about leaves.", "Genetic code, a molecule.",
           "1. First, you need to bring the water to a rolling boil"]
    pmi = {old[1]: 0.9, new[1]: -0.2, old[2]: PMI_THRESHOLD + RELEVANCE_MARGIN / 2, new[2]: PMI_THRESHOLD - 0.01,
           old[3]: 0.73, new[3]: 0.49}  # the quick eval's concise user: inside the band, no verdict either way
    judged = []

    def relevance(qs, answers):
        judged.extend(answers)
        return [pmi[a] for a in answers]

    answers = iter([new, old])
    checks = GateChecks(answer_fn=lambda qs: next(answers), relevance=relevance)
    result = answer_check(prompts, checks, lambda: (lambda: None))
    assert result == (1, None, None) and len(result.notes) == 1
    # The note says which answer and why, so a rejected run can be understood from its record.
    assert result.notes[0] == 'not about its prompt (PMI -0.20, was 0.90): "Why is the sky blue?" -> "Here is a poem about leaves."'
    assert old[0] not in judged  # unchanged: not judged at all
    looping = ["rain rain rain rain rain rain rain rain rain rain rain rain", old[1], old[2]]
    answers = iter([looping, old])
    result = answer_check(prompts[:3], GateChecks(answer_fn=lambda qs: next(answers), quality_issues=quality_issues),
                          lambda: (lambda: None))
    assert result == (1, None, None) and result.notes[0].startswith("repetition") and '"What is rain?" -> "rain rain' in result.notes[0]
    # One answer broke, another one the old adapter broke is mended: not worse than the active version.
    mended = ["rain rain rain rain rain rain rain rain rain rain rain rain", "The sky looks blue because air scatters blue light.", old[2]]
    was = [old[0], "sky sky sky sky sky sky sky sky sky sky sky sky", old[2]]
    answers = iter([mended, was])
    result = answer_check(prompts[:3], GateChecks(answer_fn=lambda qs: next(answers), quality_issues=quality_issues),
                          lambda: (lambda: None))
    assert result == (0, None, None) and "1 answer(s) the old adapter got wrong are now fine" in result.notes[-1]


def test_answer_check_holds_a_chain_of_adapters_to_the_base_models_answers():
    """The follow-up user's v2 answered 10 of 12 prompts with questions only; v3, measured against v2 alone,
    was no worse and committed. With the base model's answers as a floor it is rejected; one answer that
    flips against the base model (noise on a handful of prompts) is not enough."""
    questions = [f"How about {p.split()[-1].rstrip('?').lower()}? Is there anything else you want to know?" for p in PROMPTS]
    assert all("questions_only" in quality_issues(q, a) for q, a in zip(PROMPTS, questions))
    swaps = []

    def check(after, old, base):
        answers = iter([after, old, base])
        checks = GateChecks(answer_fn=lambda qs: next(answers)[:len(qs)], quality_issues=quality_issues)
        return answer_check(PROMPTS, checks, lambda: (lambda: None), lambda: swaps.append("base") or (lambda: None))

    result = check(questions, questions, OLD)
    assert result == (1, None, None) and swaps == ["base"]
    assert result.notes[0].startswith(f"worse than the base model: {len(PROMPTS)} more of {len(PROMPTS)} answers fail")
    assert "questions_only" in result.notes[0]
    assert check(questions, questions, questions) == (0, None, None)  # the base model answers so too
    one_off = [questions[0]] + OLD[1:]
    assert check(one_off, one_off, OLD) == (0, None, None)  # one answer of six: noise
    assert check(questions[:2] + OLD[2:], OLD, OLD) == (3, None, None)  # two worse than the active one, and below the floor
    # A template the chain learnt a little at a time: v2 five of six there, v3 no worse than v2, far from base.
    alike = [f"Here's how you can add more detail about {p.rstrip('?').lower()} and its background." for p in PROMPTS]
    most = alike[:5] + OLD[5:]
    swaps.clear()
    answers = iter([alike, alike, OLD])
    checks = GateChecks(answer_fn=lambda qs: next(answers), quality_issues=quality_issues,
                        template_collapse=lambda a, b: template_collapse(a, b, margin=0.3))
    result = answer_check(PROMPTS, checks, lambda: (lambda: None), lambda: (lambda: None))
    assert result == (1, None, None) and "than the base model's" in result.notes[0]
    answers = iter([alike, most, OLD])
    checks.answer_fn = lambda qs: next(answers)
    assert answer_check(PROMPTS, checks, lambda: (lambda: None)) == (0, None, None)  # 5 -> 6 alike: not vs the old one
    no_base = iter([questions, questions])
    checks = GateChecks(answer_fn=lambda qs: next(no_base), quality_issues=quality_issues)
    assert answer_check(PROMPTS, checks, lambda: (lambda: None)) == (0, None, None)  # the active one is the base: as before


def test_the_new_answers_pmi_is_computed_once_against_the_old_adapter_and_the_base_model():
    judged = []

    def relevance(qs, answers):
        judged.extend(answers)
        return [1.0] * len(answers)

    new = [f"{p} new" for p in PROMPTS]
    answers = iter([new, OLD, [f"{p} base" for p in PROMPTS]])
    checks = GateChecks(answer_fn=lambda qs: next(answers), relevance=relevance)
    assert answer_check(PROMPTS, checks, lambda: (lambda: None), lambda: (lambda: None)) == (0, None, None)
    assert sorted(judged) == sorted(new + OLD + [f"{p} base" for p in PROMPTS])  # each answer read once


PROBES = {"What is the capital of Germany?": lambda a: "Berlin" in a, "Who painted the Mona Lisa?": lambda a: "Leonardo" in a,
          "What organ pumps blood around the body?": lambda a: "heart" in a}
RIGHT = {"What is the capital of Germany?": "The capital of Germany is Berlin.",
         "Who painted the Mona Lisa?": "Leonardo da Vinci painted it.", "What organ pumps blood around the body?": "The heart pumps blood through the body."}


def _probed(new: dict, old: dict, base: dict | None = None, probes: dict = PROBES, right: dict = RIGHT,
            base_probe_answers=None, one_batch: bool = False):
    """answer_check on PROMPTS with ``probes``, answering from ``new`` / ``old`` / ``base`` by which weights are in
    (else ``right``); returns (result, the batches answered as (weights, prompts)). ``one_batch``: rows with their
    own adapter weights (``answers_with``): each batch is then a list of (weights, prompt) rows."""
    weights, batches = ["new"], []
    # a stand-in for the old adapter's weights, told apart by identity; a first adapter's old weights are the base
    # model's, the same set as its base rows' {}
    old_weights = {"old": 1} if base is not None else {}

    def answer(whose, q):
        table = {"new": new, "old": old, "base": base}[whose]
        return table.get(q, OLD[PROMPTS.index(q)] if q in PROMPTS else right[q])

    def answer_fn(qs):
        batches.append((weights[-1], list(qs)))
        return [answer(weights[-1], q) for q in qs]

    def answers_with(qs, row_loras):
        whose = ["new" if r is None else "old" if r is old_weights else "base" for r in row_loras]
        batches.append(list(zip(whose, qs)))
        return [answer(w, q) for w, q in zip(whose, qs)]

    def swap(to):
        return lambda: weights.append(to) or (lambda: weights.pop())

    checks = GateChecks(answer_fn=answer_fn, quality_issues=quality_issues, probes=probes,
                        template_collapse=lambda a, b: template_collapse(a, b, margin=0.3),
                        base_probe_answers=base_probe_answers, answers_with=answers_with if one_batch else None)
    return answer_check(PROMPTS, checks, swap("old"), None if base is None else swap("base"), old_weights=old_weights), batches


def test_the_new_old_and_base_answers_are_decoded_in_one_batch_with_the_same_decisions():
    """A batch of 2 rows costs half of one of 24 on the CPU: the gate's rows for the old and the base weights ride
    in the new adapter's batch, each row with its own weights, and every decision is the one the gate takes
    decoding them set after set."""
    asks = {q: f"Would you like to know more about {q.split()[-1].rstrip('?').lower()} today?" for q in PROBES}
    broken = {PROMPTS[0]: "Would you like to know more?", PROMPTS[1]: "Would you like to know more?"}
    for new, old, base in ((asks, {}, None), (asks, asks, {}), (asks, {}, asks), (broken, {}, {}), ({}, {}, None)):
        one, batches = _probed(new, old, base=base, one_batch=True)
        apart, _ = _probed(new, old, base=base)
        assert one == apart and one.notes == apart.notes and one.answers_after == apart.answers_after
        assert one.answers_before == apart.answers_before and one.answers_base == apart.answers_base
        assert len(batches) == 1
        expected = [("new", q) for q in PROMPTS + list(PROBES)] + [("old", q) for q in PROMPTS]
        expected += [("old", q) for q in PROBES] if base is None else [("base", q) for q in PROMPTS + list(PROBES)]
        assert batches[0] == expected


def test_the_base_models_probe_answers_are_decoded_once_and_then_read_from_a_cache():
    """They depend on the base weights and the system prompt only; a later update reads them (the gate's decoding
    is most of a session update's time). The decisions are the ones the gate takes decoding them."""
    asks = {q: f"Would you like to know more about {q.split()[-1].rstrip('?').lower()} today?" for q in PROBES}
    for base, old in ((None, {}), ({}, asks)):  # no active adapter (the old weights are the base model's), then one
        kept: dict = {}

        def cache(probes, decode):
            if tuple(probes) not in kept:
                kept[tuple(probes)] = decode(probes)
            return kept[tuple(probes)]

        first, batches = _probed(asks, old, base=base, base_probe_answers=cache)
        assert first == _probed(asks, old, base=base)[0] == (1, None, None)  # the same decision as without the cache
        assert any(w == ("old" if base is None else "base") and set(PROBES) <= set(qs) for w, qs in batches)  # base weights
        again, batches = _probed(asks, old, base=base, base_probe_answers=cache)
        assert again == first and again.notes == first.notes
        assert not any(w != "new" and set(qs) & set(PROBES) for w, qs in batches)  # read, not decoded


def test_the_gate_asks_probe_questions_so_forgetting_shows_whatever_the_session_asked():
    """The follow-up user's seed-2 adapter answered its session's prompts well and the correctness questions with
    "Would you like ..." (kept 30% of the base model's correctness). Fixed probe questions, answered by the new
    adapter and the base model in the batches the gate decodes anyway, catch it: two answers the base model got right
    and the adapter gets wrong reject; one is noise."""
    from asls_mlx.adaptation.gate import PROBE_FLOOR

    asks = {q: f"Would you like to know more about {q.split()[-1].rstrip('?').lower()} today?" for q in PROBES}
    result, batches = _probed(asks, {})  # no active adapter: the old weights are the base model's
    assert result == (1, None, None) and PROBE_FLOOR == 2
    assert result.notes[0].startswith("forgets what the base model knew: 3 more of 3 probe questions answered wrong")
    assert '"What is the capital of Germany?" -> "Would you like' in result.notes[0]
    assert len(result.notes) == 3 and all('-> "Would you like' in n for n in result.notes)  # every lost probe named
    assert batches == [("new", PROMPTS + list(PROBES)), ("old", PROMPTS + list(PROBES))]  # one batch each
    one = dict(list(asks.items())[:1])
    assert _probed(one, {})[0] == (0, None, None)  # one probe of three wrong: noise
    wrong_answer = {"What is the capital of Germany?": "The capital of Germany is Paris.",
                    "Who painted the Mona Lisa?": "Michelangelo painted it."}
    assert _probed(wrong_answer, {})[0] == (1, None, None)  # plainly wrong counts as wrong, not only templates
    # With an adapter active the probes are held to the base model, not to the active adapter.
    result, batches = _probed(asks, asks, base={})
    assert result == (1, None, None) and "probe questions" in result.notes[0]
    assert batches == [("new", PROMPTS + list(PROBES)), ("old", PROMPTS), ("base", PROMPTS + list(PROBES))]
    assert _probed(asks, {}, base=asks)[0] == (0, None, None)  # the base model answers so too: nothing forgotten
    # A prompt the user asked that is also a probe is answered once and judged as the user's prompt.
    result, batches = _probed({}, {})
    assert result == (0, None, None) and all(len(set(qs)) == len(qs) for _, qs in batches)


def _checks_into(seen: list):
    """A stand-in for ``update_adapter`` that keeps the gate checks it was given and trains nothing."""
    from asls_mlx.adaptation.update import UpdateReport

    return lambda target, config, checks, *rest: seen.append(checks) or UpdateReport(False, "not run")


def test_the_session_gate_asks_the_bundled_probe_questions_with_the_correctness_checker(tiny_model_dir, monkeypatch):
    from asls_mlx import Assistant, AssistantConfig, session_update
    from asls_mlx.correctness import load_gate_probes, load_correctness_set

    seen = []
    monkeypatch.setattr(session_update, "update_adapter", _checks_into(seen))
    from asls_mlx.adaptation.config import LearningConfig
    from asls_mlx.data_files import task_probes

    config = AssistantConfig(max_tokens=8, self_labelled=False, learning=LearningConfig(task_probes=False))
    with Assistant(user="probed", model=str(tiny_model_dir), config=config) as a:
        session_update.train_and_gate(session_update.Learner(a.store, a.user, a.engine, a.config))
    probes = seen[0].probes
    assert list(probes) == [p.question for p in load_gate_probes()] and len(probes) >= 6
    assert not set(probes) & {it.question for it in load_correctness_set()}  # the eval never scores what the gate picks on
    russia = "What is the capital of Russia?"
    assert probes[russia]("Moscow.") and not probes[russia]("Paris.") and not probes[russia]("Moscow or Kyiv.")
    # A concise user's adapter answers in a word or two: right, and no quality issue (not "too short").
    short = ["Moscow.", "Portuguese.", "Jane Austen.", "The heart.", "The yen.", "Four."]
    assert [probes[q](a) and not quality_issues(q, a) for q, a in zip(probes, short)] == [True] * 6
    # With task_probes on (the default), the session gate asks the task probes too.
    with Assistant(user="task-probed", model=str(tiny_model_dir), config=AssistantConfig(max_tokens=8, self_labelled=False)) as a:
        session_update.train_and_gate(session_update.Learner(a.store, a.user, a.engine, a.config))
    assert list(seen[1].probes) == list(probes) + task_probes()


# Base-model-like answers to the task probes that do each task (the embedded model's own pass too: e2e test).
TASK_RIGHT = {
    "library": "The library closes for two weeks in July for roof repairs, but books can go in the drop box.",
    "museum": "The museum bus leaves at nine, so be at the gate by 8:45 with a packed lunch and a raincoat.",
    "battery": "A phone with a bright screen and long battery life, let down by its low-light camera and soft case.",
    "picnic": "1. Sandwiches\n2. Fresh fruit\n3. A blanket to sit on",
    "vitamin": "1. Oranges\n2. Kiwis\n3. Strawberries",
    "save water": "1. Fix dripping taps\n2. Take shorter showers\n3. Run the dishwasher only when full",
    "ocean": "1. Dolphins\n2. Sharks\n3. Octopuses\n4. Sea turtles",
}


def test_task_probes_reject_an_adapter_that_stops_doing_short_tasks():
    """After one session a concise user's adapter read a pasted paragraph back as its "summary" and cut a list of
    seven to two items; the gate's probe questions (facts) did not see it. With ``task_probes`` the gate also asks
    short tasks, and an answer that fails the task checks counts as a wrong probe answer."""
    from asls_mlx.data_files import task_probes
    from asls_mlx.session_update import gate_probes

    tasks = task_probes()
    assert len(tasks) >= 12 and set(gate_probes()) < set(gate_probes(tasks=True))
    assert set(gate_probes(tasks=True)) - set(gate_probes()) == set(tasks)
    probes = {q: gate_probes(tasks=True)[q] for q in tasks if any(k in q for k in TASK_RIGHT)}
    right = {q: next(a for k, a in TASK_RIGHT.items() if k in q) for q in probes}
    assert len(probes) == len(TASK_RIGHT) and not any(quality_issues(q, a) for q, a in right.items())
    copied = {q: q.split("\n", 1)[1].strip('"') for q in probes if SUMMARY.search(q)}
    cut = {q: "1. Sandwiches." for q in probes if items_asked(q)}
    assert len(copied) == 3 and len(cut) == 4
    result = _probed(copied | cut, {}, probes=probes, right=right)[0]
    assert result == (1, None, None) and "7 more of 7 probe questions answered wrong" in result.notes[0]
    assert _probed(dict(list(copied.items())[:1]), {}, probes=probes, right=right)[0] == (0, None, None)  # noise
    assert _probed({}, {}, probes=probes, right=right)[0] == (0, None, None)


def test_no_task_probe_is_a_prompt_the_eval_or_the_anchors_ask():
    from asls_mlx.data_files import anchor_questions, load_prompts, task_probes

    asked = [r["prompt"] for r in load_prompts()] + anchor_questions()
    words = lambda t: frozenset(re.findall(r"[a-z]+", t.lower()))  # noqa: E731
    for q in task_probes():
        assert max(len(words(q) & words(a)) / len(words(q) | words(a)) for a in asked) < 0.6, q


def test_the_gate_reason_names_the_template_collapse():
    metrics = {"n": 2, "accuracy": 1.0, "margin": 0.5}
    decision = gate(metrics, metrics, 1.0, quality_failures=1, quality_notes=("template collapse: 6 answers",))
    assert not decision.commit and "template collapse: 6 answers" in decision.reason
    assert gate(metrics, metrics, 1.0).commit


def test_the_gate_rejects_an_adapter_whose_answers_collapse_to_one_template(tiny_model_dir):
    """update_adapter on the tiny model: the new adapter's answers each pass the quality guard, but they all
    open "The answer is:" while the old adapter's did not, so the gate keeps the old one."""
    from asls_mlx import Assistant, AssistantConfig
    from asls_mlx.adaptation.update import UpdateTarget, update_adapter

    edits = [("What is the capital of France?", "Paris is the capital."),
             ("Explain photosynthesis to me", "Plants turn light into sugar."),
             ("How do I boil an egg?", "Boil it for nine minutes."),
             ("What is a good name for a cat?", "Try Milo, a classic."),
             ("Name a fruit that is red", "An apple is red.")]
    with Assistant(user="tmpl", model=str(tiny_model_dir),
                   config=AssistantConfig(max_tokens=12, train_budget_s=20, self_labelled=False)) as a:
        for q, e in edits:
            a.chat(q)
            a.edit(e)
        a.end_session(train="none")
        calls = []

        def answer_fn(prompts):  # the new adapter first, then the old one
            calls.append(list(prompts))
            if len(calls) == 1:
                return [f"The answer is: a careful reply with several useful details about {q.lower()}." for q in prompts]
            return [f"{q}: here are a few clear, useful details worth knowing about it." for q in prompts]

        engine = a.engine
        report = update_adapter(UpdateTarget(a.store, a.user.id, engine.model, engine.tokenizer, a.repo, engine.model_id),
                                one_try(a),
                                GateChecks(answer_fn=answer_fn, quality_issues=quality_issues,
                                           template_collapse=template_collapse))
        assert len(calls) == 2 and len(calls[0]) >= MIN_TEMPLATE_PROMPTS
        assert not report.committed and 'answers open "the answer is" far more often' in report.reason
        assert a.store.active_adapter(a.user.id) is None


def test_the_gate_answers_with_the_base_weights_to_hold_a_chain_to_the_base_model(tiny_model_dir):
    """update_adapter on the tiny model, v1 active: the new adapter answers as badly as v1, the base model
    well. The gate puts the base weights in to answer (B = 0), rejects, and leaves v1's weights exactly."""
    import mlx.core as mx

    from asls_mlx import Assistant, AssistantConfig
    from asls_mlx.adaptation.lora import adapter_is_identity, lora_parameters
    from asls_mlx.adaptation.update import UpdateTarget, update_adapter

    with Assistant(user="chain", model=str(tiny_model_dir),
                   config=AssistantConfig(max_tokens=12, train_budget_s=20, self_labelled=False)) as a:
        target = lambda: UpdateTarget(a.store, a.user.id, a.engine.model, a.engine.tokenizer, a.repo, a.engine.model_id)
        for round_ in range(2):
            for q in PROMPTS:
                a.chat(q)
                a.edit(f"{q.rstrip('?')}: a short answer, round {round_}.")
            a.end_session(train="none")
            if round_ == 0:
                assert update_adapter(target(), a.config.learning_config()).committed
                v1 = {k: mx.array(v) for k, v in lora_parameters(a.engine.model).items()}
        asked = []

        def answer_fn(prompts):  # the adapters ask questions back; the base model answers
            asked.append(adapter_is_identity(a.engine.model))
            if asked[-1]:
                return [f"{q.rstrip('?')}: here are a few clear, useful details worth knowing about it." for q in prompts]
            return [f"How about {q.split()[-1].rstrip('?').lower()}? Is there anything else you want to know?" for q in prompts]

        report = update_adapter(target(), one_try(a), GateChecks(answer_fn=answer_fn, quality_issues=quality_issues))
        assert asked == [False, False, True]  # new, old (v1), base
        assert not report.committed and "worse than the base model" in report.reason, report.reason
        assert a.store.active_adapter(a.user.id).version == 1
        assert all(mx.array_equal(v, v1[k]).item() for k, v in lora_parameters(a.engine.model).items())


def test_the_session_gate_judges_template_collapse_two_answers_of_six_at_a_time(tiny_model_dir, monkeypatch):
    """The session update passed no template check to the gate, so the follow-up user's v3 (8 of 12 answers opening
    "Here's how you can add ...") committed. Now it does, with GATE_TEMPLATE_MARGIN: one more answer of six alike
    is chance, two are a template."""
    from asls_mlx import Assistant, AssistantConfig, session_update
    from asls_mlx.adaptation.gate import GATE_TEMPLATE_MARGIN

    seen = []
    monkeypatch.setattr(session_update, "update_adapter", _checks_into(seen))
    with Assistant(user="wired", model=str(tiny_model_dir), config=AssistantConfig(max_tokens=8, self_labelled=False)) as a:
        session_update.train_and_gate(session_update.Learner(a.store, a.user, a.engine, a.config))
    collapse = seen[0].template_collapse
    assert GATE_TEMPLATE_MARGIN == 0.3 and collapse is not None
    alike = [f"Here's how you can add more detail about {p.rstrip('?').lower()} and its background." for p in PROMPTS]
    assert collapse(alike[:3] + OLD[3:], OLD) and not collapse(alike[:3] + OLD[3:], alike[:2] + OLD[2:])


def test_training_keeps_only_pairs_whose_preferred_answer_is_about_its_prompt():
    """A model-written chosen answer must answer its prompt (the base model's PMI); the user's own edits stay."""
    from asls_mlx.adaptation.gate import GateChecks
    from asls_mlx.adaptation.update import helpful_chosen
    from asls_mlx.store import PreferencePair

    pairs = [PreferencePair("What is rain?", "Water falling from clouds.", "It rains.", "regenerate", 1.0),
             PreferencePair("What is DNA?", "The answer is: a poem about leaves.", "A molecule.", "self", 1.0),
             PreferencePair("Name a cat.", "Milo.", "Here are ten names ...", "edit", 1.0)]
    pmi = {"Water falling from clouds.": 0.8, "The answer is: a poem about leaves.": -0.3}
    seen = []

    def relevance(prompts, answers):
        seen.extend(answers)
        return [pmi[a] for a in answers]

    kept, dropped = helpful_chosen(pairs, GateChecks(relevance=relevance))
    assert [p.source for p in kept] == ["regenerate", "edit"] and dropped == 1
    assert "Milo." not in seen  # an edit is the user's own: not judged
    assert helpful_chosen(pairs, GateChecks()) == (pairs, 0)  # no judge: as before


@pytest.mark.parametrize("prompt, answer, flagged", [
    # What the follow-up persona's adapter wrote under held-out answers (quick eval, seed 0).
    ("How can I improve my sleep?", "Keep a regular bedtime.\n\nBest regards,\n\n#SleepTips #HealthEducation", True),
    ("Format this book as an MLA 9 citation: ...", "Finch, Laura. The Quiet Coast. Harrow Press, 2016.\n#Literature #MLA9", True),
    ("How can I improve my sleep?", "Keep a regular bedtime and dim the lights.\n\nBest regards,\nJohn", True),
    # A letter asked for may sign off; one hashtag, C# or "sincerely" mid-sentence are no filler.
    ("Write an email to my team saying the meeting moved.", "Hi team,\nThe meeting is on Friday.\n\nBest regards,\nSam", False),
    ("What is C#?", "C# is a programming language from Microsoft that runs on .NET.", False),
    ("Make this shorter: ...", "We are sincerely sorry for any inconvenience this may cause to residents.", False),
])
def test_hashtags_and_sign_offs_outside_a_letter_are_boilerplate(prompt, answer, flagged):
    assert ("boilerplate" in quality_issues(prompt, answer)) is flagged


@pytest.mark.parametrize("answer, content", [
    ("You're right, I'll make sure to provide more concise answers. Flour, 2 cups.", "Flour, 2 cups."),
    ("You’re right! Here's a shorter version:\n\nAir scatters blue light.", "Air scatters blue light."),
    ("Certainly, the meeting is moved to Friday at 10:00.", "The meeting is moved to Friday at 10:00."),
    ("My apologies for the confusion. It is 42.", "It is 42."),
    # the concise user's seed 2 (quick eval): every update rejected for an answer that opened so
    ("I'm sorry for any confusion, I'll make sure to provide more concise answers. It is an opinion.", "It is an opinion."),
    ("Of course.", ""),
    # The follow-up persona's corrections ("end with a follow-up question please"), quick eval seed 0: these leads
    # became chosen answers and the adapter opened unrelated answers with them.
    ("You're right, I'll provide more details on this topic later in the article. Here's a continuation:\n\n"
     "1. **RAM**: 16 GB is plenty.", "1. **RAM**: 16 GB is plenty."),
    ("Here's how you can add more detail:\n\n1. The sky is blue because air scatters blue light.",
     "1. The sky is blue because air scatters blue light."),
    # the concise user's seed 0 (quick eval): chosen after "shorter please", it opened a Python answer
    ("The shorter version would be:\n```python\ndef count(s):\n    return len(s.split())\n```",
     "```python\ndef count(s):\n    return len(s.split())\n```"),
    ("A more concise answer is: Paris.", "Paris."),
    # not acknowledgements: kept as they are
    ("The shorter version of the story is about a dog.", "The shorter version of the story is about a dog."),
    ("Sorry to hear that; try going to bed earlier.", "Sorry to hear that; try going to bed earlier."),
    ("Surely not.", "Surely not."),
    ("Okra is a vegetable.", "Okra is a vegetable."),
    ("Here's how you can clean your cast iron pan:\n\n1. Rinse it.", "Here's how you can clean your cast iron pan:\n\n1. Rinse it."),
    ("Let me explain: plants turn light into sugar.", "Let me explain: plants turn light into sugar."),
])
def test_strip_acknowledgement_keeps_only_the_content(answer, content):
    from asls_mlx.profiling.acknowledgement import strip_acknowledgement

    assert strip_acknowledgement(answer) == content


@pytest.mark.parametrize("prompt, answer, flagged", [
    # What the follow-up persona's adapter answered (quick eval, seed 0: 10 of 12 held-out answers).
    ("What is the capital of Canada?", "How about the capital city? Is there anything else you're interested in?", True),
    ("How can I sleep better?", "Have you tried going to bed earlier? What time do you sleep?", True),
    # Greetings and offers of help say nothing asked for (follow-up persona's adapters, "Any advice?").
    ("I have a presentation tomorrow and I am nervous. Any advice?",
     "Hey there, I'm here to help with your upcoming presentation. What's on your mind?", True),
    ("I have a presentation tomorrow and I am nervous. Any advice?",
     "Hey there, welcome to the world of science! How about we talk about something fun? What do you need?", True),
    ("I have a presentation tomorrow and I am nervous. Any advice?", "Sure! Practise it twice. Want more tips?", False),
    ("What is the capital of Canada?", "Sure, the capital of Canada is Ottawa. Anything else?", False),
    # The answer, then the follow-up question the persona wants; a short answer to a short question; questions asked for.
    ("How can I sleep better?", "Go to bed at the same time every day. Would you like more tips?", False),
    ("What is the capital of Canada?", "Ottawa.\n\nWould you like to know more about Canada?", False),
    ("Write three questions for a job interview.", "What are your strengths? Why this job?", False),
])
def test_an_answer_that_only_asks_back_is_a_failure(prompt, answer, flagged):
    assert ("questions_only" in quality_issues(prompt, answer)) is flagged


def test_the_session_gate_keeps_the_base_models_probe_answers_only_for_a_prompt_without_a_profile(tiny_model_dir,
                                                                                              tmp_path):
    """Kept beside the model for every later update and every user of the machine: never answers shaped by a
    user's profile, which are that user's."""
    from asls_mlx import AssistantConfig
    from asls_mlx.adaptation.base_cache import BaseCache
    from asls_mlx.session_update import probe_answer_cache
    from adaptation_fixtures import fresh_model

    model, _ = fresh_model(tiny_model_dir, None)
    config, decoded = AssistantConfig(), []

    def decode(qs):
        decoded.append(list(qs))
        return [f"answer {i}" for i, _ in enumerate(qs)]

    probes = list(PROBES)
    assert probe_answer_cache(BaseCache(tmp_path), model, config.system_prompt + "\nKeep answers short.", config) is None
    first = probe_answer_cache(BaseCache(tmp_path), model, config.system_prompt, config)(probes, decode)
    later = probe_answer_cache(BaseCache(tmp_path), model, config.system_prompt, config)(probes, decode)  # a new process
    assert first == later == ["answer 0", "answer 1", "answer 2"] and decoded == [probes]
    assert [p.name.split("-")[:3] for p in tmp_path.iterdir()] == [["gate", "probe", "answers"]]
