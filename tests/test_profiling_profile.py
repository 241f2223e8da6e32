"""The profile moves the right way, follows drift, renders, diffs, and scores answers sensibly."""

import math
import re

import pytest

from asls_mlx.profiling import (
    Feature,
    Profile,
    load_profile,
    process_session,
    rebuild_profile,
    score,
)
from asls_mlx.store import open_store

LONG = ("Rome is the capital of Italy. It was founded, according to legend, in 753 BC. It became the "
        "centre of a vast empire. Its history spans nearly three thousand years. Today it is a large "
        "modern city. Millions of tourists visit it every year. The Vatican lies inside it. ") * 2
SHORT = "Rome is Italy's capital, founded in 753 BC."


def _session(s, uid, topic, followup=None, second=SHORT, first=LONG):
    """One turn on ``topic`` (long answer), an optional follow-up and its answer, then a new topic."""
    sid = s.start_session(uid)
    q = s.add_message(sid, "user", f"Tell me about {topic}")
    a = s.add_message(sid, "assistant", first.replace("Rome", topic), parent_id=q)
    if followup:
        c = s.add_message(sid, "user", followup, parent_id=a)
        s.add_message(sid, "assistant", second.replace("Rome", topic), parent_id=c)
    return sid


def test_user_who_keeps_asking_shorter_gets_a_short_length_preference():
    s = open_store()
    u = s.get_or_create_user("ann")
    targets = []
    for topic in ["Rome", "Paris", "Berlin", "Madrid"]:
        res = process_session(s, "ann", _session(s, u.id, topic, "shorter please"))
        targets.append(res.profile.target_words)
    long_words = len(LONG.split())
    assert long_words > 80  # the answers it saw were long ...
    assert targets[-1] is not None and targets[-1] <= 0.5 * long_words  # ... it wants half or less
    prof = load_profile(s, "ann")
    assert prof.length.confidence > 0.6 and prof.version == 4
    assert prof.render().startswith("Keep answers short (about ")  # an instruction for the model
    assert prof.topics and "rome" in prof.topics


def test_profile_follows_drift_within_a_few_sessions():
    s = open_store()
    u = s.get_or_create_user("bob")
    for topic in ["Rome", "Paris", "Berlin", "Madrid", "Vienna"]:
        process_session(s, "bob", _session(s, u.id, topic, "in bullet points",
                                           second="- Rome is old.\n- Rome is big.\n- Rome is in Italy."))
    assert load_profile(s, "bob").bullets.value > 0.8
    drifts, values = [], []
    for topic in ["Oslo", "Lisbon", "Prague"]:
        res = process_session(s, "bob", _session(
            s, u.id, topic, "no bullet points, write prose please",
            first="- Rome is old.\n- Rome is big.\n- Rome is in Italy.", second=SHORT))
        drifts.append(res.drift)
        values.append(res.profile.bullets.value)
    assert values[-1] < 0  # the preference flipped within three sessions
    assert drifts[0] > 0.5  # the first contradicting session raised the drift score
    assert "Write in prose, not bullet points." in load_profile(s, "bob").render()


def test_statements_edits_and_render():
    s = open_store()
    u = s.get_or_create_user("cy")
    sid = s.start_session(u.id)
    q = s.add_message(sid, "user", "Call me Sam. I prefer a formal tone. What is an API?")
    a = s.add_message(sid, "assistant", "Hey! It's kinda like a menu, y'know, stuff you can order. "
                                        "Cool, right? You'll love it!", parent_id=q)
    s.set_edit(a, "An API is a defined interface. Therefore, programs may request services from "
                  "one another; furthermore, it specifies the format.")
    res = process_session(s, "cy", sid)
    prof = res.profile
    assert prof.facts["name"] == "Sam"
    assert prof.formality.value > 0.5 and prof.formality.confidence > 0.5
    text = prof.render()
    assert text == "You are talking with Sam. Use a formal tone."  # nothing about "the user"
    assert any(line.startswith("formality: unknown -> formal") for line in res.changes)
    assert any(line.startswith("name: unknown -> Sam") for line in res.changes)


def test_empty_profile_renders_empty_and_roundtrips():
    assert Profile().render() == ""
    p = Profile(length=Feature(3.5, 2.0, 3), bullets=Feature(1.0, 2.0, 2), facts={"name": "Al"})
    assert Profile.from_dict(p.to_dict()) == p


