"""Evaluation: persona checkers, edits, the simulated user, metrics, and the runner on a fake assistant."""

import json
import random
from types import SimpleNamespace

import pytest

from asls_mlx.evaluation import ARMS, PERSONAS, FeedbackPolicy, edit_cost, get_persona, run_eval
from asls_mlx.evaluation.metrics import levenshtein, score_heldout, sessions_to_recover, turn_edit_cost
from asls_mlx.evaluation.personas import CONCISE_WORDS
from asls_mlx.adaptation.update import UpdateReport
from asls_mlx.data_files import general_texts
from asls_mlx.evaluation.code_check import cases_by_prompt
from asls_mlx.evaluation.sql_check import sql_tests_by_prompt
from asls_mlx.evaluation.correctness import CATEGORIES, load_correctness_set
from asls_mlx.evaluation.runner import correctness_subset, load_prompts, persona_prompts
from asls_mlx.evaluation.simulate import decide, simulate_session
from asls_mlx.profiling.content import EXTRACTION, items, message_facts, split_instruction

EXPLAIN = "Explain the water cycle."
CODE = "Write a Python function that reverses a string."
LONG = ("The water cycle describes how water moves around our planet. Heat from the sun evaporates water from "
        "oceans, lakes and rivers. The vapour rises, cools and condenses into tiny droplets that form clouds. "
        "When the droplets grow heavy they fall as rain, snow or hail. Some of that water soaks into the ground "
        "and becomes groundwater, while the rest runs off into streams. Plants also release moisture through "
        "their leaves in a process called transpiration. Eventually the water returns to the sea and the whole "
        "cycle starts again, which keeps fresh water available for life on land.")
SHORT = "Water evaporates from the sea, condenses into clouds, falls as rain and flows back to the sea."
BULLETED = "- Water evaporates from the sea.\n- It condenses into clouds.\n- It falls as rain and flows back."
CASUAL = "Yeah, it's kinda cool stuff! The water cycle can't stop: evaporation, clouds and rain."
CODE_LATE = ("You can use slicing, which walks the string backwards with a negative step. For example:\n"
             "```python\ndef rev(s):\n    return s[::-1]\n```")
CODE_FIRST = "```python\ndef rev(s):\n    return s[::-1]\n```\nSlicing with a negative step reverses the string."
LOOP = "The water cycle is the water cycle is the water cycle is the water cycle is the water cycle."
REFUSAL = "I'm sorry, but I can't assist with that request about the water cycle."


def words(n):
    base = ("rain falls from clouds over hills and rivers carry it down to the sea where sunlight warms the "
            "surface and vapour rises again into cold air").split()
    return " ".join(base[i % len(base)] + ("." if i % 12 == 11 else "") for i in range(n)) + "."


# -- personas ----------------------------------------------------------------------------------------

def test_concise_checker_on_lengths():
    concise = get_persona("concise")
    assert concise.satisfies(EXPLAIN, words(30)) == 1.0
    assert concise.satisfies(EXPLAIN, words(CONCISE_WORDS)) == 1.0
    assert concise.satisfies(EXPLAIN, words(120)) == 0.0
    assert 0.0 < concise.satisfies(EXPLAIN, words(75)) < 1.0


@pytest.mark.parametrize("name,good,bad,prompt", [
    ("bullets", BULLETED, SHORT, EXPLAIN),
    ("formal", SHORT, CASUAL, EXPLAIN),
    ("code_first", CODE_FIRST, CODE_LATE, CODE),
    ("tldr", "TL;DR: water goes round.\n\n" + SHORT, SHORT, EXPLAIN),
    ("concise_bullets", BULLETED, LONG, EXPLAIN),
])
def test_checkers_true_and_false(name, good, bad, prompt):
    p = get_persona(name)
    assert p.satisfies(prompt, good) == 1.0
    assert p.satisfies(prompt, bad) < 1.0


def test_code_first_does_not_apply_to_non_coding_prompts():
    p = get_persona("code_first")
    assert not p.applies(EXPLAIN) and p.applies(CODE)
    assert p.satisfies(EXPLAIN, SHORT) == 1.0


@pytest.mark.parametrize("name", list(PERSONAS))
@pytest.mark.parametrize("degenerate", ["", "   ", LOOP, REFUSAL, "Yes."])
def test_degenerate_answers_score_zero_for_every_persona(name, degenerate):
    prompt = CODE if name == "code_first" else EXPLAIN
    assert PERSONAS[name].satisfies(prompt, degenerate) == 0.0
    assert turn_edit_cost(PERSONAS[name], prompt, degenerate) == 1.0


@pytest.mark.parametrize("name,answer,prompt", [
    ("concise", LONG, EXPLAIN), ("bullets", LONG, EXPLAIN), ("bullets", SHORT, EXPLAIN),
    ("formal", CASUAL, EXPLAIN), ("code_first", CODE_LATE, CODE),
    ("code_first", "Use slicing: `s[::-1]` returns the reversed string.", CODE),
    ("tldr", LONG, EXPLAIN), ("concise_bullets", LONG, EXPLAIN), ("drift", LONG, EXPLAIN),
])
def test_edit_moves_answer_to_satisfaction(name, answer, prompt):
    p = get_persona(name)
    edited = p.edit(prompt, answer)
    assert p.satisfies(prompt, edited) > p.satisfies(prompt, answer)
    assert p.satisfies(prompt, edited) == 1.0
    assert p.edit(prompt, edited) == edited  # a satisfied answer is accepted as is


