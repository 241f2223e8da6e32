"""A rule-based simulated user: chats over held-in prompts and gives feedback like a person would.

Per turn: ask the prompt; if the answer satisfies the hidden preference, sometimes give a thumbs-up,
else just move on (implicit acceptance). If it violates, pick one reaction with seeded probabilities:
1) regenerate (keep the better answer; a worse regeneration gets a thumbs-down), 2) a correction
follow-up ("shorter please"), 3) edit the answer toward the preference, 4) thumbs-down. Then move on.
An answer that is not about its prompt (``on_topic``: the base model's relevance check, where the runner has
one) satisfies nobody, whatever its style: the user regenerates it or gives a thumbs-down — they neither edit
an answer about something else nor ask it to be shorter. Every draw comes from ``random.Random(f"{seed}:{persona}:{session}:{turn}")``, so a run is deterministic
per seed and the arms of one benchmark see the same reactions at the same turns.

The assistant is duck-typed: ``chat(text) -> reply(.text)``, ``regenerate()``, ``good()``, ``bad()``,
``edit(text)`` (see ``asls_mlx.assistant.Assistant``).
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Callable

from asls_mlx.evaluation.metrics import turn_edit_cost
from asls_mlx.evaluation.personas import Persona

OnTopic = Callable[[str, str], bool]  # (prompt, answer) -> is the answer about its prompt
ACTIONS = ("accept", "thumbs_up", "regenerate", "correction", "edit", "thumbs_down")


@dataclass(frozen=True)
class FeedbackPolicy:
    """How the simulated user reacts. Violations: one of regenerate / correction / edit / thumbs-down."""

    p_regenerate: float = 0.3  # the cheapest reaction in a chat UI
    p_correction: float = 0.25  # "shorter please": costs the user a message
    p_edit: float = 0.3  # rewriting the answer is effort: not always (remainder: thumbs-down)
    p_thumbs_up: float = 0.3  # satisfied users mostly just move on
    p_edit_after: float = 0.3  # after a regenerate/correction that still violates, edit it anyway


def decide(persona: Persona, prompt: str, answer: str, rng: random.Random,
           policy: FeedbackPolicy = FeedbackPolicy(), session: int | None = None, on_topic: bool = True) -> str:
    """The user's reaction to ``answer``: one of ``ACTIONS``. ``on_topic`` False: regenerate or thumbs-down,
    in the ratio the policy gives those two."""
    if on_topic and persona.satisfied(prompt, answer, session):
        return "thumbs_up" if rng.random() < policy.p_thumbs_up else "accept"
    u = rng.random()
    if not on_topic:
        down = max(1.0 - policy.p_regenerate - policy.p_correction - policy.p_edit, 0.0)
        return "regenerate" if u * (policy.p_regenerate + down) < policy.p_regenerate else "thumbs_down"
    for action, p in (("regenerate", policy.p_regenerate), ("correction", policy.p_correction),
                      ("edit", policy.p_edit)):
        if u < p:
            return action
        u -= p
    return "thumbs_down"


@dataclass
class TurnLog:
    """One simulated turn.

    satisfaction / edit_cost: of the assistant's first answer to the prompt (what the model produced).
    final_satisfaction: of the answer the user ended the turn with (after regenerate / correction / edit).
    generations: model calls this turn cost (1-2), for time budgeting.
    """

    session: int
    turn: int
    prompt: str
    answer: str
    satisfaction: float
    edit_cost: float
    action: str
    final_answer: str
    final_satisfaction: float
    generations: int
    edited: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


def simulate_turn(assistant, persona: Persona, prompt: str, session: int, turn: int, seed: int = 0,
                  policy: FeedbackPolicy = FeedbackPolicy(), on_topic: OnTopic | None = None) -> TurnLog:
    """One turn: ask, react (see the module doc), log. ``on_topic(prompt, answer)``: the relevance judge."""
    rng = random.Random(f"{seed}:{persona.name}:{session}:{turn}")

    judged: dict[str, bool] = {}

    def about_it(text: str) -> bool:
        if text not in judged:
            judged[text] = on_topic is None or on_topic(prompt, text)
        return judged[text]

    def satisfies(text: str) -> float:
        return persona.satisfies(prompt, text, session) if about_it(text) else 0.0

    answer = assistant.chat(prompt).text
    sat, topical = satisfies(answer), about_it(answer)
    cost = turn_edit_cost(persona, prompt, answer, session) if topical else 1.0
    action = decide(persona, prompt, answer, rng, policy, session, on_topic=topical)
    final, final_sat, gens, edited = answer, sat, 1, False
    shown = answer  # the answer on screen: an edit changes this one (the chat edits its last answer)
    if action == "thumbs_up":
        assistant.good()
    elif action == "thumbs_down":
        assistant.bad()
    elif action == "regenerate":
        again = shown = assistant.regenerate().text
        gens += 1
        again_sat = satisfies(again)
        if again_sat > sat:
            final, final_sat = again, again_sat
            if again_sat >= 1.0:
                assistant.good()
        else:
            assistant.bad()  # the regeneration is no better: say so; the user keeps the first in mind
    elif action == "correction":
        followup = persona.correction(prompt, answer, session)
        again = shown = assistant.chat(followup).text
        gens += 1
        # The answer to a correction is scored against the original prompt: it must still answer it.
        final, final_sat = again, satisfies(again)
    if action == "edit" or (action in ("regenerate", "correction") and final_sat < 1.0
                            and rng.random() < policy.p_edit_after and about_it(shown)):
        edited_text = persona.edit(prompt, shown, session)
        if edited_text != shown:
            assistant.edit(edited_text)
            final, final_sat, edited = edited_text, satisfies(edited_text), True
    return TurnLog(session, turn, prompt, answer, sat, cost, action, final, final_sat, gens, edited)


def simulate_session(assistant, persona: Persona, prompts: list[str], session: int, seed: int = 0,
                     policy: FeedbackPolicy = FeedbackPolicy(), on_topic: OnTopic | None = None) -> list[TurnLog]:
    """Chat over ``prompts`` (one turn each) with feedback by rule; the caller ends the session."""
    return [simulate_turn(assistant, persona, p, session, t, seed, policy, on_topic) for t, p in enumerate(prompts)]
