"""The profile against each persona's hidden truth: precision and recall of what render() would claim."""

import math

import pytest

from asls_mlx.evaluation.personas import PERSONAS, get_persona
from asls_mlx.evaluation.profile_truth import precision_recall, profile_truth, scripted_profile
from asls_mlx.paths import home
from asls_mlx.profiling import Feature, Profile


def test_each_persona_has_its_hidden_preference_in_profile_terms():
    assert {name: profile_truth(p) for name, p in PERSONAS.items()} == {
        "concise": {"length": "short"},
        "bullets": {"bullets": True},
        "formal": {"formality": "formal"},
        "code_first": {"code_first": True},
        "tldr": {"tldr": True},
        "concise_bullets": {"bullets": True, "length": "short"},
        "drift": {"length": "short"},
        "follow_up": {}, "british": {}, "in_short": {},  # open preferences: no profile feature states them
    }
    drift = get_persona("drift")
    assert profile_truth(drift, session=2) == {"length": "short"}
    assert profile_truth(drift, session=3) == {"bullets": True}


def _profile(**values):
    p = Profile()
    for name, value in values.items():
        setattr(p, name, Feature(value, 5.0, 5, 5))
    return p


def test_precision_and_recall_count_what_render_would_state():
    concise = get_persona("concise")
    # The observed profile of a user who only asked for shorter answers: short, headings, casual.
    observed = _profile(length=math.log(13), headings=1.0, formality=-1.0)
    assert observed.render().count(".") == 3  # three claims stated
    assert precision_recall(observed, concise) == (pytest.approx(1 / 3), 1.0)
    assert precision_recall(_profile(length=math.log(30)), concise) == (1.0, 1.0)
    assert precision_recall(_profile(length=math.log(129)), concise) == (0.0, 0.0)  # "about 129 words"
    assert precision_recall(Profile(), concise) == (1.0, 0.0)  # says nothing: nothing false, nothing found
    assert precision_recall(_profile(bullets=0.1), concise) == (1.0, 0.0)  # too weak to be claimed
    both = get_persona("concise_bullets")
    assert precision_recall(_profile(bullets=1.0), both) == (1.0, 0.5)
    assert precision_recall(_profile(bullets=-1.0), both) == (0.0, 0.0)  # the opposite is wrong


def test_scripted_sessions_give_profiles_that_say_what_the_personas_want():
    """Each persona's rule-based feedback on canned answers, five sessions, three seeds (no model).

    Before the evidence rules the same sessions gave precision 0.32 (headings, tones, lengths and
    bullets from answers the personas merely accepted); drift is scored against its preference after
    the switch (sessions 3-5), which an old, well-supported length claim outlives for a session or two.
    """
    precisions, recalls = {}, {}
    for name, persona in PERSONAS.items():
        scores = [precision_recall(scripted_profile(persona, sessions=5, turns=6, seed=seed), persona, 5)
                  for seed in range(3)]
        precisions[name] = sum(p for p, _ in scores) / len(scores)
        recalls[name] = sum(r for _, r in scores) / len(scores)
    # drift: the old length claim outlives the switch in some seeds: 2 of seeds 0-5 on the first 70 prompts,
    # 3 of 6 on the whole set (where seeds 0 and 2 are two of them); each such profile states it and the new
    # bullets claim, precision 0.5
    assert precisions.pop("drift") >= 0.5 and all(p >= 0.9 for p in precisions.values()), precisions
    assert sum(recalls.values()) / len(recalls) >= 0.8, recalls
    # formal: one seed's persona only ever thumbed answers down, which expresses no feature
    assert all(r >= 0.6 for r in recalls.values()) and recalls["concise"] == recalls["bullets"] == 1.0
    assert not home().joinpath("asls.db").exists()  # scripted in a temporary store, never the user's own


def test_an_in_short_user_gets_no_tldr_claim():
    """An open preference: the profile has no feature for "In short:" and must claim none."""
    persona = get_persona("in_short")
    claims = [scripted_profile(persona, sessions=5, turns=6, seed=seed).claims() for seed in range(3)]
    assert claims == [{}, {}, {}]


def test_scripted_profile_is_deterministic_per_seed():
    p = get_persona("concise")
    assert scripted_profile(p, sessions=2, turns=3, seed=4) == scripted_profile(p, sessions=2, turns=3, seed=4)