def test_edit_specifics():
    assert get_persona("formal").edit(EXPLAIN, CASUAL) == \
        "Yes, it is somewhat good things. The water cycle cannot stop: evaporation, clouds and rain."
    truncated = get_persona("concise").edit(EXPLAIN, LONG)
    assert LONG.startswith(truncated) and truncated.endswith(".")  # cut at a sentence boundary
    assert get_persona("tldr").edit(EXPLAIN, LONG).startswith(
        "TL;DR: The water cycle describes how water moves around our planet.\n\n")
    assert get_persona("code_first").edit(CODE, CODE_LATE).startswith("```python\ndef rev(s):")


def test_corrections_are_recognised_by_the_profiling_classifier():
    from asls_mlx.profiling.signals import classify_followup

    expected = {"concise": "shorter", "bullets": "bullets", "formal": "formal", "code_first": "code_first",
                "tldr": "tldr"}
    for name, kind in expected.items():
        p = get_persona(name)
        prompt = CODE if name == "code_first" else EXPLAIN
        bad = {"concise": LONG, "bullets": LONG, "formal": CASUAL, "code_first": CODE_LATE, "tldr": LONG}[name]
        phrase = p.correction(prompt, bad)
        found = classify_followup(phrase)
        assert found is not None and found.kind == kind, (name, phrase)


def test_drift_persona_switches_at_session_3():
    d = get_persona("drift")
    assert d.satisfies(EXPLAIN, SHORT, session=2) == 1.0
    assert d.satisfies(EXPLAIN, SHORT, session=3) == 0.0  # now wants bullets
    assert d.satisfies(EXPLAIN, BULLETED, session=3) == 1.0
    assert d.correction(EXPLAIN, SHORT, session=3) == "use bullet points please"


# -- metrics -----------------------------------------------------------------------------------------

def test_edit_cost_values():
    assert levenshtein(list("kitten"), list("sitting")) == 3
    assert edit_cost("a b c d", "a b c d") == 0.0
    assert edit_cost("a b c d", "a x c d") == 0.25
    assert edit_cost("a b c d", "a b") == 0.5
    assert edit_cost("", "") == 0.0 and edit_cost("", "new text") == 1.0
    concise = get_persona("concise")
    assert turn_edit_cost(concise, EXPLAIN, SHORT) == 0.0  # accepted as is
    cost = turn_edit_cost(concise, EXPLAIN, LONG)
    assert 0.3 < cost < 0.7  # about half the answer is deleted


def test_score_heldout_and_recovery():
    concise = get_persona("concise")
    s = score_heldout(concise, [EXPLAIN] * 4, [SHORT, LONG, LOOP, SHORT])
    assert s.n == 4 and s.quality_pass == 0.75 and s.success_rate == 0.5
    assert s.satisfaction == pytest.approx((1 + concise.satisfies(EXPLAIN, LONG) + 0 + 1) / 4)
    assert sessions_to_recover([0.1, 0.8, 0.9, 0.2, 0.5, 0.85], drift_at=3) == 3
    assert sessions_to_recover([0.1, 0.8, 0.9, 0.85, 0.9], drift_at=3) == 1
    assert sessions_to_recover([0.1, 0.8, 0.9, 0.1, 0.2], drift_at=3) is None


# -- data --------------------------------------------------------------------------------------------

def test_builtin_prompts_and_texts():
    prompts = load_prompts()  # the set itself (categories, split rule, counts): tests/test_personas.py
    assert 250 <= len(prompts) <= 300
    cats = {"general", "howto", "explain", "advice", "coding"}
    assert cats < {r["category"] for r in prompts}
    assert 107 <= sum(r["category"] == "coding" for r in prompts)
    assert len({r["prompt"] for r in prompts}) == len(prompts)
    heldout = [r for r in prompts if r["split"] == "heldout"]
    assert 80 <= len(heldout) <= 100 and {r["category"] for r in heldout[:5]} == cats
    assert len(general_texts()) == 8
    heldin, ho = persona_prompts(get_persona("code_first"), prompts, seed=0)
    assert all("coding" == next(r["category"] for r in prompts if r["prompt"] == p) for p in heldin + ho)
    assert persona_prompts(get_persona("concise"), prompts, 0) == persona_prompts(get_persona("concise"), prompts, 0)
    assert persona_prompts(get_persona("concise"), prompts, 0)[0] != persona_prompts(get_persona("concise"), prompts, 1)[0]


# -- the simulated user ------------------------------------------------------------------------------

