"""Does the profile say what the simulated user really wants? Precision and recall of its claims.

Each persona's hidden preference has a profile term on its rules (``Rule.profile``: ("length", "short"),
("bullets", True), ...), in the vocabulary of ``Profile.claims()``, which is exactly what ``render()`` puts
into the system prompt. A claim is right when the persona truly has that feature with that value; a claim
the persona never had (headings, a tone, a length it does not care about) is wrong.

``scripted_profile`` measures it without a model: a persona chats over its held-in prompts with its
rule-based feedback (``simulate``) on canned answers of varied style (long, bulleted, with a heading line,
casual, formal, TL;DR-first, code before or after the explanation), and each session ends with the real
profiling step (``profiling.process_session``).
"""

from __future__ import annotations

import random
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from asls_mlx.data_files import load_prompts
from asls_mlx.evaluation.personas import Persona
from asls_mlx.evaluation.simulate import simulate_session
from asls_mlx.profiling import Profile, corrections, process_session, record_feedback
from asls_mlx.profiling.features import is_coding_prompt
from asls_mlx.store import Store, open_store


def profile_truth(persona: Persona, session: int | None = None) -> dict[str, Any]:
    """The persona's hidden preference in profile terms (in ``session``, for a persona that drifts)."""
    return dict(r.profile for r in persona.active_rules(session) if r.profile is not None)


def precision_recall(profile: Profile, persona: Persona, session: int | None = None) -> tuple[float, float]:
    """(precision, recall) of the profile's claims against the persona's truth in ``session``.

    precision: claims the persona truly has / claims (1.0 when nothing is claimed: nothing false was said);
    recall: true features claimed with their value / true features (1.0 when the profile has no feature
    for what the persona wants).
    """
    claims, truth = profile.claims(), profile_truth(persona, session)
    right = sum(1 for name, value in claims.items() if truth.get(name, object()) == value)
    found = sum(1 for name, value in truth.items() if claims.get(name, object()) == value)
    precision = right / len(claims) if claims else 1.0
    recall = found / len(truth) if truth else 1.0
    return precision, recall


# -- canned answers ----------------------------------------------------------------------------------

_NEUTRAL = [  # varied enough that two answers to one prompt share few sentences, as two samples do
    "It depends on the situation and on what you already have at hand.",
    "The first thing to look at is the main goal you want to reach.",
    "A careful start saves time later, because mistakes are harder to undo.",
    "Most people find that a simple routine works better than a complicated plan.",
    "It also helps to compare two or three options before deciding.",
    "Small details matter, for example the order in which the steps are done.",
    "Experts usually recommend checking the result once it is finished.",
    "If something goes wrong, going back one step is often enough.",
    "Costs vary a lot, so a quick estimate at the beginning is useful.",
    "Practice makes the whole process faster and more reliable over time.",
    "Reading a short guide or asking someone experienced can clarify the rest.",
    "Finally, keep notes so that the next attempt is easier.",
    "Safety comes first, especially when tools or heat are involved.",
    "Timing plays a role as well, since some steps need to rest.",
    "Begin with the easiest part to build momentum.",
    "Weather, season and location can change the outcome noticeably.",
    "Good preparation usually matters more than expensive equipment.",
    "Ask a friend to look over your work before you finish.",
    "Write down what worked so you can repeat it next week.",
    "Patience pays off; rushing tends to create new problems.",
    "Local libraries and community centres often run free classes on this.",
    "Try a small test first, then scale up once you are confident.",
    "Breaking the job into short sessions keeps energy levels high.",
    "Many beginners underestimate how long the cleanup takes.",
    "A checklist on paper keeps the important steps from slipping.",
    "Online forums collect plenty of tips from people in the same position.",
    "Quality ingredients or materials make a visible difference.",
    "Rest and sleep affect how well any of this goes.",
    "Budget some extra money for surprises along the way.",
    "Keep the instructions nearby while you work.",
    "Different regions follow slightly different customs and rules.",
    "Measuring twice avoids most of the common errors.",
    "Children and pets should stay at a safe distance.",
    "Consistency over several weeks beats one big effort.",
    "Feedback from others shows blind spots quickly.",
    "When in doubt, the manufacturer's manual has the final word.",
]
_CODE = "```python\ndef solve(items):\n    return sorted(items)\n```"


def _prose(rng: random.Random, n: int) -> str:
    return " ".join(rng.sample(_NEUTRAL, n))


