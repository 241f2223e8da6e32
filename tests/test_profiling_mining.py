"""Pair mining from scripted sessions (no model): exact pairs per source, weights, split, determinism."""

import math
import random

import pytest

from asls_mlx.profiling import Feature, Profile, mine_pairs, process_session, split_of
from asls_mlx.profiling.signals import infer_session_signals
from asls_mlx.store import open_store

Q1, Q2, Q3, Q4, Q5 = ("Tell me about Rome", "Explain photosynthesis", "What is an API?",
                      "Describe the moon landing", "Recommend a novel about whales")
LONG_ROME = "Rome is a very old city in Italy with a long history. " * 6
LONG_VARIED = ("It is a long story with many parts. First, the origins matter a great deal. Second, "
               "several people shaped what followed over decades. Third, economics played a role that "
               "historians still debate today. Finally, the modern view differs from older accounts, "
               "which were written by observers with their own agendas and limited sources.")
ROME2 = "Rome is the capital of Italy and has a long, rich history."


def _script(s, uid):
    """A session with one of each signal; returns the message ids by name."""
    sid = s.start_session(uid)
    ids = {"sid": sid}
    ids["q1"] = s.add_message(sid, "user", Q1)
    ids["a1"] = s.add_message(sid, "assistant", LONG_ROME, parent_id=ids["q1"])
    ids["c1"] = s.add_message(sid, "user", "shorter please", parent_id=ids["a1"])
    ids["a1b"] = s.add_message(sid, "assistant", ROME2, parent_id=ids["c1"])
    ids["q2"] = s.add_message(sid, "user", Q2, parent_id=ids["a1b"])
    ids["a2"] = s.add_message(sid, "assistant", "Plants make sugar from light, air and water in leaves.",
                              parent_id=ids["q2"])
    s.set_edit(ids["a2"], "Plants turn light, CO2 and water into sugar.")
    ids["q3"] = s.add_message(sid, "user", Q3, parent_id=ids["a2"])
    ids["a3"] = s.add_message(sid, "assistant", "An API is a thing that does stuff, basically, you know.",
                              parent_id=ids["q3"])
    ids["a3b"] = s.add_alternative(ids["a3"], "An API is an interface programs use to talk to each other.")
    ids["q4"] = s.add_message(sid, "user", Q4, parent_id=ids["a3b"])
    ids["a4"] = s.add_message(sid, "assistant", "Apollo 11 landed on the moon in July 1969.",
                              parent_id=ids["q4"])
    s.add_feedback(ids["a4"], "thumbs_down")
    ids["q5"] = s.add_message(sid, "user", Q5, parent_id=ids["a4"])
    ids["a5"] = s.add_message(sid, "assistant", "Read Moby-Dick by Herman Melville, a classic whale novel.",
                              parent_id=ids["q5"])
    s.add_feedback(ids["a5"], "thumbs_up")
    return ids


def _key(p):
    return (p.source, p.prompt, p.chosen, p.rejected, p.label, p.weight)


def test_scripted_session_yields_exactly_the_expected_pairs():
    s = open_store()
    u = s.get_or_create_user("ann")
    ids = _script(s, u.id)
    infer_session_signals(s, ids["sid"])
    pairs = mine_pairs(s, "ann", ids["sid"])
    assert sorted(map(_key, pairs)) == sorted([
        ("edit", Q2, "Plants turn light, CO2 and water into sugar.",
         "Plants make sugar from light, air and water in leaves.", 0, 1.0),
        ("thumbs", Q4, "Apollo 11 landed on the moon in July 1969.", None, -1, 0.5),
        ("thumbs", Q5, "Read Moby-Dick by Herman Melville, a classic whale novel.", None, 1, 0.5),
        ("correction", Q1, ROME2, LONG_ROME, 0, 0.8),
        ("regenerate", Q3, "An API is an interface programs use to talk to each other.",
         "An API is a thing that does stuff, basically, you know.", 0, 0.7),
    ])
    by_source = {p.source: p for p in pairs if p.label == 0}
    assert by_source["edit"].message_ids == (ids["q2"], ids["a2"])
    assert by_source["correction"].message_ids == (ids["q1"], ids["a1"], ids["c1"], ids["a1b"])
    assert all(p.id is not None and p.session_id == ids["sid"] for p in pairs)
    assert all(p.prompt != "shorter please" for p in pairs)  # a follow-up is not a prompt
    # Stored exactly as returned; mining again adds nothing.
    stored = s.pairs(u.id, split=None)
    assert sorted(map(_key, stored)) == sorted(map(_key, pairs))
    assert mine_pairs(s, "ann", ids["sid"]) == []