class FakeAssistant:
    """Duck-typed assistant, no model: answers get one sentence shorter after each trained session.

    The adapting arms learn (answers shrink, and bullets appear after session 2); the others never change.
    Profile-in-prompt alone trims one sentence once a session has been seen.
    """

    def __init__(self, user, arm, kwargs):
        self.user, self.arm, self.kwargs = user, arm, kwargs
        self.events, self.sessions, self.n_regen = [], 0, 0
        self.last_prompt = None

    def _text(self, prompt, extra=0):
        sents = [s + "." for s in LONG.split(". ") if s]
        learned = self.sessions if self.kwargs["adapt"] else (1 if self.kwargs["profile_in_prompt"] and self.sessions else 0)
        n = max(len(sents) - 2 * learned - extra, 2)
        kept = [s.rstrip(".") + "." for s in sents[:n]]
        pasted = split_instruction(prompt)[1]
        if pasted is not None and EXTRACTION.search(prompt):  # an extraction names what it extracts
            kept[0] = sorted(items(pasted))[0] + ": " + kept[0]
        if message_facts(prompt):  # a message states what it was asked to
            kept[0] = " ".join(sorted(message_facts(prompt))) + ": " + kept[0]
        if self.kwargs["adapt"] and self.sessions >= 2:
            return "\n".join("- " + s for s in kept)
        return " ".join(kept)

    def chat(self, text):
        self.events.append(("chat", text))
        if self.last_prompt is None or not text.endswith("please"):
            self.last_prompt = text
            return SimpleNamespace(text=self._text(text), message_id=len(self.events))
        return SimpleNamespace(text=self._text(self.last_prompt, extra=3), message_id=len(self.events))

    def regenerate(self):
        self.events.append(("regenerate",))
        self.n_regen += 1
        return SimpleNamespace(text=self._text(self.last_prompt, extra=self.n_regen % 2), message_id=len(self.events))

    def good(self):
        self.events.append(("good",))

    def bad(self):
        self.events.append(("bad",))

    def edit(self, text):
        self.events.append(("edit", text))

    def end_session(self, train="wait"):
        self.events.append(("end_session",))
        self.sessions += 1
        from asls_mlx import SessionSummary
        from asls_mlx.profiling import Profile

        training = UpdateReport(True, "held-out preference improved", version=self.sessions, steps=4,
                                before={"accuracy": 0.5, "n": 2}, after={"accuracy": 1.0, "n": 2},
                                retention_ratio=1.02, profile_fit=(0.5, 0.75), timings={"steps": 1.5})
        return SessionSummary(None, Profile(), pairs_mined=3, training=training if self.kwargs["adapt"] else None)

    def answer(self, prompt, record=False):
        assert record is False
        return self._text(prompt)

    def perplexity(self, texts, adapter=True):
        assert len(texts) == 8
        return 10.2 if adapter else 10.0

    def close(self):
        self.events.append(("close",))


def test_decide_is_deterministic_and_follows_the_rules():
    concise = get_persona("concise")
    a = [decide(concise, EXPLAIN, LONG, random.Random(f"0:{i}")) for i in range(200)]
    b = [decide(concise, EXPLAIN, LONG, random.Random(f"0:{i}")) for i in range(200)]
    assert a == b
    assert set(a) == {"regenerate", "correction", "edit", "thumbs_down"}
    assert abs(a.count("regenerate") / 200 - 0.3) < 0.1
    ok = {decide(concise, EXPLAIN, SHORT, random.Random(i)) for i in range(50)}
    assert ok == {"accept", "thumbs_up"}
    always_edit = FeedbackPolicy(p_regenerate=0, p_correction=0, p_edit=1.0)
    assert {decide(concise, EXPLAIN, LONG, random.Random(i), always_edit) for i in range(20)} == {"edit"}


def test_an_answer_about_something_else_satisfies_nobody_whatever_its_style():
    """The relevance judge says the answer is not about its prompt: the user regenerates it or gives a
    thumbs-down (no thumbs-up for its style, no edit, no "shorter please"), and it scores 0."""
    from asls_mlx.evaluation.simulate import simulate_turn

    concise = get_persona("concise")
    assert {decide(concise, EXPLAIN, SHORT, random.Random(i)) for i in range(50)} == {"accept", "thumbs_up"}
    off = [decide(concise, EXPLAIN, SHORT, random.Random(i), on_topic=False) for i in range(300)]
    assert set(off) == {"regenerate", "thumbs_down"} and 0.55 < off.count("regenerate") / 300 < 0.8
    prompts = [EXPLAIN, "Explain how rainbows form.", "Why is the sky blue?"]
    kinds = set()
    for turn in range(30):
        fake = FakeAssistant("u", "asls", ARMS["asls"])
        log = simulate_turn(fake, concise, prompts[turn % 3], 1, turn, on_topic=lambda q, a: False)
        kinds |= {e[0] for e in fake.events}
        assert log.satisfaction == log.final_satisfaction == 0.0 and log.edit_cost == 1.0 and not log.edited
    assert kinds == {"chat", "regenerate", "bad"}
    for turn in range(12):  # a judge that finds every answer on topic changes nothing
        logs = []
        for judge in (None, lambda q, a: True):
            fake = FakeAssistant("u", "asls", ARMS["asls"])
            logs.append((simulate_turn(fake, concise, prompts[turn % 3], 1, turn, on_topic=judge), fake.events))
        assert logs[0] == logs[1]


def test_simulated_session_events_are_deterministic_per_seed():
    concise = get_persona("concise")
    prompts = [EXPLAIN, "Explain how rainbows form.", "Why is the sky blue?", "Explain what DNA does in a cell."]
    runs = []
    for seed in (0, 0, 1):
        fake = FakeAssistant("u", "asls", ARMS["asls"])
        turns = simulate_session(fake, concise, prompts, session=1, seed=seed)
        runs.append(([t.action for t in turns], fake.events))
    assert runs[0] == runs[1]
    assert runs[0][0] != runs[2][0]  # another seed, other reactions
    fake = FakeAssistant("u", "asls", ARMS["asls"])
    edit_all = FeedbackPolicy(p_regenerate=0, p_correction=0, p_edit=1.0)
    turns = simulate_session(fake, concise, prompts[:2], session=1, policy=edit_all)
    assert [e[0] for e in fake.events] == ["chat", "edit", "chat", "edit"]
    assert all(t.edited and t.final_satisfaction == 1.0 and t.satisfaction < 1.0 for t in turns)
    assert fake.events[1][1] == concise.edit(EXPLAIN, turns[0].answer)
    assert turns[0].edit_cost == pytest.approx(edit_cost(turns[0].answer, fake.events[1][1]))
    fake = FakeAssistant("u", "asls", ARMS["asls"])
    correct_all = FeedbackPolicy(p_regenerate=0, p_correction=1.0, p_edit=0, p_edit_after=0)
    turns = simulate_session(fake, concise, prompts[:1], session=1, policy=correct_all)
    assert fake.events[1] == ("chat", "shorter please") and turns[0].generations == 2