def test_process_session_is_idempotent_and_rebuild_after_forget():
    s = open_store()
    u = s.get_or_create_user("dee")
    s1 = _session(s, u.id, "Rome", "shorter please")
    first = process_session(s, "dee", s1)
    again = process_session(s, "dee", s1)
    assert again.already_processed and again.pairs == [] and len(s.profiles(u.id)) == 1
    assert first.pairs and s.session(s1).processed
    s2 = _session(s, u.id, "Paris", "shorter please")
    process_session(s, "dee", s2)
    s.forget("dee", session_id=s1)
    assert s.profiles(u.id) == []
    prof = rebuild_profile(s, "dee")
    assert prof.version == 1 and [p.session_id for p in s.profiles(u.id)] == [s2]


def _prof(**features):
    p = Profile()
    for name, value in features.items():
        setattr(p, name, Feature(value, 5.0, 5))
    return p


def test_scorer_prefers_answers_that_fit():
    import math

    concise = _prof(length=math.log(30))
    short = "Rome is the capital of Italy and was founded in 753 BC by Romulus."
    assert score(concise, "Tell me about Rome", short) > score(concise, "Tell me about Rome", LONG) + 0.3
    assert score(concise, "Tell me about Rome", "I'm sorry, I'm unable to assist with that.") == 0.0
    assert score(concise, "Tell me about Rome", "the city of the city of the city of") == 0.0
    bullets = _prof(bullets=1.0)
    listy = "- Rome is old.\n- Rome is the capital of Italy."
    assert score(bullets, "Tell me about Rome", listy) == 1.0
    assert score(bullets, "Tell me about Rome", short) == 0.0
    formal = _prof(formality=1.0)
    assert score(formal, "Tell me about Rome", "Rome is the capital; furthermore, it is ancient.") > \
        score(formal, "Tell me about Rome", "Rome's the capital, it's super old, you'll love it!")
    code = _prof(code_first=1.0)
    first = "```python\nprint(1)\n```\nThis prints one."
    later = "This prints one, as you can see:\n\nHere it is below.\n```python\nprint(1)\n```"
    assert score(code, "Write python code to print 1", first) == 1.0
    assert score(code, "Write python code to print 1", later) == 0.0
    tldr = _prof(tldr=1.0)
    assert score(tldr, "Tell me about Rome", "TL;DR: old city.\n\n" + short) == 1.0
    assert score(Profile(), "Tell me about Rome", short) == 0.5  # nothing known: neutral


@pytest.mark.parametrize("words, target, lo, hi", [(30, 30, 1.0, 1.0), (120, 30, 0.0, 0.0),
                                                    (60, 30, 0.5, 0.5), (15, 30, 0.6, 0.7)])
def test_length_fit(words, target, lo, hi):
    from asls_mlx.profiling.scorer import length_fit

    assert lo <= length_fit(words, target) <= hi


# -- evidence: a feature enters the profile only when the user expressed it ----------------------------

from asls_mlx.evaluation.personas import bulletize, formalize, prepend_tldr  # noqa: E402
from asls_mlx.evaluation.trimming import truncate_words  # noqa: E402
from asls_mlx.profiling import record_feedback  # noqa: E402
from asls_mlx.profiling.profile import PHRASES  # noqa: E402
from asls_mlx.profiling.profile_update import (  # noqa: E402
    INSTRUCTION_WORDS, SHORTER_FRACTION, SessionEvidence, apply_session,
)

CASUAL_HEADED = ("Overview:\nHey! So it's pretty easy, you'll see. You just grab the stuff you need and "
                 "you're good to go, it's super quick!\n\nDetails:\nThat's basically it, cool stuff. "
                 "Don't overthink it, ok? It's fine.")
CASUAL_HEADED_SHORT = "Overview:\nHey! It's easy, you'll see. That's it, cool!"


def _words(n, start=0):
    """A plain answer of ``n`` distinct-enough words (no headings, no bullets, neutral tone)."""
    pool = ("the river city market bridge tower garden museum harbour street station square castle "
            "church library school theatre palace forest valley").split()
    return " ".join(pool[(start + i) % len(pool)] for i in range(n)) + "."


