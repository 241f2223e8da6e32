"""The learning pipeline: from "these sessions ended" to "this adapter version is active, or this is why not".

    profile update -> behavioural pairs (once) -> self-labelled pairs -> training -> gate -> commit

:func:`learn_from_sessions` runs all of it. The chat process runs it when the user waits for training
(``end_session(train="wait")``, ``asls train``); the background worker (:mod:`asls_mlx.background`) runs
it in its own process with its own copy of the model, without an :class:`~asls_mlx.assistant.Assistant`.
:func:`process_ended_sessions` is its first step alone: ending a session runs it at once, so the profile
is up to date before any training starts.
"""

from __future__ import annotations

import re
import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Iterator

from asls_mlx.adaptation.anchors import anchor_texts, cached_base_answers, interleave
from asls_mlx.adaptation.base_cache import BaseCache, base_fingerprint
from asls_mlx.adaptation.config import TASK_ANSWER_TOKENS
from asls_mlx.adaptation.trainer import Progress
from asls_mlx.adaptation.gate import GATE_TEMPLATE_MARGIN, GateChecks, gate_prompts
from asls_mlx.adaptation.gate_memory import FILE_NAME as GATE_ANSWERS
from asls_mlx.adaptation.gate_memory import GateMemory, weights_name
from asls_mlx.adaptation.relevance import answer_pmi
from asls_mlx.adaptation.update import UpdateReport, UpdateTarget, activate_version, update_adapter
from asls_mlx.adaptation.versions import AdapterRepo
from asls_mlx.config import AssistantConfig
from asls_mlx.correctness import is_correct, load_gate_probes
from asls_mlx.data_files import general_texts, task_anchors, task_probes
from asls_mlx.engine import ChatEngine, SamplingOptions
from asls_mlx.engine.models import weights_dir
from asls_mlx.engine.sampling import BatchSampler, greedy_answers, single_turn
from asls_mlx.errors import ASLSError
from asls_mlx.locks import FileLock
from asls_mlx.paths import private_dir
from asls_mlx.profiling import Profile, load_profile, mine_self_labelled_pairs, process_session, quality_issues
from asls_mlx.profiling import score as score_answer
from asls_mlx.profiling.mining import LENGTH_PAIRS
from asls_mlx.profiling.quality import template_collapse
from asls_mlx.store import Store, User

# the commit gate's answers: greedy, short (loops and refusals show early), the chat's repetition penalty
GATE_OPTIONS = SamplingOptions(max_tokens=64, temperature=0.0)


@dataclass
class Learner:
    """What the pipeline works on: one user's history and adapter folders, a loaded model holding the
    user's active adapter (see :func:`activate_active_adapter`), and the config."""

    store: Store
    user: User
    engine: ChatEngine
    config: AssistantConfig

    @property
    def repo(self) -> AdapterRepo:
        return AdapterRepo(user_dir(self.store, self.user) / "adapters")

    @property
    def profile(self) -> Profile:
        return load_profile(self.store, self.user)


@dataclass
class EndedSessions:
    """What the profiling layer made of the sessions that ended."""

    session_ids: list[int] = field(default_factory=list)  # the sessions processed now
    pairs_mined: int = 0  # behavioural pairs (edits, regenerations, thumbs, corrections)


@dataclass
class SessionUpdate:
    """What :func:`learn_from_sessions` did: pairs mined beyond the behavioural ones, and the update."""

    self_labelled_pairs: int
    report: UpdateReport


def user_dir(store: Store, user: User) -> Path:
    """The user's private directory beside the history: adapters, locks, the trainer's progress and log."""
    return private_dir(_user_path(store, user))


def _user_path(store: Store, user: User) -> Path:
    return store.path.parent / "users" / str(user.id)


class TrainingBusy(ASLSError):
    """Another process is already updating this user's adapter."""


@contextmanager
def training_lock(store: Store, user: User) -> Iterator[None]:
    """Held while one of the user's adapter updates runs (in this process or the background worker)."""
    lock = FileLock(user_dir(store, user) / "train.lock")
    if not lock.acquire():
        raise TrainingBusy("training is already running for this user (background); wait for it or cancel it")
    try:
        yield
    finally:
        lock.release()