def test_an_edit_after_a_regeneration_edits_the_answer_on_screen():
    """The chat edits its last answer: after a regeneration that is no better, the user edits the regenerated
    answer (what they see), so the stored edit belongs to the message it is stored on."""

    class WorseRegeneration(FakeAssistant):
        def regenerate(self):
            self.events.append(("regenerate",))
            return SimpleNamespace(text="Well. " + self._text(self.last_prompt) + " " + LONG, message_id=len(self.events))

    concise = get_persona("concise")
    regen_then_edit = FeedbackPolicy(p_regenerate=1.0, p_correction=0, p_edit=0, p_edit_after=1.0)
    fake = WorseRegeneration("u", "asls", ARMS["asls"])
    turn = simulate_session(fake, concise, [EXPLAIN], session=1, policy=regen_then_edit)[0]
    kinds = [e[0] for e in fake.events]
    assert kinds == ["chat", "regenerate", "bad", "edit"], kinds
    regenerated = "Well. " + fake._text(EXPLAIN) + " " + LONG
    assert fake.events[-1][1] == concise.edit(EXPLAIN, regenerated) == turn.final_answer
    assert fake.events[-1][1] != concise.edit(EXPLAIN, turn.answer)


# -- the runner on a fake assistant ------------------------------------------------------------------

def test_runner_on_fake_assistant_writes_table_and_json(tmp_path):
    made = []

    def factory(user, arm, kwargs):
        made.append((user, arm))
        return FakeAssistant(user, arm, kwargs)

    messages = []
    result = run_eval(arms=["profile_prompt", "adapt_no_profile", "asls", "sft"], personas=["concise", "drift"],
                      sessions=4, turns=3, heldout=4, seed=0, out_dir=tmp_path / "out", progress=messages.append,
                      assistant_factory=factory)
    assert [a for _, a in made[:5]] == ["base", "profile_prompt", "adapt_no_profile", "asls", "sft"]
    assert len({u for u, _ in made}) == 10  # a fresh user per persona x arm
    # base never changes; adapting arms fall in length each session and end concise
    assert result.curve("concise", "base") == [result.curve("concise", "base")[0]] * 5
    asls = result.curve("concise", "asls")
    assert asls[0] == result.curve("concise", "base")[0] < asls[-1] == 1.0
    words = [s["heldout"]["words"] for s in result.run("concise", "asls")["sessions"]]
    assert words == sorted(words, reverse=True) and words[0] > words[-1]
    rows = {(r["arm"], r["persona"]): r for r in result.rows()}
    assert rows[("asls", "concise")]["delta_vs_base"] == pytest.approx(1.0 - result.curve("concise", "base")[-1])
    assert rows[("asls", "concise")]["retention"] == pytest.approx(1.02)
    assert rows[("profile_prompt", "concise")]["retention"] == 1.0
    ec = rows[("asls", "concise")]["edit_cost_chat"]
    assert ec[0] > ec[1] == 0.0
    # drift: concise until session 3, then bullets (the fake adapter makes bullets from session 2)
    assert result.run("drift", "asls")["recover"] == 1
    assert result.run("drift", "base")["recover"] is None
    train = result.run("concise", "asls")["sessions"][1]["training"]
    assert train == {"pairs_mined": 3, "committed": True, "version": 1, "reason": "held-out preference improved",
                     "steps": 4, "before": {"accuracy": 0.5, "n": 2}, "after": {"accuracy": 1.0, "n": 2},
                     "retention_ratio": 1.02, "profile_fit": [0.5, 0.75], "timings": {"steps": 1.5}}
    assert result.run("concise", "profile_prompt")["sessions"][1]["training"] is None  # no adapter to train
    # outputs
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    assert {r["arm"] for r in data["runs"]} == set(ARMS) and len(data["runs"]) == 10
    assert data["config"]["sessions"] == 4 and len(data["runs"][0]["sessions"]) == 5
    md = (tmp_path / "out" / "results.md").read_text()
    assert md == result.markdown()
    for arm in ARMS:
        assert f"| {arm} |" in md
    assert "| asls | concise | 0.06 → 1.00 | +0.94 |" in md
    assert "| base | concise | 0.06 → 0.06 | +0.00 |" in md
    assert "sessions to recover" in md and "- asls: 1" in md
    assert any("session 4/4" in m for m in messages)
    assert (tmp_path / "out" / "home").is_dir()


