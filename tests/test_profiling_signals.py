"""Correction follow-ups, explicit statements, inferred acceptance, record_feedback."""

import pytest

from asls_mlx.errors import ASLSError
from asls_mlx.profiling import (
    classify_followup,
    corrections,
    detect_statements,
    infer_session_signals,
    record_feedback,
)
from asls_mlx.store import open_store


@pytest.mark.parametrize("text, kind", [
    ("shorter please", "shorter"),
    ("Too long.", "shorter"),
    ("can you make it shorter?", "shorter"),
    ("tl;dr", "shorter"),
    ("in one sentence please", "shorter"),
    ("in bullet points", "bullets"),
    ("use a list", "bullets"),
    ("more formal please", "formal"),
    ("that's too casual", "formal"),
    ("too formal", "casual"),
    ("less formal, more friendly", "casual"),
    ("no, I meant the one in Texas", "rephrase"),
    ("That's not what I asked", "rephrase"),
    ("give me the code first", "code_first"),
    ("just the code", "code_first"),
    ("tl;dr first", "tldr"),
    ("start with a summary", "tldr"),
    ("more detail", "longer"),
    ("too short, elaborate", "longer"),
    ("Can you explain more?", "longer"),
    ("no bullet points, write prose please", "prose"),
    ("not as a list", "prose"),
    ("in plain prose please", "prose"),
    ("no headings please", "no_headings"),
    ("use headings", "headings"),
])
def test_followups_classified(text, kind):
    c = classify_followup(text)
    assert c is not None and c.kind == kind and 0.35 <= c.confidence <= 1.0


@pytest.mark.parametrize("text", [
    "Why are days longer in summer?",
    "What is a bullet train?",
    "How do I write a list in python?",
    "thanks!",
    "What's the formal definition of a group?",
    "Tell me about Paris",
    "What is the difference between poetry and prose?",
    "Write paragraphs about my dog",
    "",
])
def test_ordinary_messages_are_not_corrections(text):
    assert classify_followup(text) is None


def test_combined_and_long_messages():
    kinds = {c.kind for c in corrections("shorter and in bullet points please")}
    assert kinds == {"shorter", "bullets"}
    long = ("I was reading about the history of rome and the empire and its many emperors and wondered "
            "whether you could make it shorter")
    c = classify_followup(long)
    assert c is not None and c.confidence < classify_followup("make it shorter").confidence


def test_statements():
    found = {(s.feature, s.value) for s in detect_statements(
        "I prefer short answers. Call me Sam. I like bullet points. Answer in French. "
        "I'm interested in astronomy.")}
    assert found == {("length", "short"), ("name", "Sam"), ("bullets", True), ("language", "fr"),
                     ("topic", "astronomy")}
    assert detect_statements("What's the weather?") == []
    assert {(s.feature, s.value) for s in detect_statements("I prefer a formal tone")} == {
        ("formality", "formal")}


def test_infer_session_signals_and_record_feedback():
    s = open_store()
    u = s.get_or_create_user("ann")
    sid = s.start_session(u.id)
    q1 = s.add_message(sid, "user", "Tell me about Rome")
    a1 = s.add_message(sid, "assistant", "Rome is old. " * 20, parent_id=q1)
    c = s.add_message(sid, "user", "shorter please", parent_id=a1)
    a2 = s.add_message(sid, "assistant", "Rome is an old city in Italy.", parent_id=c)
    q2 = s.add_message(sid, "user", "Call me Sam. What about Paris?", parent_id=a2)
    a3 = s.add_message(sid, "assistant", "Paris is the capital of France.", parent_id=q2)
    assert infer_session_signals(s, sid) == 4
    assert infer_session_signals(s, sid) == 0  # idempotent
    kinds = {(f.message_id, f.kind) for f in s.feedback(session_id=sid)}
    assert kinds == {(a1, "correction"), (q2, "statement"), (a2, "acceptance"), (a3, "acceptance")}
    conf = {f.message_id: f.confidence for f in s.feedback(session_id=sid) if f.kind == "acceptance"}
    assert conf == {a2: 0.6, a3: 0.3}  # moved on vs. silence at the end
    corr = [f for f in s.feedback(message_id=a1) if f.kind == "correction"][0]
    assert corr.payload["kind"] == "shorter" and corr.payload["followup_message_id"] == c
    new = record_feedback(s, a3, "regenerate", text="Paris, France's capital city.")
    assert s.conversation(sid)[-1].id == new
    record_feedback(s, new, "edit", text="Paris.")
    assert s.message(new).text == "Paris."
    fid = record_feedback(s, new, "thumbs_up")
    assert s.feedback(message_id=new)[-1].id == fid
    with pytest.raises(ASLSError):
        record_feedback(s, 9999, "thumbs_down")
    with pytest.raises(ASLSError):
        record_feedback(s, new, "edit")


def test_a_negated_request_is_never_the_thing_it_negates():
    assert {c.kind for c in corrections("no bullet points, shorter please")} == {"prose", "shorter"}
    assert {c.kind for c in corrections("without the headings")} == {"no_headings"}


def test_length_statements_with_a_number_of_words():
    found = {(s.feature, s.value) for s in detect_statements("Keep answers under about 30 words.")}
    assert found == {("length", 30)}
    assert {(s.feature, s.value) for s in detect_statements("Keep your replies to 80 words, please")} == {
        ("length", 80)}
    assert detect_statements("Summarize this article in 50 words") == []  # one request, not a standing wish
    assert {(s.feature, s.value) for s in detect_statements("I don't want headings")} == {("headings", False)}


@pytest.mark.parametrize("text", ["please use British spelling", "end with a follow-up question please",
                                  'start with "In short:" and a one-sentence summary please',
                                  "Can you finish your answers with a question?"])
def test_form_requests_no_profile_feature_states_are_corrections(text):
    """They correct the previous answer (its answer-after-correction pair is mined) but set no profile feature."""
    c = classify_followup(text)
    assert c is not None and c.kind == "style"


def test_questions_about_spelling_are_not_corrections():
    assert classify_followup("What is the British spelling of color?") is None
    assert classify_followup("Write a question for a quiz about rivers.") is None