def test_thumbs_pairs_and_lone_down_with_rewriter():
    s = open_store()
    u = s.get_or_create_user("bo")
    sid = s.start_session(u.id)
    q = s.add_message(sid, "user", Q1)
    a = s.add_message(sid, "assistant", LONG_ROME, parent_id=q)
    s.add_feedback(a, "thumbs_down")
    b = s.add_alternative(a, ROME2)
    s.add_feedback(b, "thumbs_up")
    q2 = s.add_message(sid, "user", Q4, parent_id=b)
    a2 = s.add_message(sid, "assistant", "It's a thing that happened in 1969, y'know, on the moon.",
                       parent_id=q2)
    s.add_feedback(a2, "thumbs_down")
    pairs = mine_pairs(s, "bo", sid, rewrite=lambda t: t.replace("It's", "It is").replace(", y'know,", ""))
    assert sorted(map(_key, pairs)) == sorted([
        ("thumbs", Q1, ROME2, LONG_ROME, 0, 0.9),  # up > down beats the identical regenerate pair
        ("thumbs", Q4, "It is a thing that happened in 1969 on the moon.",
         "It's a thing that happened in 1969, y'know, on the moon.", 0, 0.5),
    ])


def test_degenerate_and_duplicate_pairs_are_dropped_and_prompts_capped():
    s = open_store()
    u = s.get_or_create_user("cy")
    sid = s.start_session(u.id)
    q = s.add_message(sid, "user", Q1)
    a = s.add_message(sid, "assistant", "Rome is old.  ", parent_id=q)
    s.set_edit(a, "rome is OLD.")  # same text after normalisation: not a preference
    q2 = s.add_message(sid, "user", Q2, parent_id=a)
    a2 = s.add_message(sid, "assistant", "Plants use light to make sugar.", parent_id=q2)
    s.set_edit(a2, "the leaf of the leaf of the leaf of")  # a degenerate "chosen" is never taught
    q3 = s.add_message(sid, "user", Q3, parent_id=a2)
    first = s.add_message(sid, "assistant", "An API answer number zero.", parent_id=q3)
    last = first
    for i in range(1, 7):
        last = s.add_alternative(last, f"An API answer number {i} is different.")
    pairs = mine_pairs(s, "cy", sid)
    assert [p.source for p in pairs] == ["regenerate"] * 4  # capped per prompt
    assert all(p.chosen == "An API answer number 6 is different." for p in pairs)


def _profile_concise():
    p = Profile()
    p.length = Feature(math.log(12), 5.0, 5)
    return p


def _fake_generate(calls):
    def generate(prompt, k, seed):
        calls.append((prompt, k, seed))
        rng = random.Random(seed)
        base = [
            f"{prompt} in short: it is well known and simple.",
            f"{prompt}: " + LONG_VARIED,
            "I'm sorry, I'm unable to assist with that.",
            f"About {prompt.lower()}, here is a medium answer with a few more words in it.",
        ]
        rng.shuffle(base)
        return base[:k]
    return generate