def test_quick_defaults_and_unknown_arm(tmp_path):
    result = run_eval(quick=True, assistant_factory=lambda u, a, k: FakeAssistant(u, a, k))
    assert result.config["arms"] == ["base", "profile_prompt", "asls"]
    assert result.config["personas"] == ["concise", "follow_up"] and result.config["seeds"] == [0]
    assert (result.config["sessions"], result.config["turns"], result.config["heldout"]) == (3, 4, 12)
    assert all(len(r["heldout_prompts"]) == 12 for r in result.runs)
    # held-out prompts come round-robin over the categories: the first 12 span every category there is
    from asls_mlx.evaluation import load_prompts

    category = {r["prompt"]: r["category"] for r in load_prompts()}
    first = result.run("concise", "asls")["heldout_prompts"]
    assert len({category[p] for p in first}) == len(set(category.values())) == 12
    full = run_eval.__globals__["FULL"]
    assert full["heldout"] >= 30 and len(full["seeds"]) >= 3 and full["sessions"] == 5
    # base in quick mode is scored once, no chats; shared baseline: S0 identical across arms
    assert all(s["chat"] is None for s in result.run("concise", "base")["sessions"])
    assert result.run("concise", "asls")["sessions"][0]["answers"] == result.run("concise", "base")["sessions"][0]["answers"]
    from asls_mlx.errors import ASLSError

    with pytest.raises(ASLSError, match="unknown arm"):
        run_eval(arms=["nope"], assistant_factory=lambda u, a, k: None)
    with pytest.raises(ASLSError, match="unknown persona"):
        run_eval(personas=["nope"], assistant_factory=lambda u, a, k: None)


# -- helpfulness: only helpful answers satisfy; correctness kept; template share; profile leaks ---------

HOLLOW = "The answer is: Please."
LEAK = "The user prefers short answers (about 13 words). Interested in: given, write, output."


class StyleOnlyPersona:
    """Scores style alone (every answer fits), without any quality guard of its own: the metric's guard
    is what must make a hollow answer fail."""

    name = "style_only"

    def applies(self, prompt, session=None):
        return True

    def satisfies(self, prompt, answer, session=None):
        return 1.0

    def edit(self, prompt, answer, session=None):
        return answer


def test_stylish_but_hollow_answers_score_zero():
    concise = get_persona("concise")
    assert concise.rule_scores(EXPLAIN, HOLLOW) == {"concise": 1.0}  # short: the style fits
    for persona in (StyleOnlyPersona(), concise):
        s = score_heldout(persona, [EXPLAIN] * 3, [HOLLOW, LEAK, "The answer is:"])
        assert (s.satisfaction, s.success_rate, s.quality_pass, s.edit_cost) == (0.0, 0.0, 0.0, 1.0)
        assert s.leak_rate == pytest.approx(1 / 3) and s.issues["hollow"] == 2 and s.issues["profile_leak"] == 1
        assert s.template_share == pytest.approx(2 / 3)  # "the answer is" opens two of three
    ok = score_heldout(StyleOnlyPersona(), [EXPLAIN, EXPLAIN], [SHORT, HOLLOW])
    assert (ok.satisfaction, ok.quality_pass, ok.leak_rate, ok.template_share) == (0.5, 0.5, 0.0, 0.5)


class HelpfulnessFake(FakeAssistant):
    """Answers correctness questions with their accepted answer; once an adapting arm has trained, its
    held-out answers are short and stylish but hollow or leak the profile, and it gets arithmetic wrong."""

    ACCEPTED = {it.question: it.accepted[0] for it in load_correctness_set()}
    CATEGORY = {it.question: it.category for it in load_correctness_set()}

    def _text(self, prompt, extra=0):
        degraded = self.kwargs["adapt"] and self.sessions >= 1
        if prompt in self.ACCEPTED:
            wrong = degraded and self.CATEGORY[prompt] == "arithmetic"
            return "Zyxw." if wrong else self.ACCEPTED[prompt] + "."
        if degraded:
            return HOLLOW if sum(map(ord, prompt)) % 2 else LEAK
        if prompt in cases_by_prompt():  # a function that passes the prompt's test cases (code_check)
            cases = {repr(args): expected for args, expected in cases_by_prompt()[prompt]["cases"]}
            return f"```python\ndef answer(*args):\n    return {cases!r}[repr(list(args))]\n```"
        if prompt in sql_tests_by_prompt():  # a query that gives the reference's rows (sql_check)
            return f"```sql\n{sql_tests_by_prompt()[prompt]['reference']};\n```"
        return f"{prompt.rstrip('?.')}: {SHORT}"

    def answer_many(self, prompts, max_tokens=None):
        self.events.append(("answer_many", len(prompts), max_tokens))
        return [self._text(p) for p in prompts]


def test_correctness_subset_is_fixed_and_stratified():
    from collections import Counter

    sub = correctness_subset(30)
    assert sub == correctness_subset(30) and len(sub) == 30
    assert Counter(it.category for it in sub) == {c: 6 for c in CATEGORIES}
    everything = load_correctness_set()
    assert correctness_subset(None) == everything and len(everything) >= 120 and correctness_subset(0) == []
    assert [it.id for it in sub] == [it.id for it in everything if it in sub]  # file order


