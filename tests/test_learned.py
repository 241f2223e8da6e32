"""What the profile learned and from what (evidence, confidence), the profile during a session, and taking a
feature or a pair back out of the profile and out of training. Store only: no model."""

import time

import pytest

from asls_mlx.errors import ASLSError
from asls_mlx.profiling import PreferencePair, learned, live_profile, load_profile, process_session, teaches
from asls_mlx.store import open_store
from asls_mlx.user_data import forget, forget_feature, forget_pairs

LONG = ("Rome is the capital of Italy. It was founded, according to legend, in 753 BC. It became the centre of "
        "a vast empire. Its history spans nearly three thousand years. Today it is a large modern city. ") * 2
HEADED = "# Rome\n\nRome is the capital of Italy.\n\n## History\n\nFounded in 753 BC."
PLAIN = "Rome is the capital of Italy. It was founded in 753 BC."


def _turn(s, sid, question, answer):
    q = s.add_message(sid, "user", question)
    return q, s.add_message(sid, "assistant", answer, parent_id=q)


def _open_session(s, u):
    """A session still open: a statement, an answer, a correction of it, and the corrected answer."""
    sid = s.start_session(u.id)
    _turn(s, sid, "I prefer bullet points. Tell me about volcanoes", LONG)
    _turn(s, sid, "shorter please", "Volcanoes erupt lava.")
    return sid


def test_the_profile_follows_the_open_session_without_storing_anything():
    s = open_store()
    u = s.get_or_create_user("ann")
    sid = _open_session(s, u)
    stored_feedback = len(s.feedback(session_id=sid))
    live = live_profile(s, u, sid)
    assert live.claims().get("bullets") is True and live.claims().get("length") == "short"
    assert "Use bullet points." in live.render()
    assert load_profile(s, u).claims() == {}  # nothing stored: the session has not ended
    assert len(s.feedback(session_id=sid)) == stored_feedback and s.profiles(u.id) == []
    # the session's end stores the same claims the live view showed
    assert process_session(s, "ann", sid).profile.claims() == live.claims()


def test_an_open_session_does_not_decay_what_earlier_sessions_taught():
    s = open_store()
    u = s.get_or_create_user("bob")
    first = _open_session(s, u)
    before = process_session(s, "bob", first).profile
    sid = s.start_session(u.id)
    s.add_message(sid, "user", "What is the capital of Peru?")  # its answer is still being written
    live = live_profile(s, u, sid)
    assert live.bullets.confidence == pytest.approx(before.bullets.confidence)
    assert live.claims() == before.claims() and live.sessions == before.sessions


def test_learned_lists_each_feature_with_the_users_words_and_its_confidence():
    s = open_store()
    u = s.get_or_create_user("cy")
    sid = _open_session(s, u)
    features = {f.name: f for f in learned(s, u, sid)}
    assert {"bullets", "length"} <= set(features)
    bullets, length = features["bullets"], features["length"]
    assert bullets.claimed and bullets.says == "wanted"
    assert bullets.confidence == pytest.approx(live_profile(s, u, sid).bullets.confidence)
    assert any(e.kind == "statement" and "I prefer bullet points" in e.text and e.session_id == sid
               for e in bullets.evidence)
    assert [e.text for e in length.evidence if e.kind == "correction"] == ["shorter please"]
    # after the session ends, the same evidence is read back from what was stored
    process_session(s, "cy", sid)
    after = {f.name: f for f in learned(s, u)}
    assert [e.text for e in after["length"].evidence] == ["shorter please"]


def test_a_removed_feature_stays_out_until_the_user_expresses_it_again():
    s = open_store()
    u = s.get_or_create_user("dee")
    sid = _open_session(s, u)
    result = forget_feature(s, u, "bullets", session_id=sid)
    assert result.feature == "bullets" and result.said == "wanted"
    assert "bullets" not in live_profile(s, u, sid).claims()  # gone at once, mid-session
    assert live_profile(s, u, sid).claims().get("length") == "short"  # the others stay
    forget_feature(s, u, "length", session_id=sid)  # from a correction ("shorter please"), not a statement
    assert live_profile(s, u, sid).claims() == {}
    ended = process_session(s, "dee", sid).profile  # and after the session's end
    assert ended.claims() == {} and ended.length.weight == 0
    assert not any(f.name == "bullets" and f.evidence for f in learned(s, u))
    time.sleep(0.01)  # the new statement comes after the removal
    later = s.start_session(u.id)
    _turn(s, later, "I prefer bullet points", "- ok")
    assert process_session(s, "dee", later).profile.claims().get("bullets") is True