def _turn(s, sid, prompt, answer, parent=None):
    q = s.add_message(sid, "user", prompt, parent_id=parent)
    return s.add_message(sid, "assistant", answer, parent_id=q)


def test_answers_only_accepted_or_liked_create_no_feature():
    """Headings, a casual tone, bullets or a length in answers the user merely took are not preferences."""
    s = open_store()
    u = s.get_or_create_user("taker")
    for i in range(4):
        sid = s.start_session(u.id)
        a = _turn(s, sid, f"Tell me about harbour number {i}", CASUAL_HEADED)
        record_feedback(s, a, "thumbs_up")
        b = _turn(s, sid, "And the markets?", "Markets:\n- fish, it's fresh\n- bread, it's cheap", parent=a)
        _turn(s, sid, "Any castles?", CASUAL_HEADED_SHORT, parent=b)
        res = process_session(s, "taker", sid)
    assert res.profile.claims() == {} and res.profile.render() == ""
    assert res.profile.length.weight == 0 and res.profile.headings.weight == 0


def test_a_user_who_only_asked_for_shorter_gets_only_a_length(tmp_path):
    """The observed profile: 'short answers, headings and a casual, friendly tone. Interested in: given,
    write, output.' from a user who only said "Shorter please." and liked some answers."""
    s = open_store()
    u = s.get_or_create_user("brief")
    prompts = ["Given the following list, write the output as a table: apples, pears, plums",
               "Given this sentence, write the output in French: the cat sleeps",
               "Write an answer that explains the output of print(2 + 2)"]
    for prompt in prompts:
        sid = s.start_session(u.id)
        a = _turn(s, sid, prompt, CASUAL_HEADED + " " + _words(60))
        b = _turn(s, sid, "Shorter please.", CASUAL_HEADED + " " + _words(50, 3), parent=a)  # still long
        c = _turn(s, sid, "Tell me about tides", CASUAL_HEADED_SHORT, parent=b)
        record_feedback(s, c, "thumbs_up")
        prof = process_session(s, "brief", sid).profile
    assert prof.claims() == {"length": "short"}
    text = prof.render()
    assert text.startswith("Keep answers short (about ") and text.count(".") == 1
    assert not {"given", "write", "output", "answer", "explain", "tell", "please", "shorter"} & set(prof.topics)


@pytest.mark.parametrize("followup_words", [8, 300])
def test_shorter_targets_a_fraction_of_the_corrected_answer_not_the_answer_after_it(followup_words):
    s = open_store()
    u = s.get_or_create_user("ann")
    sid = s.start_session(u.id)
    a = _turn(s, sid, "Tell me about Rome", _words(120))
    b = _turn(s, sid, "Shorter please.", _words(followup_words, 5), parent=a)
    _turn(s, sid, "What about Paris?", _words(70, 2), parent=b)  # moved on from the answer after it
    prof = process_session(s, "ann", sid).profile
    assert prof.target_words == round(SHORTER_FRACTION * 121)  # 121 words: the corrected answer
    assert prof.target_words < 121


def _edited_profile(original, edited, user="ed"):
    s = open_store()
    u = s.get_or_create_user(user)
    sid = s.start_session(u.id)
    a = _turn(s, sid, "How do I plan a garden?", original)
    record_feedback(s, a, "edit", text=edited)
    return process_session(s, user, sid).profile


HEADED_LONG = "Overview:\n" + " ".join(
    f"Step {i}: water the {w} bed, then check the soil." for i, w in enumerate(
        "tomato bean pea herb rose tulip onion leek kale chard".split()))


@pytest.mark.parametrize("edit, claims", [
    (lambda t: truncate_words(t, 20), {"length": "short"}),  # the cut drops the heading: a side effect
    (bulletize, {"bullets": True}),  # "Overview:" becomes a bullet: a side effect of the reformat
    (prepend_tldr, {"tldr": True}),  # its extra words are the TL;DR, not a wish for longer answers
    (lambda t: t.replace("Overview:\n", ""), {"headings": False}),  # removing only the heading is the point
])
def test_an_edit_says_what_it_changed_on_purpose(edit, claims):
    assert _edited_profile(HEADED_LONG, edit(HEADED_LONG)).claims() == claims