def test_runner_counts_only_helpful_answers_and_reports_correctness(tmp_path):
    fakes = []

    def factory(user, arm, kwargs):
        fakes.append(HelpfulnessFake(user, arm, kwargs))
        return fakes[-1]

    result = run_eval(arms=["profile_prompt", "asls"], personas=["concise"], sessions=2, turns=2, heldout=6,
                      out_dir=tmp_path, assistant_factory=factory, correctness=30)
    asls, base = result.run("concise", "asls"), result.run("concise", "base")
    # stylish (short) but hollow or leaking: satisfaction 0 after training, whatever the style
    assert result.curve("concise", "asls")[1:] == [0.0, 0.0] and result.curve("concise", "base")[-1] > 0.8
    answers = asls["sessions"][-1]["answers"]
    assert set(answers) == {HOLLOW, LEAK}
    last = asls["sessions"][-1]["heldout"]
    assert last["leak_rate"] == pytest.approx(answers.count(LEAK) / 6)
    assert last["template_share"] == pytest.approx(max(answers.count(HOLLOW), answers.count(LEAK)) / 6)
    # correctness: the base arm answers before session 1, the others after the last, through answer_many
    items = correctness_subset(30)
    assert [e for e in fakes[0].events if e[0] == "answer_many"][0] == ("answer_many", 30, 64)
    assert base["correctness"]["accuracy"] == 1.0 and base["correctness"]["kept_vs_base"] == 1.0
    assert asls["correctness"]["accuracy"] == pytest.approx(24 / 30)  # the 6 arithmetic items are wrong
    assert asls["correctness"]["kept_vs_base"] == pytest.approx(0.8)
    assert (asls["correctness"]["turned_wrong"], asls["correctness"]["turned_right"]) == (6, 0)  # kept = their net
    assert asls["correctness"]["ids"] == [it.id for it in items]
    assert result.run("concise", "profile_prompt")["correctness"]["kept_vs_base"] == 1.0
    row = {r["arm"]: r for r in result.rows()}["asls"]
    base_share = base["sessions"][-1]["heldout"]["template_share"]
    assert row["template_delta"] == pytest.approx(last["template_share"] - base_share)
    assert (row["correctness"], row["correctness_kept"], row["leak_rate"]) == (
        pytest.approx(0.8), pytest.approx(0.8), last["leak_rate"])
    # results.json and results.md carry them
    data = json.loads((tmp_path / "results.json").read_text())
    run = next(r for r in data["runs"] if r["arm"] == "asls")
    assert run["correctness"]["kept_vs_base"] == pytest.approx(0.8) and len(run["correctness"]["answers"]) == 30
    assert run["sessions"][-1]["heldout"]["leak_rate"] == last["leak_rate"]
    summary = {s["arm"]: s for s in data["summary"]}
    assert summary["asls"]["correctness_kept"] == pytest.approx(0.8)
    assert summary["base"]["template_delta"] == 0.0 and data["config"]["correctness"] == 30
    md = (tmp_path / "results.md").read_text()
    assert "| Correctness | Kept vs base | Template share (Δ base) | Leak |" in md
    cells = f"| 0.80 | 0.80 | {last['template_share']:.2f} ({row['template_delta']:+.2f}) | {last['leak_rate']:.2f} |"
    assert cells in md


# -- helpfulness in the eval's figures: relevance, templates, seeds, intervals ------------------------

def test_bootstrap_intervals_cover_the_mean_and_pairing_tightens_the_difference():
    from asls_mlx.evaluation.stats import bootstrap_ci, excludes_zero, paired_delta_ci

    values = [0.0, 1.0] * 50
    m, lo, hi = bootstrap_ci(values)
    assert m == 0.5 and 0.38 < lo < 0.5 < hi < 0.62
    assert bootstrap_ci([0.7] * 10) == pytest.approx((0.7, 0.7, 0.7))
    assert all(x != x for x in bootstrap_ci([]))
    # Two arms whose per-prompt scores vary a lot but differ by +0.1 on every prompt: the paired interval is exact.
    a = [x / 40 for x in range(40)]
    b = [x - 0.1 for x in a]
    d = paired_delta_ci(a, b)
    assert d[0] == pytest.approx(0.1) and d[1] == pytest.approx(0.1) and excludes_zero(d)
    assert not excludes_zero(paired_delta_ci([1, 0, 1, 0], [0, 1, 0, 1]))


def test_irrelevant_and_templated_answers_score_zero():
    concise = get_persona("concise")
    prompts = ["Why is the sky blue?", "What is DNA?", "How do magnets work?", "What is rain?", "Why do we sleep?"]
    answers = ["Sunlight scatters off air molecules, blue the most."] * 1 + [
        "The answer is: DNA is a molecule that carries genetic code.", "The answer is: magnets align electron spins.",
        "The answer is: rain is water falling from clouds.", "The answer is: we sleep so the brain can rest and repair."]
    plain = score_heldout(concise, prompts, answers, 1)
    assert plain.satisfaction == 1.0 and plain.per_prompt == [1.0] * 5 and plain.irrelevant_rate != plain.irrelevant_rate
    # The relevance check flags the second answer: it alone scores 0, with the issue counted.
    flagged = score_heldout(concise, prompts, answers, 1, irrelevant=[False, True, False, False, False])
    assert flagged.per_prompt == [1.0, 0.0, 1.0, 1.0, 1.0] and flagged.issues["irrelevant"] == 1
    assert flagged.irrelevant_rate == pytest.approx(0.2) and flagged.edit_cost == pytest.approx(0.2)
    # Four of five open alike; the base model's answers shared no opening: a learnt template, each one fails.
    templated = score_heldout(concise, prompts, answers, 1, base_template_share=0.2)
    assert templated.per_prompt == [1.0, 0.0, 0.0, 0.0, 0.0] and templated.issues["template"] == 4
    # The same share is no template when the base model's answers already opened alike that often.
    assert score_heldout(concise, prompts, answers, 1, base_template_share=0.8).satisfaction == 1.0