def test_removing_a_feature_takes_the_pairs_that_teach_it_and_their_adapters_out_of_training():
    s = open_store()
    u = s.get_or_create_user("eve")
    sid = s.start_session(u.id)
    _turn(s, sid, "Tell me about Rome. I prefer answers with headings", PLAIN)
    process_session(s, "eve", sid)
    teach = PreferencePair("Tell me about Rome", HEADED, PLAIN, "edit", 1.0, session_id=sid)
    other = PreferencePair("Tell me about Paris", "Paris is in France.", "Paris is a city that is in France and "
                           "it is the capital of France.", "correction", 0.9, session_id=sid)
    s.add_pairs(u.id, [teach, other])
    s.add_adapter_version(u.id, "/nowhere/v1", "m", status="archived")
    run = s.add_training_run(u.id, pair_ids=[teach.id])
    s.add_adapter_version(u.id, "/nowhere/v2", "m", parent_version=1, status="active")
    s.finish_training_run(run, "ok", adapter_version=2)
    s.mark_pairs_used([teach.id], 2)
    result = forget_feature(s, u, "headings")
    assert result.pairs.pairs == 1 and result.pairs.tainted_versions == (2,)
    assert [p.id for p in s.pairs(u.id, split=None)] == [other.id]
    assert s.active_adapter(u.id).version == 1  # the adapter trained on it is withdrawn
    assert "headings" not in load_profile(s, u).claims()


def test_teaches_reads_the_claimed_feature_off_the_two_answers():
    headed = PreferencePair("q", HEADED, PLAIN, "edit", 1.0)
    assert teaches(headed, "headings", True) and not teaches(headed, "headings", False)
    assert not teaches(headed, "bullets", True)
    short = PreferencePair("q", "Rome is old.", LONG, "correction", 1.0)
    assert teaches(short, "length", "short") and not teaches(short, "length", "long")
    assert not teaches(PreferencePair("q", HEADED, None, "thumbs", 1.0, label=1), "headings", True)


def test_forgetting_a_pair_deletes_it_and_names_a_wrong_one():
    s = open_store()
    u = s.get_or_create_user("fay")
    v = s.get_or_create_user("gus")
    mine, theirs = (PreferencePair("q", "a", "b", "edit", 1.0), PreferencePair("q", "a", "b", "edit", 1.0))
    s.add_pairs(u.id, [mine])
    s.add_pairs(v.id, [theirs])
    with pytest.raises(ASLSError, match=f"no preference pair {theirs.id}"):
        forget_pairs(s, u, [theirs.id])
    assert forget_pairs(s, u, [mine.id]).pairs == 1
    assert s.pairs(u.id, split=None) == [] and len(s.pairs(v.id, split=None)) == 1


def test_a_session_forget_keeps_what_the_user_removed():
    s = open_store()
    u = s.get_or_create_user("hal")
    first = _open_session(s, u)
    process_session(s, "hal", first)
    forget_feature(s, u, "length")
    second = s.start_session(u.id)
    _turn(s, second, "What is lava?", "Molten rock.")
    process_session(s, "hal", second)
    forget(s, u, session_id=second)  # drops the snapshots from `second` on, the removal's among them
    profile = load_profile(s, u)
    assert "length" in profile.removed and "length" not in profile.claims()
    assert profile.claims().get("bullets") is True


def test_topics_name_and_unknown_features():
    s = open_store()
    u = s.get_or_create_user("ivy")
    for _ in range(2):
        sid = s.start_session(u.id)
        _turn(s, sid, "Call me Ivy. How do volcanoes erupt?", "Magma rises.")
        process_session(s, "ivy", sid)
    assert "volcanoes" in load_profile(s, u).top_topics()
    assert forget_feature(s, u, "volcanoes").feature == "topic:volcanoes"
    assert forget_feature(s, u, "name").said == "Ivy"
    profile = load_profile(s, u)
    assert "volcanoes" not in profile.topics and "name" not in profile.facts
    with pytest.raises(ASLSError, match="no feature 'sparkles'"):
        forget_feature(s, u, "sparkles")
    with pytest.raises(ASLSError, match="learned nothing about tldr"):
        forget_feature(s, u, "tldr")