def base_model_cache(model_id: str) -> BaseCache:
    """Where values of the base model alone (retention targets, base perplexity, fast-path checks) are
    kept between background updates: beside the converted models, one directory per model (no user data)."""
    return BaseCache(weights_dir() / ".base-cache" / re.sub(r"[^A-Za-z0-9._-]", "_", model_id))


def process_ended_sessions(store: Store, user: User, seed: int, current: int | None = None,
                           length_pairs: bool = LENGTH_PAIRS) -> EndedSessions:
    """Profile update and behavioural pairs for every ended session not processed yet (all but ``current``).

    Idempotent: a processed session is never mined again, so the pipeline may run this as often as it likes.
    """
    ended = EndedSessions()
    for s in store.sessions(user.id):
        if not s.processed and s.id != current:
            ended.pairs_mined += len(process_session(store, user, s.id, generate=None, seed=seed,
                                                     length_pairs=length_pairs).pairs)
            ended.session_ids.append(s.id)
    return ended


def activate_active_adapter(engine: ChatEngine, store: Store, user: User, repo: AdapterRepo) -> tuple[int | None, str | None]:
    """Put the store's active adapter of ``user`` into the loaded model (the store is the authority).

    Returns (the version now loaded, a notice when it could not be used). A damaged adapter, or one trained
    for another base model, falls back to the base model with a notice instead of an error.
    """
    active = store.active_adapter(user.id)
    wanted, notice = (active.version if active else None), None
    if active is not None and active.base_model != engine.model_id:
        notice = f"adapter v{wanted} was trained for {active.base_model}, not {engine.model_id}: using the base model"
        wanted = None
    try:
        activate_version(engine.model, repo, wanted)
    except ASLSError as e:
        notice = f"adapter v{wanted} cannot be used ({e}); using the base model"
        activate_version(engine.model, repo, None)
        wanted = None
    engine.reset_cache()  # cached keys/values came from the old weights
    return wanted, notice


def recover(store: Store, user: User, repo: AdapterRepo) -> None:
    """Repair what a killed trainer left behind. Call while holding the user's training lock:
    runs left 'running' are marked 'interrupted', and version directories no store row points to
    (killed between writing the files and recording them) are deleted, so forget can reach them."""
    store.close_interrupted_runs(user.id)
    known = {v.version for v in store.adapter_versions(user.id)}
    for info in repo.list():
        if info.version not in known:
            shutil.rmtree(repo.path(info.version), ignore_errors=True)


def gate_probes(tasks: bool = False) -> dict[str, Callable[[str], bool]]:
    """The commit gate's probe questions (``asls_mlx.correctness.load_gate_probes``), each with its checker, and with
    ``tasks`` the task probes (``data_files.task_probes``): those have no answer to check, the gate's quality
    checks (copied input, too few items, no label, content dropped, ...) judge them."""
    probes = {item.question: partial(is_correct, item) for item in load_gate_probes()}
    return probes | ({prompt: _any_answer for prompt in task_probes()} if tasks else {})


def _any_answer(answer: str) -> bool:
    return True


def _mines_self_labelled(config: AssistantConfig) -> bool:
    """Whether an update samples and ranks answers for self-labelled pairs (off by default)."""
    return config.adapt and config.self_labelled


def mine_self_labelled(learner: Learner, session_ids: list[int]) -> tuple[int, dict[str, str] | None]:
    """Self-supervised pairs: sample answers to the sessions' prompts and let the profile rank them.

    Returns (pairs added, the active adapter's greedy answers to the commit gate's prompts). The gate's
    "before" answers come from the same weights as the samples, so they are decoded in the same batch.
    """
    c = learner.config
    if not _mines_self_labelled(c):
        return 0, None
    gate = gate_prompts(learner.store, learner.user.id, c.learning_config())
    if learner.store.active_adapter(learner.user.id) is None:  # the old weights are the base model's: the probes too
        gate += [q for q in gate_probes(c.learning.task_probes) if q not in gate]
    profile = learner.profile
    system = c.system_text(profile)
    sampler = BatchSampler(learner.engine, c.system_prompt, c.sampling(temperature=c.self_labelled_temperature,
                                                                     max_tokens=c.self_labelled_max_tokens),
                           also=[(single_turn(system, q), GATE_OPTIONS) for q in gate])
    added = 0
    for sid in session_ids:
        added += len(mine_self_labelled_pairs(learner.store, learner.user, sid, sampler, k=c.self_labelled_k,
                                              seed=c.seed, profile=profile, max_prompts=c.self_labelled_prompts))
    answers = dict(zip(gate, sampler.also_answers)) if sampler.also_answers is not None else None
    return added, answers


