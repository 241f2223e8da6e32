"""The profile moves the right way, follows drift, renders, diffs, and scores answers sensibly."""

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
    assert "short answers" in prof.render()
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
    assert "prose rather than bullet points" in load_profile(s, "bob").render()


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
    assert text.startswith("Call the user Sam.") and "formal tone" in text
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