def test_self_labelled_mining_with_a_fake_generator_is_deterministic():
    results = []
    for _ in range(2):
        s = open_store(None) if not results else open_store(s.path.parent / "again.db")
        u = s.get_or_create_user("dan")
        old = s.start_session(u.id)
        s.add_message(old, "user", Q5)
        sid = s.start_session(u.id)
        q = s.add_message(sid, "user", Q1)
        s.add_message(sid, "assistant", ROME2, parent_id=q)
        calls = []
        pairs = mine_pairs(s, "dan", sid, generate=_fake_generate(calls), k=4, seed=3,
                           profile=_profile_concise())
        results.append([(_key(p), p.split) for p in pairs])
        assert sorted(c[0] for c in calls) == sorted([Q1, Q5]) and all(c[1] == 4 for c in calls)
        for p in pairs:
            assert p.source == "self"
            assert p.chosen.endswith("in short: it is well known and simple.")  # the concise one wins
            assert "I'm sorry" in p.rejected  # the refusal is always the rejected side
            assert 0 < p.weight <= 0.5
        s.close()
    assert results[0] == results[1] and len(results[0]) == 2


def test_self_labelled_needs_a_margin():
    s = open_store()
    u = s.get_or_create_user("eve")
    sid = s.start_session(u.id)
    s.add_message(sid, "user", Q1)
    same = lambda prompt, k, seed: [f"Rome answer {i} is fine and short." for i in range(k)]  # noqa: E731
    assert mine_pairs(s, "eve", sid, generate=same, profile=_profile_concise()) == []


def test_self_labelled_chosen_must_fit_the_profile_not_just_beat_a_worse_sample():
    """Both samples too long for a concise user: the less long one is not taught (training imitates it)."""
    from asls_mlx.profiling.mining import MIN_CHOSEN_FIT, self_labelled_pairs
    from asls_mlx.profiling.scorer import score

    profile = _profile_concise()
    target = round(math.exp(profile.length.value))
    words = "Rome is the capital of Italy and it has a long history of art".split()

    def answer(n):
        return " ".join((words * 20)[:n]) + "."

    long_pair = [answer(target * 3), answer(target * 5)]
    assert score(profile, Q1, long_pair[0]) - score(profile, Q1, long_pair[1]) >= 0.15  # a margin, but
    assert score(profile, Q1, long_pair[0]) < MIN_CHOSEN_FIT  # the better one is still far too long
    assert self_labelled_pairs(profile, Q1, lambda p, k, seed: long_pair, 2, 0) is None
    fitting = [answer(target), answer(target * 5)]
    pair = self_labelled_pairs(profile, Q1, lambda p, k, seed: fitting, 2, 0)
    assert pair is not None and pair.chosen == fitting[0]


def test_validation_split_is_stable_by_prompt_and_never_empty():
    assert split_of("ann", "Hello there") == split_of("ann", "  hello   THERE ")
    share = sum(split_of("ann", f"prompt number {i}") == "val" for i in range(2000)) / 2000
    assert 0.15 < share < 0.25
    s = open_store()
    u = s.get_or_create_user("fay")
    for i in range(3):
        sid = s.start_session(u.id)
        q = s.add_message(sid, "user", f"Question {i} about the rivers of Europe")
        a = s.add_message(sid, "assistant", f"Answer {i} about European rivers, long version here.",
                          parent_id=q)
        s.set_edit(a, f"Answer {i}: the rivers of Europe, short.")
        process_session(s, "fay", sid)
    pairs = s.pairs(u.id, split=None)
    assert len(pairs) == 3 and sum(p.split == "val" for p in pairs) >= 1
    assert s.pairs(u.id, split="train") and all(p.split == "train" for p in s.pairs(u.id))


def test_held_out_prompt_is_never_one_an_adapter_trained_on():
    from asls_mlx.profiling.mining import _ensure_val
    from asls_mlx.store import PreferencePair

    s = open_store()
    u = s.get_or_create_user("gus")
    s.add_pairs(u.id, [PreferencePair(f"prompt {i}", "short", "long answer", "edit", 1.0) for i in range(3)])
    stored = s.pairs(u.id)
    s.mark_pairs_used([p.id for p in stored], 1)
    _ensure_val(s, u, [])
    assert all(p.split == "train" for p in s.pairs(u.id, split=None))  # every prompt was trained on
    s.requeue_pairs(u.id, [1])
    s.mark_pairs_used([stored[0].id, stored[1].id], 2)
    _ensure_val(s, u, [])
    assert [p.prompt for p in s.pairs(u.id, split="val")] == ["prompt 2"]  # the only unused one


