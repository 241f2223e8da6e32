"""The benchmark behind ``asls eval``: simulated users x the paper's ablation arms, scored per session.

Protocol: for each persona x arm, a fresh user chats S sessions of T held-in prompts with
feedback by rule (``simulate``); each session ends with the assistant's profile update, pair mining and
training (blocking). Held-out prompts are answered greedily (not logged) before session 1 and after every
session, and scored for the persona (``metrics.score_heldout``). At the end, retention: perplexity of
general text with the adapter vs without, and correctness kept: each arm's assistant (its profile and
adapter) answers a fixed subset of the bundled correctness set (``correctness.py``) after the last session,
the base arm before session 1, and the arm's accuracy is reported against the base arm's. The drift
persona switches preference at session 3; we report the sessions it takes to recover.

Two time savers, both exact for greedy decoding: an arm that neither adapts nor puts the profile in the
prompt ("base") gives the same answers every session, so it is scored once and needs no chats (in quick
mode; the full run still simulates its chats for the chat edit-cost curve); and its held-out answers do not
depend on the persona, so they are generated once per prompt. With ``share_baseline`` (quick mode) the
"before session 1" scores of every arm reuse the base answers: a fresh user has no adapter and an empty
profile, so every arm *is* the base model then.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Callable

from asls_mlx.adaptation.relevance import answer_pmi, irrelevant
from asls_mlx.data_files import general_texts, load_prompts
from asls_mlx.errors import ASLSError
from asls_mlx.evaluation.correctness import MAX_TOKENS as CORRECTNESS_MAX_TOKENS
from asls_mlx.evaluation.correctness import (CATEGORIES, CorrectnessItem, accuracy_by_category,
                                             base_accuracy_kept, correctness_flips, correctness_rate,
                                             load_correctness_set)
from asls_mlx.evaluation.homes import asls_home, fresh_home
from asls_mlx.evaluation.metrics import mean, retention_ratio, score_heldout, sessions_to_recover
from asls_mlx.evaluation.parallel import default_jobs, run_parts
from asls_mlx.evaluation.profile_truth import precision_recall, profile_truth
from asls_mlx.evaluation.personas import OPEN_PERSONAS, STYLE_PERSONAS, Persona, get_persona
from asls_mlx.evaluation.results import EvalResult, Progress, to_jsonable
from asls_mlx.evaluation.simulate import FeedbackPolicy, simulate_session
from asls_mlx.profiling.quality import template_share

EXPLICIT_SOURCES = frozenset({"edit", "regenerate", "thumbs", "correction"})
# The paper's ablations (AssistantConfig fields per arm).
ARMS: dict[str, dict] = {
    "base": dict(profile_in_prompt=False, adapt=False, self_labelled=False, drift_adaptation=False),
    "profile_prompt": dict(profile_in_prompt=True, adapt=False, self_labelled=False, drift_adaptation=False),
    "adapt_no_profile": dict(profile_in_prompt=False, adapt=True, self_labelled=False, drift_adaptation=False,
                             pair_sources=EXPLICIT_SOURCES, loss="dpo"),
    "asls": dict(profile_in_prompt=True, adapt=True, self_labelled=False, drift_adaptation=True, loss="dpo"),  # the defaults
    "sft": dict(profile_in_prompt=False, adapt=True, self_labelled=False, drift_adaptation=False, loss="sft"),
}
BUILT_IN_ARMS = tuple(ARMS)  # benchmarks may add arms to ARMS in their own process
FULL_PERSONAS = STYLE_PERSONAS + OPEN_PERSONAS
# --quick: one style and one open persona, one seed; a smoke test of the whole loop, not a result.
QUICK = dict(personas=("concise", "follow_up"), arms=("base", "profile_prompt", "asls"), sessions=3, turns=4,
             heldout=12, max_tokens=96, correctness=30, seeds=(0,))
# The standard run: >= 30 held-out prompts per persona, 5 sessions, 3 seeds; None: the whole correctness set.
FULL = dict(personas=FULL_PERSONAS, arms=tuple(ARMS), sessions=5, turns=6, heldout=30, max_tokens=160,
            correctness=None, seeds=(0, 1, 2))
# The correctness subset is the same in every run and seed, so arms and runs compare on the same questions.
CORRECTNESS_SEED = "asls-correctness"

AssistantFactory = Callable[[str, str, dict], object]  # (user, arm, config kwargs) -> assistant


def persona_prompts(persona: Persona, prompts: list[dict], seed: int) -> tuple[list[str], list[str]]:
    """(held-in in a seeded order, held-out) restricted to the persona's categories. Held-out prompts come
    round-robin over the categories (file order within each), so the first N of them are as varied as the set
    (rewrite, email, classify, citation, code, ...), not the first category's."""
    ok = [r for r in prompts if persona.categories is None or r["category"] in persona.categories]
    heldin = [r["prompt"] for r in ok if r["split"] == "heldin"]
    random.Random(f"{seed}:{persona.name}:heldin").shuffle(heldin)
    by_category: dict[str, list[str]] = {}
    for r in ok:
        if r["split"] == "heldout":
            by_category.setdefault(r["category"], []).append(r["prompt"])
    queues = list(by_category.values())
    heldout = [q[i] for i in range(max(map(len, queues), default=0)) for q in queues if i < len(q)]
    return heldin, heldout


