"""Trim pairs (profiling.trim): a long answer the user turned down, cut to the length the profile says they keep."""

import math

import pytest

from asls_mlx.profiling import Feature, Profile, mine_pairs
from asls_mlx.profiling.trim import short_length, trimmed
from asls_mlx.store import open_store

SKY = ("The sky looks blue because air scatters short blue wavelengths of sunlight more than red ones. "
       "This is called Rayleigh scattering. At sunset the light crosses more air, so more blue is scattered away "
       "and the sky turns red and orange. On the moon there is no air, so the sky there is black even by day. "
       "Water droplets in clouds scatter all colours alike, which is why clouds look white or grey to us.")
SHORT_PROFILE = Profile(length=Feature(math.log(20), 5.0, 4, 4))  # edits kept ~20 words, with evidence


def _words(text: str) -> int:
    return len(text.split())


def test_a_long_prose_answer_keeps_its_opening_sentences():
    cut = trimmed("Why is the sky blue?", SKY, 20)
    assert cut == ("The sky looks blue because air scatters short blue wavelengths of sunlight more than red ones. "
                   "This is called Rayleigh scattering.")
    assert _words(cut) <= 1.25 * 20 and SKY.startswith(cut)


@pytest.mark.parametrize("prompt,answer", [
    ("Why is the sky blue?", " ".join(SKY.split()[:35])),  # under twice the length: the user's to shorten
    ("Summarize this: " + SKY, SKY),  # a text pasted in to work on
    ("Write an email to my landlord about the broken heater.", SKY),  # a message: cutting drops its facts
    ("Give me five tips for sleeping better.", SKY),  # a count of items asked for
    ("Why is the sky blue?", "Here it is:\n```python\nprint('blue')\n```\n" + SKY),  # code
    ("Why is the sky blue?", "- air scatters blue light\n- clouds scatter all\n" + SKY),  # a list
    ("Why is the sky blue?", SKY.replace(". ", ", ", 3)),  # one long opening sentence: the cut would not halve it
])
def test_what_is_not_cut(prompt, answer):
    assert trimmed(prompt, answer, 20) is None


def test_only_a_short_length_claim_trims():
    assert short_length(SHORT_PROFILE) == 20
    assert short_length(Profile()) is None  # nothing known
    assert short_length(Profile(length=Feature(math.log(200), 5.0, 4, 4))) is None  # long answers wanted


def _session(store, uid):
    sid = store.start_session(uid)
    ids = {}
    for name, feedback in (("down", "thumbs_down"), ("up", "thumbs_up"), ("edited", None), ("kept", None)):
        q = store.add_message(sid, "user", f"Why is the sky blue? ({name})")
        ids[name] = store.add_message(sid, "assistant", SKY, parent_id=q)
        if feedback:
            store.add_feedback(ids[name], feedback)
    store.set_edit(ids["edited"], "Air scatters blue light most.")
    return sid, ids


@pytest.mark.parametrize("length_pairs,profile,expected", [
    (True, SHORT_PROFILE, 1),
    (False, SHORT_PROFILE, 0),  # turned off (AssistantConfig.length_pairs)
    (True, Profile(), 0),  # no length claim: nothing to cut to
])
def test_mining_adds_a_trim_pair_only_for_a_turned_down_answer(length_pairs, profile, expected):
    store = open_store()
    user = store.get_or_create_user("ann")
    sid, _ = _session(store, user.id)
    trims = [p for p in mine_pairs(store, "ann", sid, profile=profile, length_pairs=length_pairs) if p.source == "self"]
    # the thumbed-down answer only: not the liked one, not the one the user edited, not one they moved on from
    assert [(p.prompt, p.chosen, p.rejected, p.weight) for p in trims] == [
        ("Why is the sky blue? (down)", trimmed("Why is the sky blue?", SKY, 20), SKY, 0.5)] * expected