def test_self_labelled_mining_after_the_session_stores_only_self_pairs_and_what_one_pass_would(tmp_path):
    """process_session (behavioural pairs) then mine_self_labelled_pairs stores exactly what mining both
    in one pass stores, and never offers a behavioural pair to the store a second time."""
    from asls_mlx.profiling import mine_self_labelled_pairs

    stored = []
    for two_steps in (False, True):
        s = open_store(tmp_path / f"{two_steps}.db")
        u = s.get_or_create_user("flo")
        ids = _script(s, u.id)
        s.end_session(ids["sid"])
        infer_session_signals(s, ids["sid"])
        gen = _fake_generate([])
        if two_steps:
            mine_pairs(s, u, ids["sid"])  # what end_session stores
            offered = []
            real_add = s.add_pairs
            s.add_pairs = lambda uid, pairs, **kw: offered.extend(pairs) or real_add(uid, pairs, **kw)
            new = mine_self_labelled_pairs(s, u, ids["sid"], gen, k=4, seed=3, profile=_profile_concise())
            assert offered and {p.source for p in offered} == {"self"} and new
        else:
            mine_pairs(s, u, ids["sid"], generate=gen, k=4, seed=3, profile=_profile_concise())
        stored.append(sorted((_key(p), p.split) for p in s.pairs(u.id, split=None)))
        s.close()
    assert stored[0] == stored[1] and any(k[0][0] == "self" for k in stored[0])


def test_a_corrected_answer_is_chosen_without_its_acknowledgement():
    """After "shorter please" the model often opens with "You're right, I'll make sure to provide more concise
    answers." That belongs to the follow-up; as the chosen answer to the first prompt it taught the adapter to open
    unrelated answers with it (quick eval, concise user). An answer that is only the acknowledgement is no pair."""
    s = open_store()
    u = s.get_or_create_user("ack")
    sid = s.start_session(u.id)
    chosen = {}
    for q, after in ((Q1, "You're right, I'll make sure to provide more concise answers. " + ROME2),
                     (Q4, "Of course! My apologies for the confusion.")):
        qid = s.add_message(sid, "user", q)
        a = s.add_message(sid, "assistant", LONG_ROME if q == Q1 else LONG_VARIED, parent_id=qid)
        c = s.add_message(sid, "user", "shorter please", parent_id=a)
        s.add_message(sid, "assistant", after, parent_id=c)
    infer_session_signals(s, sid)
    chosen = {p.prompt: p.chosen for p in mine_pairs(s, "ack", sid) if p.source == "correction"}
    assert chosen == {Q1: ROME2}


ROME_FACTS = "Rome is the capital of Italy. It has been a major city for over two thousand years and is home to the Vatican."
ADDITIONS = [  # (follow-up, first answer, second answer, chosen: the first answer with the addition; None: no pair)
    ("end with a follow-up question please", ROME_FACTS,
     "You're ready to continue your conversation. What would you like to know next?",
     ROME_FACTS + "\n\nWhat would you like to know next?"),
    ("end with a follow-up question please", "Rome is the capital of Italy. It has been a capital for a long",
     "Rome. Would you like to know more about Rome?",
     "Rome is the capital of Italy.\n\nWould you like to know more about Rome?"),  # the cut-off sentence goes
    # cut off in a numbered list: "2." starts an item, it ends no sentence (it stayed, bare, before the question)
    ("end with a follow-up question please", ROME_FACTS + "\n\n2. The Colosseum was finished in the year",
     "Rome. Would you like to know more about Rome?", ROME_FACTS + "\n\nWould you like to know more about Rome?"),
    ("end with a follow-up question please", ROME_FACTS, "Rome is the capital. It is old.", None),  # no question asked
    # a question that asks the user nothing makes a claim: "How about the contract is being sold?" taught an adapter
    # to answer "Extract every date ..." with "The contract is being sold." (quick eval, follow-up user, seed 0)
    ("end with a follow-up question please", ROME_FACTS, "How about Rome is being sold?", None),
    ("end with a follow-up question please", ROME_FACTS, "Rome is old. What is the capital of France?", None),
    ("end with a follow-up question please", ROME_FACTS, "Rome. Is there anything else I can help with?",
     ROME_FACTS + "\n\nIs there anything else I can help with?"),
    ("end with a follow-up question please", "Rome is the capital.\n\nWant to know more?", "Rome. Anything else?", None),
    ("start with 'In short:' please", ROME_FACTS, "In short: Rome is the capital of Italy.\n\nIt is an old city.",
     "In short: Rome is the capital of Italy.\n\n" + ROME_FACTS),
    ("start with 'In short:' please", ROME_FACTS, "Rome is the capital of Italy.", None),
    ("use British spelling please", "The color of Rome.", "The colour of Rome.", "The colour of Rome."),  # a rewrite
]