def train_and_gate(learner: Learner, session_ids: list[int] = (), answers_before: dict[str, str] | None = None,
                   progress: Callable[[Progress], None] | None = None,
                   should_stop: Callable[[], bool] | None = None, pause: Callable[[], float] | None = None) -> UpdateReport:
    """One gated adapter update on the learner's model: train on the new pairs, validate, commit or keep the old one.

    The model's weights change in place: on return it holds the active adapter (new or kept). ``pause``: the
    hook that gives the CPU to an answer between steps and phases (``adaptation.update.update_adapter``).
    The gate's answers and their relevance scores are kept for the next update (``adaptation.gate_memory``).
    """
    engine, profile, config = learner.engine, learner.profile, learner.config
    system = config.system_text(profile)
    try:
        target = UpdateTarget(learner.store, learner.user.id, engine.model, engine.tokenizer, learner.repo,
                              engine.model_id, base_model_cache(engine.model_id))
        memory = gate_memory(learner)
        old = _active_weights(learner)
        texts = general_texts()

        def gate_answers(prompts: list[str], loras: list | None = None) -> list[str]:
            return greedy_answers(engine, prompts, system, options=GATE_OPTIONS, loras=loras)

        checks = GateChecks(
            general_texts=texts, training_texts=training_texts(engine, config, texts, target.base_cache),
            answers_before={**memory.answers(system, old), **(answers_before or {})},
            answers_base=memory.answers(system, "base"),
            quality_issues=gate_quality_issues(engine.tokenizer),
            template_collapse=lambda after, before: template_collapse(after, before, margin=GATE_TEMPLATE_MARGIN),
            relevance=memory.remembered(lambda prompts, answers: answer_pmi(engine.model, engine.tokenizer, prompts,
                                                                            answers, config.system_prompt)),
            answer_fn=gate_answers, answers_with=gate_answers,
            profile_score=lambda prompt, answer: score_answer(profile, prompt, answer),
            probes=gate_probes(config.learning.task_probes),
            base_probe_answers=probe_answer_cache(target.base_cache, engine.model, system, config),
        )
        report = update_adapter(target, config.learning_config(), checks, profile.drift, list(session_ids),
                                progress, should_stop, pause)
        for weights, answers in ((old, report.answers.get("old")), ("base", report.answers.get("base")),
                                 (_active_weights(learner), report.answers.get("new"))):
            memory.keep(system, weights, answers or {})
        memory.keep_only({p.prompt for p in learner.store.pairs(learner.user.id, split=None)} | set(checks.probes))
        memory.save()
        return report
    finally:
        engine.reset_cache()


def _active_weights(learner: Learner) -> str:
    active = learner.store.active_adapter(learner.user.id)
    return weights_name(active.version, active.created_at) if active else "base"


def gate_memory(learner: Learner) -> GateMemory:
    """The user's kept gate answers for this base model, decoding backend (its float sums may differ), gate options and
    relevance prompt."""
    engine = learner.engine
    setting = (f"{base_fingerprint(engine.model).hex()}|{type(engine.backend).__name__}|{GATE_OPTIONS}|"
               f"{learner.config.system_prompt}")
    return GateMemory(user_dir(learner.store, learner.user) / GATE_ANSWERS, setting)


def forget_gate_answers(store: Store, user: User) -> None:
    """Delete the user's kept gate answers: they quote the user's prompts, and a forgotten session's go with it."""
    (_user_path(store, user) / GATE_ANSWERS).unlink(missing_ok=True)  # not user_dir: a forget creates no folder