def canned_answer(prompt: str, rng: random.Random) -> str:
    """One answer to ``prompt`` in a style drawn at random, as an un-personalized model varies."""
    topic = prompt.rstrip("?.! ")
    lead = f"Here is an answer to your question: {topic}."
    styles = {
        "long": lambda: f"{lead} {_prose(rng, 11)}",
        "medium": lambda: f"{lead} {_prose(rng, 5)}",
        "short": lambda: f"{lead} {_prose(rng, 1)}",
        "bullets": lambda: "Here are the key points:\n" + "\n".join(
            f"- {s}" for s in rng.sample(_NEUTRAL, rng.choice((3, 5, 9)))),
        "heading": lambda: f"Overview:\n{lead} {_prose(rng, 3)}\n\nDetails:\n{_prose(rng, 3)}",
        "casual": lambda: (f"Hey! So, {topic.lower()}? It's pretty simple, you'll see. {_prose(rng, 3)} "
                           "That's it, cool stuff!"),
        "formal": lambda: (f"Regarding {topic.lower()}: {_prose(rng, 2)} Furthermore, {_prose(rng, 2).lower()} "
                           f"Therefore, {_prose(rng, 1).lower()}"),
        "tldr": lambda: f"TL;DR: {_prose(rng, 1)}\n\n{lead} {_prose(rng, 4)}",
    }
    if is_coding_prompt(prompt):
        styles["code_later"] = lambda: f"{lead} {_prose(rng, 2)}\n\n{_CODE}\n\n{_prose(rng, 1)}"
        styles["code_first"] = lambda: f"{_CODE}\n\n{lead} {_prose(rng, 2)}"
    return styles[rng.choice(sorted(styles))]()


class CannedChat:
    """The assistant ``simulate`` talks to, answering from canned styles and storing what the real one does."""

    def __init__(self, store: Store, user: str, rng: random.Random):
        self.store, self.user, self.rng = store, store.get_or_create_user(user), rng
        self.session_id = self.answer_id = self.prompt = None

    def start(self) -> int:
        self.session_id, self.answer_id, self.prompt = self.store.start_session(self.user.id), None, None
        return self.session_id

    def chat(self, text: str) -> SimpleNamespace:
        if not corrections(text) or self.prompt is None:  # a follow-up is answered about the same prompt
            self.prompt = text
        asked = self.store.add_message(self.session_id, "user", text, parent_id=self.answer_id)
        answer = canned_answer(self.prompt, self.rng)
        self.answer_id = self.store.add_message(self.session_id, "assistant", answer, parent_id=asked)
        return SimpleNamespace(text=answer)

    def regenerate(self) -> SimpleNamespace:
        answer = canned_answer(self.prompt, self.rng)
        self.answer_id = record_feedback(self.store, self.answer_id, "regenerate", text=answer)
        return SimpleNamespace(text=answer)

    def good(self) -> None:
        record_feedback(self.store, self.answer_id, "thumbs_up")

    def bad(self) -> None:
        record_feedback(self.store, self.answer_id, "thumbs_down")

    def edit(self, text: str) -> None:
        record_feedback(self.store, self.answer_id, "edit", text=text)


def heldin_prompts(persona: Persona) -> list[str]:
    """The persona's held-in prompts (its categories only), in file order."""
    return [r["prompt"] for r in load_prompts() if r["split"] == "heldin"
            and (persona.categories is None or r["category"] in persona.categories)]


def scripted_profile(persona: Persona, sessions: int = 5, turns: int = 6, seed: int = 0) -> Profile:
    """The profile after ``sessions`` scripted sessions of ``turns`` turns each (no model; seeded)."""
    prompts = heldin_prompts(persona)
    random.Random(f"{seed}:{persona.name}:order").shuffle(prompts)
    profile = Profile()
    with tempfile.TemporaryDirectory(prefix="asls-profile-truth-") as tmp:  # never the user's own history
        store = open_store(Path(tmp) / "asls.db")
        try:
            chat = CannedChat(store, f"persona-{persona.name}", random.Random(f"{seed}:{persona.name}:answers"))
            for s in range(1, sessions + 1):
                sid = chat.start()
                chunk = [prompts[(s * turns + t) % len(prompts)] for t in range(turns)]
                simulate_session(chat, persona, chunk, s, seed)
                profile = process_session(store, chat.user.name, sid).profile
        finally:
            store.close()
    return profile