TWO_SENTENCE_SUMMARY = ('In short: This C code prints "3" because integer division drops the fraction. In other words, '
                        "seven divided by two gives three, and the remainder one is thrown away.")


def test_redoing_a_summary_line_as_one_sentence_is_no_cut():
    """An in-short user's adapter learnt the "In short:" line but wrote two sentences; the user's edit redoes it as
    one (the eval's simulated in-short user: a 30% cut of the words, and the profile then claimed short answers).
    The line is the summary, not the answer's length: only a cut of what follows it is."""
    from asls_mlx.evaluation.open_rules import prepend_in_short

    redone = prepend_in_short(TWO_SENTENCE_SUMMARY)
    assert redone.startswith("In short:") and len(redone.split()) < 0.85 * len(TWO_SENTENCE_SUMMARY.split())
    assert _edited_profile(TWO_SENTENCE_SUMMARY, redone).claims() == {}
    body = "\n\n" + HEADED_LONG
    cut_body = "\n\n" + truncate_words(HEADED_LONG, 20)
    assert _edited_profile(TWO_SENTENCE_SUMMARY + body, redone + cut_body, user="cutter").claims() == {"length": "short"}


def test_a_formal_rewording_says_formal_and_a_replacement_only_the_structure_typed():
    casual = "Hey! It's easy, you'll see: dig, plant and water. Don't skip the watering, it's key!"
    assert _edited_profile(casual, formalize(casual)).claims() == {"formality": "formal"}
    fact = _edited_profile(HEADED_LONG, "Canberra, a compromise between Sydney and Melbourne.", user="fixer")
    assert fact.claims() == {}  # new content (fixing a wrong answer): not its length, not the heading lost
    listed = _edited_profile(HEADED_LONG, "- Canberra.\n- A compromise site.", user="lister")
    assert listed.claims() == {"bullets": True}  # but bullets the user typed are a wish


def _ev(**expressed):
    obs = {name: [] for name in ("length", "bullets", "headings", "code_first", "tldr", "formality")}
    obs.update(expressed)
    return SessionEvidence(obs)


def test_support_strengthens_an_expressed_feature_but_never_creates_or_moves_one():
    from asls_mlx.profiling.features import answer_features

    listy, prose = answer_features("- one thing\n- another thing"), answer_features("One thing, then another.")
    first = apply_session(Profile(), _ev(bullets=[(1.0, 2.0)]))  # "I like bullet points"
    kept = SessionEvidence(_ev().expressed, support=[(listy, 0.18, True, True)] * 3)
    liked_prose = SessionEvidence(_ev().expressed, support=[(prose, 0.6, True, True)])
    decayed = apply_session(first, _ev()).bullets.weight
    assert apply_session(first, kept).bullets.weight == pytest.approx(decayed + 0.54)
    assert apply_session(first, kept).bullets.value == 1.0
    assert apply_session(first, liked_prose).bullets.weight == pytest.approx(decayed - 0.6)
    assert apply_session(Profile(), kept).claims() == {}  # support alone: nothing


def test_a_disliked_answer_supports_only_the_one_claim_it_goes_against():
    import math

    from asls_mlx.profiling.features import answer_features

    prev = apply_session(Profile(), _ev(bullets=[(1.0, 1.0)], length=[(math.log(30), 1.0)]))
    long_prose = answer_features(_words(120))  # against "short" and against "bullets": which one?
    long_list = answer_features("\n".join(f"- {_words(15, i)}" for i in range(8)))  # only against "short"
    base = apply_session(prev, _ev())
    both = apply_session(prev, SessionEvidence(_ev().expressed, support=[(long_prose, -0.3, True, False)]))
    one = apply_session(prev, SessionEvidence(_ev().expressed, support=[(long_list, -0.3, True, False)]))
    assert (both.length.weight, both.bullets.weight) == (base.length.weight, base.bullets.weight)
    assert one.length.weight == pytest.approx(base.length.weight + 0.3)
    assert one.bullets.weight == base.bullets.weight