def correctness_subset(n: int | None) -> list[CorrectnessItem]:
    """``n`` items of the correctness set, a fixed seeded choice stratified by category (as even as ``n``
    allows), in file order; None or ``n`` >= the set: all of it; 0: none."""
    items = load_correctness_set()
    if n is None or n >= len(items):
        return items
    by_cat = {c: [it for it in items if it.category == c] for c in CATEGORIES}
    cats = [c for c in CATEGORIES if by_cat[c]]
    chosen: set[str] = set()
    for i, cat in enumerate(cats):
        k = min(len(by_cat[cat]), n // len(cats) + (i < n % len(cats)))
        chosen.update(it.id for it in random.Random(f"{CORRECTNESS_SEED}:{cat}").sample(by_cat[cat], k))
    return [it for it in items if it.id in chosen]


def _correctness(assistant, items: list[CorrectnessItem], base_cache: dict, static: bool) -> dict | None:
    """The arm's answers to the correctness questions, its accuracy and its accuracy kept vs the base arm
    (whose answers ``base_cache`` holds once the base arm has run; nan before)."""
    if not items:
        return None
    questions = [it.question for it in items]
    # The checker's own budget (its baseline was measured with it), the same for every arm: short answers
    # suffice, and the held-out budget would make this pass cost as much as a session's chats.
    answers = _answers(assistant, questions, base_cache if static else None, CORRECTNESS_MAX_TOKENS)
    base = [base_cache.get(q) for q in questions]
    known = all(b is not None for b in base)
    kept = base_accuracy_kept(base, answers, items) if known else float("nan")
    wrong, right = correctness_flips(items, base, answers) if known else (None, None)
    return {"n": len(items), "ids": [it.id for it in items], "accuracy": correctness_rate(items, answers),
            "by_category": accuracy_by_category(items, answers), "kept_vs_base": kept, "answers": answers,
            "turned_wrong": wrong, "turned_right": right}


def _retention(assistant, texts: list[str], adapt: bool) -> dict:
    """General-text perplexity with the adapter vs without (no adapter: the base model itself, ratio 1)."""
    if not adapt:
        return {"ppl": None, "base_ppl": None, "ratio": 1.0}
    ppl = assistant.perplexity(texts, adapter=True)
    base_ppl = assistant.perplexity(texts, adapter=False)
    return {"ppl": ppl, "base_ppl": base_ppl, "ratio": retention_ratio(ppl, base_ppl)}


def real_assistant_factory(model=None, progress: Progress | None = None, **common) -> AssistantFactory:
    """Build ``asls_mlx.Assistant`` users sharing one loaded model (loaded on first use; the
    users run one at a time and each activates its own adapter). ``common``: shared AssistantConfig fields."""
    from asls_mlx import Assistant, AssistantConfig
    from asls_mlx.engine import ChatEngine, load_model
    from asls_mlx.engine.models import resolve_model

    shared: dict = {}

    def make(user: str, arm: str, arm_kwargs: dict):
        if "engine" not in shared:
            quiet = progress or (lambda msg: None)
            loaded, tokenizer, model_id = load_model(str(resolve_model(model, progress=quiet)), progress=quiet)
            shared["engine"] = ChatEngine(loaded, tokenizer, model_id)
        config = AssistantConfig(**{**common, **arm_kwargs})
        return Assistant(user=user, model=str(model) if model else None, config=config, engine=shared["engine"])

    judged: dict[tuple[str, str], float] = {}  # the base model judges: a (prompt, answer) never changes its PMI

    def relevance(prompts: list[str], answers: list[str]) -> list[float]:
        """The base model's PMI per answer token (adapter off) on the shared model; called after ``make``.
        Answers judged before (the base arm's, every session) are not judged again."""
        todo = list(dict.fromkeys((q, a) for q, a in zip(prompts, answers) if (q, a) not in judged))
        if todo:
            engine = shared["engine"]
            pmi = answer_pmi(engine.model, engine.tokenizer, [q for q, _ in todo], [a for _, a in todo],
                             AssistantConfig().system_prompt)
            judged.update(zip(todo, pmi))
        return [judged[(q, a)] for q, a in zip(prompts, answers)]

    make.relevance = relevance
    return make


def _training_record(summary) -> dict | None:
    """What the session's adapter update decided and why (the real ``UpdateReport``'s fields)."""
    if summary is None:
        return None
    report = summary.training
    record = {"pairs_mined": to_jsonable(summary.pairs_mined)}
    for key in ("committed", "version", "reason", "steps", "before", "after", "retention_ratio", "profile_fit", "timings"):
        record[key] = None if report is None else to_jsonable(getattr(report, key))
    return record


def _answers(assistant, prompts: list[str], cache: dict | None, max_tokens: int | None = None) -> list[str]:
    """Greedy, unlogged answers; batched (``answer_many``) when the assistant has it: much faster on CPU.
    max_tokens: a budget other than the assistant's own (needs ``answer_many``)."""
    todo = [p for p in prompts if cache is None or p not in cache]
    if todo:
        many = getattr(assistant, "answer_many", None)
        if many and max_tokens is not None:
            fresh = many(todo, max_tokens=max_tokens)
        else:
            fresh = many(todo) if many else [assistant.answer(p, record=False) for p in todo]
        got = dict(zip(todo, fresh))
        if cache is not None:
            cache.update(got)
    else:
        got = {}
    return [got[p] if p in got else cache[p] for p in prompts]


def _chat_session(assistant, persona: Persona, heldin: list[str], s: int, cfg: dict,
                  adapt: bool) -> tuple[dict, dict | None, int]:
    """Session ``s``: the simulated user chats, the session ends with a blocking update.

    Returns (the chat's record, the update's record or None when the arm does not adapt, generations)."""
    turn_prompts = [heldin[((s - 1) * cfg["turns"] + t) % len(heldin)] for t in range(cfg["turns"])]
    judge = cfg.get("relevance")  # the user reacts to an answer about something else (simulate.py)
    on_topic = (lambda q, a: not irrelevant(judge([q], [a])[0])) if judge else None
    turns = simulate_session(assistant, persona, turn_prompts, s, cfg["seed"], cfg["policy"], on_topic)
    summary = assistant.end_session(train="wait")
    training = _training_record(summary) if adapt else None
    actions: dict[str, int] = {}
    for t in turns:
        actions[t.action] = actions.get(t.action, 0) + 1
    chat = {"edit_cost": mean(t.edit_cost for t in turns),
            "satisfaction": mean(t.satisfaction for t in turns),
            "final_satisfaction": mean(t.final_satisfaction for t in turns),
            "actions": actions, "turns": [t.as_dict() for t in turns]}
    return chat, training, sum(t.generations for t in turns)


def user_arm_names(arms) -> dict[str, str]:
    """The arm name in each simulated user's name: a recipe arm ``asls+<settings>`` is named ``asls`` (unless
    ``asls`` runs in the same home), because the product splits a user's pairs into train and validation by the
    user's name: a recipe compared with the default must see the same split, or the split is the difference."""
    family = {a: a.split("+")[0] for a in arms}
    taken = [family[a] for a in arms]
    return {a: f if taken.count(f) == 1 else a for a, f in family.items()}


def _run_one(make: AssistantFactory, persona: Persona, arm: str, cfg: dict, prompts: list[dict],
             texts: list[str], base_cache: dict, progress: Progress) -> dict:
    """One persona x arm: fresh user, S sessions, held-out scores after each; returns the run record."""
    t0 = time.perf_counter()
    kwargs = ARMS[arm]
    static = not kwargs["adapt"] and not kwargs["profile_in_prompt"]
    user = f"eval-{persona.name}-{cfg.get('user_arm', {}).get(arm, arm)}-s{cfg['seed']}"
    heldin, heldout = persona_prompts(persona, prompts, cfg["seed"])
    heldout = heldout[: cfg["heldout"]]
    assistant = make(user, arm, dict(kwargs, seed=cfg["seed"]))
    gens = 0
    sessions: list[dict] = []
    try:
        # Session 0: before any chat, every arm is the base model (see module doc).
        correctness = _correctness(assistant, cfg["correctness_items"], base_cache, True) if static else None
        cache = base_cache if (static or cfg["share_baseline"]) else None
        n_cached = sum(p in base_cache for p in heldout) if cache is not None else 0
        answers = _answers(assistant, heldout, cache)
        gens += len(heldout) - n_cached
        sessions.append({"session": 0, "heldout": _score(persona, heldout, answers, 0, cfg, base_cache),
                         "answers": answers, "chat": None, "training": None})
        for s in range(1, cfg["sessions"] + 1):
            ts = time.perf_counter()
            chat = training = None
            if not (static and cfg["quick"]):
                chat, training, n = _chat_session(assistant, persona, heldin, s, cfg, kwargs["adapt"])
                gens += n
            if static:
                answers = sessions[0]["answers"]  # greedy, no adapter, no profile: unchanged
            else:
                answers = _answers(assistant, heldout, None)
                gens += len(heldout)
            score = _score(persona, heldout, answers, s, cfg, base_cache)
            sessions.append({"session": s, "heldout": score, "answers": answers, "chat": chat,
                             "training": training, "seconds": time.perf_counter() - ts})
            progress(f"  {persona.name} x {arm} (seed {cfg['seed']}): session {s}/{cfg['sessions']}: held-out "
                     f"satisfaction {score['satisfaction']:.2f}, quality {score['quality_pass']:.2f}, "
                     f"{score['words']:.0f} words ({time.perf_counter() - ts:.0f} s)")
        if not static:  # after the last session, with the arm's profile and adapter
            correctness = _correctness(assistant, cfg["correctness_items"], base_cache, False)
        retention = _retention(assistant, texts, kwargs["adapt"])
        profile = _profile_truth(assistant, persona, cfg["sessions"])
    finally:
        close = getattr(assistant, "close", None)
        if close:
            close()
    record = {"persona": persona.name, "arm": arm, "seed": cfg["seed"], "user": user, "heldout_prompts": heldout,
              "sessions": sessions, "retention": retention, "correctness": correctness, "profile": profile,
              "generations": gens,
              "seconds": time.perf_counter() - t0, "recover": None}
    if persona.drift_at and persona.drift_at <= cfg["sessions"]:
        record["recover"] = sessions_to_recover([x["heldout"]["satisfaction"] for x in sessions], persona.drift_at)
    return record


def _score(persona: Persona, prompts: list[str], answers: list[str], session: int, cfg: dict, base_cache: dict) -> dict:
    """``heldout_record`` with the relevance check (when the factory has one) and the base model's answers."""
    judge = cfg.get("relevance")
    pmi = judge(prompts, answers) if judge else None
    return heldout_record(persona, prompts, answers, session, pmi, [base_cache.get(p) for p in prompts])


def heldout_record(persona: Persona, prompts: list[str], answers: list[str], session: int,
                   pmi: list[float] | None, base: list[str | None]) -> dict:
    """A session's held-out record: ``score_heldout`` with the answers the relevance check flags (``pmi``, when
    judged) and the template rule against the base model's answers to the same prompts (when all are known)."""
    base_share = template_share(base) if all(b is not None for b in base) else None
    flags = [irrelevant(x) for x in pmi] if pmi is not None else None
    score = score_heldout(persona, prompts, answers, session, irrelevant=flags, base_template_share=base_share)
    return score.as_dict() | {"pmi": pmi}


def _profile_truth(assistant, persona: Persona, session: int) -> dict | None:
    """The profile the arm learnt, against the persona's hidden truth: its claims, precision and recall (None for an
    assistant without a profile)."""
    profile = getattr(assistant, "profile", None)
    if profile is None or not hasattr(profile, "claims"):
        return None
    precision, recall = precision_recall(profile, persona, session)
    return {"claims": profile.claims(), "truth": profile_truth(persona, session), "precision": precision, "recall": recall}


def run_eval(arms=None, personas=None, sessions: int | None = None, turns: int | None = None,
             heldout: int | None = None, quick: bool = False, model=None, seed: int | None = None,
             out_dir: Path | None = None, progress: Progress | None = None, max_tokens: int | None = None,
             train_budget_s: float | None = None, policy: FeedbackPolicy = FeedbackPolicy(),
             share_baseline: bool | None = None, assistant_factory: AssistantFactory | None = None,
             temperature: float = 0.0, correctness: int | None | str = "default",
             seeds: list[int] | None = None, jobs: int | None = 1) -> EvalResult:
    """Run the benchmark; None arguments take the quick or full defaults (``QUICK`` / ``FULL``).

    assistant_factory: (user, arm, AssistantConfig kwargs) -> assistant; default: the real Assistant on
        ``model`` (None: the embedded default). Tests pass a fake; a factory with a ``relevance(prompts,
        answers) -> PMI per token`` attribute judges relevance too (``adaptation.relevance``).
    seeds: every persona x arm runs once per seed (other held-in order, feedback draws and sampling);
        default: ``seed`` alone if given, else the quick/full default (1 / 3 seeds).
    correctness: how many correctness-set questions each arm answers ("default": 30 quick, all full;
        None: all; 0: skip).
    train_budget_s: the wall-clock safety net of each update's training (None: the assistant's default,
        ``AssistantConfig.train_time_limit_s``); the steps are decided by the data, whatever the load.
    out_dir: where results.json / results.md / learning_curves.png go; simulated users live in
        ``out_dir/home`` (ASLS_HOME, wiped at start). None: write nothing, use the current ASLS_HOME.
    jobs: persona x seed parts run at once, each in its own process (``evaluation.parallel``; None: one per core
        that memory allows); needs ``out_dir`` and the real assistant, else the parts run here one by one.
    """
    defaults = QUICK if quick else FULL
    seeds = list(seeds or ([seed] if seed is not None else defaults["seeds"]))
    cfg = _eval_config(defaults, arms, personas, sessions, turns, heldout, quick, model, seeds, max_tokens,
                       train_budget_s, share_baseline, temperature, policy, correctness)
    progress = progress or (lambda msg: None)
    parts = [(p, s) for s in seeds for p in cfg["personas"]]
    jobs = default_jobs(len(parts)) if jobs is None else jobs
    if jobs > 1 and len(parts) > 1 and out_dir is not None and assistant_factory is None and set(cfg["arms"]) <= set(
            BUILT_IN_ARMS):  # a part's process knows the built-in arms only
        same = dict(arms=arms, sessions=sessions, turns=turns, heldout=heldout, quick=quick, max_tokens=max_tokens,
                    model=str(model) if model else None, train_budget_s=train_budget_s, policy=policy.__dict__,
                    share_baseline=share_baseline, temperature=temperature, correctness=correctness)
        return run_parts(same, parts, min(jobs, len(parts)), out_dir, progress)
    home = fresh_home(out_dir)
    t0 = time.perf_counter()
    prompts, texts = load_prompts(), general_texts()
    recorded = {k: v for k, v in cfg.items() if k not in ("policy", "correctness_items")}
    result = EvalResult(config=recorded | {"policy": policy.__dict__})
    with asls_home(home):
        make = assistant_factory or real_assistant_factory(
            model, progress, max_tokens=cfg["max_tokens"], temperature=temperature,
            **({} if cfg["train_budget_s"] is None else {"train_time_limit_s": cfg["train_budget_s"]}))
        cfg["relevance"] = getattr(make, "relevance", None)
        base_cache: dict[str, str] = {}  # greedy base answers depend on the prompt only: shared by seeds
        jobs = [(s, get_persona(p), a) for s in seeds for p in cfg["personas"] for a in cfg["arms"]]
        cfg["user_arm"] = user_arm_names(cfg["arms"])
        for i, (s, persona, arm) in enumerate(jobs, 1):
            progress(f"[{i}/{len(jobs)}] {persona.name} x {arm}, seed {s}")
            result.runs.append(_run_one(make, persona, arm, dict(cfg, seed=s), prompts, texts, base_cache, progress))
            result.seconds = time.perf_counter() - t0
            if out_dir is not None:
                result.save(out_dir)  # partial results survive an interrupted run
    result.seconds = time.perf_counter() - t0
    if out_dir is not None:
        for path in result.save(out_dir, progress):
            progress(f"wrote {path}")
    return result


def _eval_config(defaults, arms, personas, sessions, turns, heldout, quick, model, seeds, max_tokens, train_budget_s,
                 share_baseline, temperature, policy, correctness) -> dict:
    """``run_eval``'s arguments with the quick/full defaults filled in, checked."""
    arms = list(arms or defaults["arms"])
    bad = [a for a in arms if a not in ARMS]
    if bad:
        raise ASLSError(f"unknown arm(s) {', '.join(bad)}; choose from: {', '.join(ARMS)}")
    personas = list(personas or defaults["personas"])
    for name in personas:
        get_persona(name)  # an unknown name fails here, before any model is loaded
    if "base" not in arms:
        arms.insert(0, "base")  # every delta is against base; it is cheap (one greedy pass)
    cfg = {
        "quick": quick, "arms": arms, "personas": personas, "seeds": seeds, "seed": seeds[0],
        "model": str(model) if model else None,
        "sessions": sessions or defaults["sessions"], "turns": turns or defaults["turns"],
        "heldout": heldout or defaults["heldout"], "max_tokens": max_tokens or defaults["max_tokens"],
        # the wall-clock safety net of each update (None: the assistant's own); the steps depend on the data only
        "train_budget_s": train_budget_s,
        "share_baseline": quick if share_baseline is None else share_baseline, "temperature": temperature,
        "policy": policy, "correctness": defaults["correctness"] if correctness == "default" else correctness,
    }
    cfg["correctness_items"] = correctness_subset(cfg["correctness"])
    return cfg


def main_eval(quick: bool = False, out: Path | None = None, arms=None, personas=None, model=None,
              progress: Progress | None = None, **kwargs) -> EvalResult:
    """Entry point for ``asls eval [--quick] [--out DIR] [--arms ...] [--personas ...] [--jobs N]``."""
    out = Path(out) if out is not None else Path("asls-eval")
    return run_eval(arms=arms, personas=personas, quick=quick, model=model, out_dir=out, progress=progress,
                    **kwargs)