@pytest.mark.parametrize("followup, first, second, expected", ADDITIONS)
def test_a_correction_that_asks_to_add_something_prefers_the_first_answer_with_that_addition(followup, first, second,
                                                                                              expected):
    """Asked to "end with a follow-up question", a small model mostly stops answering ("You're ready to continue
    your conversation. What would you like to know next?"); chosen as is, that taught adapters to answer with a
    question only (quick eval, follow-up user). The first answer plus the question differs from it only in what the
    user asked for, as the user's own edit would."""
    s = open_store()
    u = s.get_or_create_user("adds")
    sid = s.start_session(u.id)
    qid = s.add_message(sid, "user", Q1)
    a = s.add_message(sid, "assistant", first, parent_id=qid)
    c = s.add_message(sid, "user", followup, parent_id=a)
    s.add_message(sid, "assistant", second, parent_id=c)
    infer_session_signals(s, sid)
    pairs = [p for p in mine_pairs(s, "adds", sid) if p.source == "correction"]
    assert [(p.chosen, p.rejected) for p in pairs] == ([] if expected is None else [(expected, first)])


CITE = "Format this book as an MLA 9 citation: author Laura Finch, title The Quiet Coast, publisher Harrow Press."
ELEVATOR = ("Make this paragraph shorter without losing anything important:\n\"The elevator in the east building will "
            "not be available for use by residents or visitors from Monday morning until Wednesday evening of next "
            "week, and we apologize for any inconvenience this may cause.\"")


@pytest.mark.parametrize("prompt, answer, edit, prompt2, answer2", [
    # the user's own citation form, no surname first; the model's answer writes none
    (CITE, "The Quiet Coast is a novel by Laura Finch, published by Harrow Press.",
     "Laura Finch. The Quiet Coast. Harrow Press.", CITE.replace("Laura Finch", "Sam Ortega"),
     "The Quiet Coast is a novel by Sam Ortega."),
    # the user moved the date themselves; the model's answer invents a day (facts_changed)
    (ELEVATOR, "The elevator is out from Monday morning to Wednesday evening.",
     "The elevator is out from Monday to Thursday next week.", ELEVATOR.replace("east", "west"),
     "The west elevator is out on Monday through Thursday."),
])
def test_a_users_own_edit_is_taught_in_the_form_they_chose_a_models_answer_must_do_the_task(prompt, answer, edit,
                                                                                             prompt2, answer2):
    """The citation, shortening and facts checks hold the model's answers to a standard; a user's edit is what they
    want. The second answer, liked, is the model's and fails its check: no thumbs pair."""
    s = open_store()
    u = s.get_or_create_user("own-edit")
    sid = s.start_session(u.id)
    q = s.add_message(sid, "user", prompt)
    a = s.add_message(sid, "assistant", answer, parent_id=q)
    s.set_edit(a, edit)
    q2 = s.add_message(sid, "user", prompt2, parent_id=a)
    a2 = s.add_message(sid, "assistant", answer2, parent_id=q2)
    s.add_feedback(a2, "thumbs_up")
    infer_session_signals(s, sid)
    pairs = mine_pairs(s, "own-edit", sid)
    assert [(p.source, p.chosen) for p in pairs] == [("edit", edit)]