def probe_answer_cache(base_cache: BaseCache | None, model, system: str,
                       config: AssistantConfig) -> Callable[[list[str], Callable], list[str]] | None:
    """The gate's base-model answers to its probes, kept in the base cache — only when the system prompt carries no
    profile: the base cache is shared by the machine's users and holds no user data (a profile's text, or answers
    shaped by it, are the user's and go when the user does)."""
    if system != config.system_prompt:
        return None
    return partial(cached_base_answers, base_cache, "gate-probe-answers", model, system, GATE_OPTIONS.max_tokens)


def training_texts(engine: ChatEngine, config: AssistantConfig, general: list[str],
                   base_cache: BaseCache | None = None) -> list[str] | None:
    """The retention term's texts when they are more than ``general``: those interleaved with the base model's
    answers to the anchor questions (``answer_anchors``) and to the anchor tasks (``task_anchors``); None: the
    general texts alone."""
    learning, system = config.learning, config.system_prompt
    anchors = anchor_texts(engine, system, base_cache) if learning.answer_anchors else []
    if learning.task_anchors:
        anchors += anchor_texts(engine, system, base_cache, task_anchors(), TASK_ANSWER_TOKENS)
    return interleave(general, anchors) if anchors else None


CUT_OFF_ISSUES = ("too_few_items", "deferred")


def gate_quality_issues(tokenizer, budget: int = GATE_OPTIONS.max_tokens) -> Callable[[str, str], list[str]]:
    """``quality_issues`` for the gate's answers, which stop at ``budget`` tokens: an answer that used them all was
    cut off, so ``too_few_items`` (a list answered *to the end* with fewer items) and ``deferred`` (a lead-in with
    nothing after it) do not apply to it. The word count that tells the chat's answers ended (``content.ended``)
    assumes a 96-token budget; a markdown list of three items filled the gate's 64 tokens in 43 words, and its
    cut-off third item was no lesson learnt."""
    def issues(prompt: str, answer: str) -> list[str]:
        found = quality_issues(prompt, answer)
        if set(found) & set(CUT_OFF_ISSUES) and len(tokenizer.encode(answer)) >= budget - 2:  # re-encoding may differ
            found = [i for i in found if i not in CUT_OFF_ISSUES]
        return found
    return issues


def learn_from_sessions(learner: Learner, session_ids: list[int] = (),
                        progress: Callable[[Progress], None] | None = None,
                        should_stop: Callable[[], bool] | None = None,
                        on_phase: Callable[[str], None] | None = None,
                        pause: Callable[[], float] | None = None) -> SessionUpdate:
    """The whole pipeline for sessions that ended: profile update and behavioural pairs (skipped for
    sessions already processed), self-labelled pairs, training, gate, commit.

    Callers hold :func:`training_lock`, and ``learner.engine`` holds the user's active adapter. ``on_phase`` hears
    "mining self-labelled pairs" (when they are on) and "training".
    ``pause()`` blocks while the update must give the CPU to an answer (the background worker's
    ``yielding.YieldGate.wait``); it runs between the phases and between the optimizer steps.
    """
    note = on_phase or (lambda _msg: None)
    pause = pause or (lambda: 0.0)
    recover(learner.store, learner.user, learner.repo)
    for sid in session_ids:
        if not learner.store.session(sid).processed:
            process_session(learner.store, learner.user, sid, generate=None, seed=learner.config.seed,
                            length_pairs=learner.config.length_pairs)
    added, answers_before = 0, None
    if session_ids and _mines_self_labelled(learner.config):  # no "mining" phase to show when nothing is mined
        pause()
        note("mining self-labelled pairs")
        added, answers_before = mine_self_labelled(learner, list(session_ids))
    pause()
    note("training")
    report = train_and_gate(learner, session_ids, answers_before, progress, should_stop, pause)
    return SessionUpdate(added, report)


__all__ = [
    "EndedSessions", "GATE_OPTIONS", "Learner", "SessionUpdate", "TrainingBusy", "activate_active_adapter", "base_model_cache",
    "gate_quality_issues", "learn_from_sessions", "mine_self_labelled", "process_ended_sessions", "recover",
    "train_and_gate", "training_lock", "training_texts", "user_dir",
]