def test_runner_with_seeds_reports_intervals_relevance_and_commits(tmp_path):
    judged = []

    import math

    from asls_mlx.profiling.profile import Feature, Profile

    def factory(user, arm, kwargs):
        fake = FakeAssistant(user, arm, kwargs)
        fake.profile = Profile()
        fake.profile.length = Feature(math.log(30), 5.0, 5, 5)  # "short": the concise persona's truth
        fake.profile.headings = Feature(1.0, 5.0, 5, 5)  # never expressed: a false claim
        return fake

    def relevance(prompts, answers):  # flags every answer that opens with a bullet: "not about the prompt"
        judged.append(len(prompts))
        return [-1.0 if a.startswith("- ") else 1.0 for a in answers]

    factory.relevance = relevance
    result = run_eval(arms=["profile_prompt", "asls"], personas=["concise"], sessions=2, turns=2, heldout=4,
                      seeds=[0, 1], out_dir=tmp_path / "out", assistant_factory=factory)
    assert [(r["arm"], r["seed"]) for r in result.runs] == [
        ("base", 0), ("profile_prompt", 0), ("asls", 0), ("base", 1), ("profile_prompt", 1), ("asls", 1)]
    assert len({r["user"] for r in result.runs}) == 6 and judged
    # The fake adapter writes bullets from session 2: every last answer is flagged, so it scores 0.
    last = result.run("concise", "asls", seed=1)["sessions"][-1]["heldout"]
    assert last["irrelevant_rate"] == 1.0 and last["satisfaction"] == 0.0 and last["per_prompt"] == [0.0] * 4
    summary = {s["arm"]: s for s in result.arm_summary()}
    assert summary["asls"]["satisfaction_ci"] == (0.0, 0.0, 0.0)
    delta = summary["asls"]["delta_vs_profile_prompt"]
    assert delta[0] == pytest.approx(-summary["profile_prompt"]["satisfaction_ci"][0]) and delta[2] < 0
    assert summary["asls"]["commit_rate"] == 1.0 and summary["profile_prompt"]["commit_rate"] != summary["profile_prompt"]["commit_rate"]
    md = (tmp_path / "out" / "results.md").read_text()
    assert "2 seed(s)" in md and "- **asls**: satisfaction 0.00 [0.00, 0.00]" in md and "updates committed 100%" in md
    assert "concise (seed 1)" in md
    run = result.run("concise", "asls", seed=0)
    assert run["profile"]["claims"] == {"length": "short", "headings": True} and run["profile"]["truth"] == {"length": "short"}
    assert (run["profile"]["precision"], run["profile"]["recall"]) == (0.5, 1.0)
    assert summary["asls"]["profile_precision"] == 0.5 and "profile precision 0.50, recall 1.00" in md
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    assert data["config"]["seeds"] == [0, 1]


def test_results_of_other_seeds_combine_into_one_with_pooled_intervals(tmp_path):
    from asls_mlx.errors import ASLSError
    from asls_mlx.evaluation.results import EvalResult

    common = dict(arms=["profile_prompt"], personas=["concise"], sessions=1, turns=2, heldout=4,
                  assistant_factory=FakeAssistant)
    run_eval(seeds=[0], out_dir=tmp_path / "a", **common)
    run_eval(seeds=[1, 2], out_dir=tmp_path / "b", **common)
    a, b = EvalResult.load(tmp_path / "a"), EvalResult.load(tmp_path / "b")
    both = EvalResult.combine([a, b])
    assert both.config["seeds"] == [0, 1, 2] and len(both.runs) == len(a.runs) + len(b.runs) == 6
    summary = {s["arm"]: s for s in both.arm_summary()}
    assert summary["profile_prompt"]["answers"] == 12  # 3 seeds x 4 held-out answers pooled
    both.save(tmp_path / "all")
    assert "3 seed(s)" in (tmp_path / "all" / "results.md").read_text()
    # A run stopped before its last seeds reports the seeds it ran, not those it was asked for.
    stopped = EvalResult(config=dict(a.config, seeds=[0, 1, 2]), runs=a.runs)
    assert "seed(s) 0, model" in stopped.markdown() and "(1 seed(s))" in stopped.markdown()
    with pytest.raises(ASLSError, match="same persona x arm x seed twice"):
        EvalResult.combine([a, a])
    run_eval(seeds=[3], out_dir=tmp_path / "c", **dict(common, heldout=2))
    with pytest.raises(ASLSError, match="different settings: heldout"):
        EvalResult.combine([a, EvalResult.load(tmp_path / "c")])


def test_the_commit_rate_counts_the_updates_that_trained():
    """A session that left nothing to train on ("no training step ran (no_data)": only unpaired thumbs for a
    pair loss) is no decision of the gate; counted as a rejection it made the follow-up user's rate look worse."""
    from asls_mlx.evaluation.results import commit_rate, update_decisions

    def session(committed, steps):
        return {"training": {"committed": committed, "steps": steps}}

    run = {"sessions": [{"training": None}, session(True, 3), session(False, 3), session(False, 0), session(True, 2)]}
    assert update_decisions(run) == [True, False, True] and commit_rate(run) == pytest.approx(2 / 3)
    assert commit_rate({"sessions": [{"training": None}, session(False, 0)]}) is None