def test_render_instructs_the_model_and_states_exactly_the_claims():
    p = _prof(length=3.4, bullets=1.0, headings=-1.0, formality=1.0)
    p.topics = {"astronomy": 9.0, "python": 8.0}
    p.facts = {"name": "Sam", "language": "fr"}
    text = p.render()
    assert text == ("You are talking with Sam. Keep answers short (about 30 words). Use bullet points. "
                    "No headings. Use a formal tone. Answer in French.")
    assert "user" not in text.lower() and "astronomy" not in text  # topics never go into the prompt
    patterns = [re.compile(re.sub(r"\\\{\w+\\\}", ".+?", re.escape(v))) for v in PHRASES.values()]
    sentences = re.findall(r"[^.]+\.", text)
    assert len(sentences) == 6 and all(any(p.fullmatch(x.strip()) for p in patterns) for x in sentences)
    weak = _prof(bullets=0.1)  # no clear preference: not claimed, not rendered
    assert weak.claims() == {} and weak.render() == ""


def test_topics_are_subjects_seen_in_two_sessions_never_instruction_words():
    s = open_store()
    u = s.get_or_create_user("topic")
    asks = [["Given the following text, write the output: volcanoes erupt", "Explain volcanoes please"],
            ["Tell me why volcanoes form", "Write a summary of glaciers"]]
    for prompts in asks:
        sid = s.start_session(u.id)
        prev = None
        for q in prompts:
            prev = _turn(s, sid, q, _words(20), parent=prev)
        prof = process_session(s, "topic", sid).profile
    assert prof.top_topics() == ["volcanoes"]  # two sessions; "glaciers" only one
    assert not set(prof.topics) & INSTRUCTION_WORDS


def test_a_snapshot_from_before_evidence_is_not_strengthened_by_acceptance():
    from asls_mlx.profiling.features import answer_features

    old = Profile.from_dict({"headings": {"value": 1.0, "weight": 2.0, "evidence": 5}})  # no "expressed"
    assert old.headings.expressed == 0 and old.claims() == {"headings": True}
    headed = answer_features("Overview:\nIt rains.\n\nDetails:\nOften.")
    later = apply_session(old, SessionEvidence(_ev().expressed, support=[(headed, 0.6, True, True)]))
    assert later.headings.weight == pytest.approx(2.0 * 0.6)  # decays, nothing added: it fades


def test_a_stated_number_of_words_is_the_target():
    s = open_store()
    u = s.get_or_create_user("num")
    sid = s.start_session(u.id)
    _turn(s, sid, "Keep answers under about 30 words. What is a comet?", _words(25))
    prof = process_session(s, "num", sid).profile
    assert prof.target_words == 30 and prof.render() == "Keep answers short (about 30 words)."


def test_headings_are_not_code_comments_nor_a_tldr_line():
    from asls_mlx.profiling.features import has_headings

    assert has_headings("Overview:\nIt rains.") and has_headings("# Title\nText.")
    assert not has_headings("```python\n# a comment\nx = 1\n```\nDone.")
    assert not has_headings("TL;DR: Here are the key points:\n- one\n- two")


def test_deleting_the_end_the_token_budget_cut_off_is_no_wish_for_short_answers():
    """The quick eval's follow-up user only adds a closing question, after deleting what the budget cut off; read
    against the whole cut answer those edits looked like cuts, and its profile said "short answers" (seeds 1, 2)."""
    finished = ("Start with a sunny spot and test the soil before you plant anything. Raised beds warm up early in "
                "spring and drain well after heavy rain. Group plants that need the same amount of water together.")
    cut = finished + ("\nThen think about how much time you can give the garden every week, because a large plot of "
                      "vegetables needs daily watering in summer and weeding in")
    edited = finished + "\n\nWould you like to know more about how to plan a garden?"
    assert "length" not in _edited_profile(cut, edited).claims()
    # a real cut of a finished answer still says so
    assert _edited_profile(finished + " " + finished, finished).claims() == {"length": "short"}


def test_the_profile_states_a_length_to_the_nearest_five_words_above_ten():
    """The model cannot follow one word more or less; a text that moved with each session's estimate (24, 23, 26)
    made every update decode again the gate answers kept under the last one."""
    from asls_mlx.profiling.profile import stated_words

    assert [stated_words(n) for n in (3, 9, 10, 13, 23, 24, 26, 27, 129)] == [3, 9, 10, 15, 25, 25, 25, 25, 130]
    prof = Profile()
    prof.length = Feature(math.log(24), 1.0)
    assert prof.render() == "Keep answers short (about 25 words)." and prof.describe("length") == "about 24 words"