def test_a_recipe_arms_users_split_their_pairs_as_the_default_arms_do(tmp_path, monkeypatch):
    """The product splits a user's pairs into train and validation by the user's name: a recipe arm run on its own
    (benchmarks/eval_recipe.py) names its users as the default arm's, so the recipe is the only difference."""
    from asls_mlx.evaluation import runner
    from asls_mlx.profiling.mining import split_of

    assert runner.user_arm_names(["base", "asls+beta=0.2"]) == {"base": "base", "asls+beta=0.2": "asls"}
    assert runner.user_arm_names(["asls", "asls+beta=0.2"]) == {"asls": "asls", "asls+beta=0.2": "asls+beta=0.2"}
    monkeypatch.setitem(runner.ARMS, "asls+beta=0.2", dict(ARMS["asls"]))
    users = {}
    for arm in ("asls", "asls+beta=0.2"):
        run_eval(arms=[arm], personas=["concise"], sessions=1, turns=1, heldout=1, seed=0, out_dir=tmp_path / arm,
                 assistant_factory=lambda user, a, kwargs: users.setdefault(a, user) and FakeAssistant(user, a, kwargs))
    assert users["asls"] == users["asls+beta=0.2"] == "eval-concise-asls-s0"
    prompts = [r["prompt"] for r in load_prompts()[:40]]
    assert [split_of(users["asls"], p) for p in prompts] == [split_of(users["asls+beta=0.2"], p) for p in prompts]


def test_the_runner_lets_the_simulated_user_judge_relevance_with_the_factorys_judge(tmp_path):
    def factory(user, arm, kwargs):
        return FakeAssistant(user, arm, kwargs)

    factory.relevance = lambda prompts, answers: [-1.0] * len(answers)  # nothing is about its prompt
    result = run_eval(arms=["asls"], personas=["concise"], sessions=2, turns=3, heldout=2, seed=0,
                      out_dir=tmp_path / "out", assistant_factory=factory)
    chats = [s["chat"] for s in result.run("concise", "asls")["sessions"][1:]]
    assert all(set(c["actions"]) <= {"regenerate", "thumbs_down"} and c["final_satisfaction"] == 0.0 for c in chats)


def test_a_recipe_setting_is_typed_by_its_config_field():
    """``eval_recipe.py --set`` turns ``field=value`` into the field's type: a loss is text, a flag a bool, a
    learning rate a float; an unknown field or a bad value stops with a message naming it, not a traceback."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "eval_recipe.py"
    spec = importlib.util.spec_from_file_location("eval_recipe", path)
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    assistant, learning = recipe.parse_settings(["loss=sft", "task_probes=true", "base_lr=1e-4", "max_steps=6"])
    assert assistant == {"loss": "sft", "max_steps": 6} and learning == {"task_probes": True, "base_lr": 1e-4}
    for bad, named in (["nope=1"], "nope"), (["max_steps=many"], "max_steps"):
        with pytest.raises(SystemExit, match=named):
            recipe.parse_settings(bad)


def test_the_summary_names_the_user_whose_adapters_keep_the_least_correctness():
    """A pooled mean over personas hides a user whose adapters forget: 1.08 and 0.92 pool to 1.00."""
    from asls_mlx.evaluation.results import _interval_line, _lowest_kept

    rows = [{"persona": "concise", "correctness_kept": k} for k in (1.0, 1.1, 1.15)]
    rows += [{"persona": "follow_up", "correctness_kept": k} for k in (0.9, 0.7, None)]
    lowest = _lowest_kept(rows)
    assert lowest == {"correctness_kept_lowest": pytest.approx(0.8), "correctness_kept_lowest_persona": "follow_up"}
    assert _lowest_kept(rows[:3]) == {}  # one user: the pooled figure is that user's
    line = _interval_line({"arm": "asls", "correctness_kept": 0.95} | lowest)
    assert "correctness kept 0.95 (lowest: follow_up 0.80)" in line
    # with the answers' flips: churn or a loss? 5 wrong and 1 right is p = 7/64 by a one-sided sign test
    for r, flips in zip(rows, [(1, 2), (0, 1), (0, 0), (2, 0), (3, 1), (0, 0)]):
        r["correctness_flips"] = flips
    tested = _lowest_kept(rows)
    assert tested["correctness_lowest_flips"] == [5, 1, pytest.approx(7 / 64)]
    assert "(lowest: follow_up 0.80, 5 turned wrong and 1 right, p=0.11)" in _interval_line(
        {"arm": "asls", "correctness_kept": 0.95} | tested)
    assert "lowest" not in _interval_line({"arm": "base", "correctness_kept": 1.0} | lowest)


def test_correctness_flips_are_judged_from_stored_answers_of_results_recorded_before_them():
    from asls_mlx.evaluation.correctness import load_correctness_set
    from asls_mlx.evaluation.results import _flips

    items = [it for it in load_correctness_set() if it.id in ("fact-00", "fact-01", "fact-02")]
    base = {"ids": [it.id for it in items], "answers": ["Paris.", "Tokyo.", "Madrid."]}
    mine = {"ids": base["ids"], "answers": ["Lyon.", "Tokyo.", "Rome."]}
    assert _flips(mine, base) == (1, 1)  # Paris lost, Rome gained
    assert _flips(dict(mine, turned_wrong=4, turned_right=0), base) == (4, 0)  # as recorded
    assert _flips(dict(mine, ids=["fact-00"]), base) == (None, None)  # not the same questions
