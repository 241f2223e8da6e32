"""The Python API: one object that ties the store, profiling, adaptation and the engine together.

    >>> from asls_mlx import Assistant
    >>> with Assistant(user="sam") as a:                      # doctest: +SKIP
    ...     print(a.chat("What is the capital of France?").text)
    ...     a.chat("shorter please")
    ...     a.good()
    The capital of France is Paris.

Leaving the ``with`` block ends the session: the profile is updated, pairs are mined and the adapter
is trained (in the background by default) and swapped into the next answer. What happens after a
session is the learning pipeline (:mod:`asls_mlx.session_update`); this module chats, records
feedback and hot-swaps adapters.
"""

from __future__ import annotations

import os
import weakref
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterator

from asls_mlx.adaptation.update import UpdateReport
from asls_mlx.adaptation.versions import AdapterRepo
from asls_mlx.background import BackgroundTrainer, BackgroundTraining
from asls_mlx.config import TRAIN_MODES, AssistantConfig
from asls_mlx.engine import ChatEngine, GenerationChunk, SamplingOptions, load_model
from asls_mlx.engine.models import resolve_model
from asls_mlx.engine.sampling import greedy_answers, single_turn
from asls_mlx.errors import ASLSError
from asls_mlx.locks import FileLock
from asls_mlx.profiling import Profile, live_profile, load_profile, record_feedback
from asls_mlx.api_values import (
    Reply, SessionSummary, TrainingProgress, assistant_markdown, check_max_tokens, check_system, check_temperature, check_text,
    progress_hooks,
)
from asls_mlx.session_update import (
    Learner, activate_active_adapter, learn_from_sessions, process_ended_sessions, training_lock, user_dir,
)
from asls_mlx.store import open_store
from asls_mlx.training import close_interrupted_runs
from asls_mlx.user_data import LearnedData, describe_version, forget, rollback_version


class Assistant(LearnedData, BackgroundTraining):
    """A chat assistant for one user that learns from how they react to its answers.

    Args:
        user: user name (default "default"); created on first use.
        model: mlx-lm model directory, converted model name or hub id (default: embedded SmolLM2-135M).
        config: :class:`AssistantConfig`.
        engine: an already loaded :class:`ChatEngine` to share between assistants (e.g. in evaluation).
        exclusive: hold the per-user chat lock, so a second chat on the same user is refused
            (the background trainer passes False: it only learns, it does not chat).
    """

    def __init__(self, user: str | None = None, model: str | None = None, config: AssistantConfig | None = None,
                 engine: ChatEngine | None = None, progress: Callable[[str], None] | None = None, exclusive: bool = True):
        self.config = config or AssistantConfig()
        self.store = open_store()
        self.user = self.store.get_or_create_user("default" if user is None else user)  # "" is an error
        self.dir = user_dir(self.store, self.user)
        close_interrupted_runs(self.store, self.user)  # a run a killed process left 'running'
        self._chat_lock = FileLock(self.dir / "chat.lock")
        if exclusive and not self._chat_lock.acquire():
            self.store.close()
            holder = self._chat_lock.holder()
            raise ASLSError(f"user {self.user.name!r} is already chatting in {holder}" + (
                ": an Assistant for this user is open (made earlier, e.g. by a cell run before); use that one or "
                "call its close() first" if holder == "this process" else "; close it first"))
        self._engine = engine
        self._model = model
        self._progress = progress or _quiet
        self._model_source = model or ""
        self.repo = AdapterRepo(self.dir / "adapters")
        self.session_id: int | None = None
        self._last_assistant: int | None = None
        self._last_chunk: GenerationChunk | None = None  # the final chunk of the last answer (finish reason, speed)
        self._loaded_version: int | None = -1  # unknown: forces the first sync
        self._held_profile: tuple[object, Profile] | None = None  # what this session's system prompt renders
        self._worker = BackgroundTrainer(self.dir)
        self.notices: list[str] = []
        # An Assistant dropped without close() (a notebook cell run again) gives its lock back when collected.
        self._finalizer = weakref.finalize(self, _release, self._chat_lock, self.store)

    @property
    def engine(self) -> ChatEngine:
        """The loaded model (loaded on first use, so history/profile commands never pay for it)."""
        if self._engine is None:
            source = resolve_model(self._model, progress=self._progress)
            loaded, tokenizer, model_id = load_model(str(source), progress=self._progress)
            self._engine = ChatEngine(loaded, tokenizer, model_id)
            self._model_source = str(source)
        if self._loaded_version == -1:
            self._loaded_version = -2  # syncing (sync_adapter reads self.engine)
            self.sync_adapter()
        return self._engine

    # -- adapter ---------------------------------------------------------------------------------
    @property
    def adapter_version(self) -> int | None:
        """The adapter version the next answer uses (None: the base model)."""
        if self._engine is None:
            active = self.store.active_adapter(self.user.id)
            return active.version if active else None
        return self._loaded_version if self._loaded_version not in (-1, -2) else None

    def sync_adapter(self) -> str | None:
        """Hot-swap to the store's active adapter if it changed (e.g. background training finished).

        Returns a notice when something changed. A damaged or mismatched adapter falls back to the
        last good version, or to the base model, with a notice instead of an error.
        """
        if self._engine is None:
            return None  # nothing loaded yet: the first use of the engine syncs
        active = self.store.active_adapter(self.user.id)
        if (active.version if active else None) == self._loaded_version:
            return None
        wanted, notice = activate_active_adapter(self._engine, self.store, self.user, self.repo)
        changed = self._loaded_version not in (-1, -2, wanted)
        self._loaded_version = wanted
        if changed and notice is None:
            notice = describe_version(self.store, self.user, wanted)
        if notice:
            self.notices.append(notice)
        return notice

    def pairs_waiting(self) -> int:
        """Training pairs mined but not used by any adapter yet."""
        return len(self.store.pairs(self.user.id, split="train", unused_only=True))

    # -- chatting --------------------------------------------------------------------------------
    def _system(self, system: str | None = None) -> str:
        """The system prompt: ``system`` (default: the config's) plus the profile as it stands now.

        Within a session the rendered profile is held while what it claims stays the same: a correction that
        only moves the word target ("about 14" -> "about 12 words") would otherwise change the system prompt,
        and a changed system prompt throws away the cached conversation (every turn re-read from the start).
        A claim that appears, flips or goes re-renders at once; the held numbers catch up at the next session.
        """
        config = self.config if system is None else replace(self.config, system_prompt=check_system(system))
        profile = self.profile
        says = (profile.claims(), profile.facts.get("name"))
        if self._held_profile is None or self._held_profile[0] != says:
            self._held_profile = (says, profile)
        return config.system_text(self._held_profile[1])

    def _conversation(self, upto: int | None = None, system: str | None = None) -> list[dict]:
        messages = [{"role": "system", "content": self._system(system)}]
        if self.session_id is not None:
            for m in self.store.conversation(self.session_id):
                if upto is not None and m.id >= upto:
                    break
                if m.role in ("user", "assistant"):
                    messages.append({"role": m.role, "content": m.text})
        return messages

    def _options(self, temperature: float | None = None, max_tokens: int | None = None, seed: int | None = None) -> SamplingOptions:
        return self.config.sampling(check_temperature(temperature), check_max_tokens(max_tokens), seed)

    def stream(self, text: str, *, temperature: float | None = None, max_tokens: int | None = None,
               system: str | None = None) -> Iterator[GenerationChunk]:
        """Send ``text`` and stream the answer; it is saved in the history when the stream ends
        (also when it is interrupted: the partial answer is kept).

        ``temperature`` (0 = greedy), ``max_tokens`` and ``system`` (the system prompt; the profile is still
        added to it) apply to this answer only; by default the config's.
        """
        text = check_text(text)
        options = self._options(temperature, max_tokens)  # bad options fail before anything is stored
        system = None if system is None else check_system(system)
        self.sync_adapter()
        if self.session_id is None:
            self.session_id = self.store.start_session(self.user.id)
        user_id = self.store.add_message(self.session_id, "user", text)
        messages = self._conversation(system=system)  # ends with the message just stored
        yield from self._answer_into(messages, lambda answer: self.store.add_message(self.session_id, "assistant", answer, parent_id=user_id),
                                     options)

    def _answer_into(self, messages: list[dict], save: Callable[[str], int], options: SamplingOptions | None = None) -> Iterator[GenerationChunk]:
        answer, last = "", None
        with self._answering() as marker:  # a background update waits until this answer ends
            try:
                for chunk in self.engine.stream(messages, options or self._options()):
                    answer += chunk.text
                    last = chunk
                    marker.refresh()
                    yield chunk
            finally:
                self._last_assistant = save(answer.strip())
                self._last_chunk = last

    def chat(self, text: str, *, temperature: float | None = None, max_tokens: int | None = None,
             system: str | None = None) -> Reply:
        """Send ``text`` and return the whole answer (options: see :meth:`stream`)."""
        for _ in self.stream(text, temperature=temperature, max_tokens=max_tokens, system=system):
            pass
        return self._reply()

    def _reply(self) -> Reply:
        last = self._last_chunk
        msg = self.store.message(self._last_assistant)
        return Reply(msg.content, msg.id, self.adapter_version, last.finish_reason if last else None,
                     bool(last and last.truncated), last.generation_tps if last else 0.0)

    def answer(self, prompt: str, record: bool = False, *, temperature: float | None = None,
               max_tokens: int | None = None, system: str | None = None) -> str:
        """An answer to a single prompt with the current adapter and profile, not saved (unless ``record``).
        Greedy unless ``temperature`` says otherwise; options as in :meth:`stream`."""
        if record:
            return self.chat(prompt, temperature=temperature, max_tokens=max_tokens, system=system).text
        options = self._options(0.0 if temperature is None else temperature, max_tokens)
        self.sync_adapter()
        with self._answering():
            return self.engine.complete(single_turn(self._system(system), check_text(prompt)), options)

    def answer_many(self, prompts: list[str], max_tokens: int | None = None) -> list[str]:
        """Greedy answers to many single prompts at once (batched decoding), not saved."""
        self.sync_adapter()
        with self._answering():
            return greedy_answers(self.engine, [check_text(p) for p in prompts], self._system(),
                                  options=self._options(temperature=0.0, max_tokens=max_tokens))

    # -- feedback --------------------------------------------------------------------------------
    def _require_answer(self) -> int:
        if self._last_assistant is None:
            raise ASLSError("there is no answer to give feedback on yet; chat first")
        return self._last_assistant

    def good(self) -> None:
        """Thumbs up on the last answer."""
        record_feedback(self.store, self._require_answer(), "thumbs_up")

    def bad(self) -> None:
        """Thumbs down on the last answer."""
        record_feedback(self.store, self._require_answer(), "thumbs_down")

    def edit(self, new_text: str) -> None:
        """Replace the last answer with your corrected version (the strongest signal there is)."""
        record_feedback(self.store, self._require_answer(), "edit", text=check_text(new_text))

    def stream_regenerate(self) -> Iterator[GenerationChunk]:
        """Stream a new answer to the last message; the old one is kept as the discarded alternative."""
        old = self._require_answer()
        n = len(self.store.feedback(message_id=old)) + 1
        messages = self._conversation(upto=old)
        # Seeded by the turn's place in the session, not by database ids, so the same conversation
        # regenerates the same way for every user (evaluation arms stay comparable).
        turn = sum(1 for m in messages if m["role"] == "user")
        options = self._options(temperature=max(self.config.temperature, self.config.regenerate_temperature), seed=self.config.seed + 1000 * n + turn)
        yield from self._answer_into(messages, lambda answer: record_feedback(self.store, old, "regenerate", text=answer or "(empty)"), options)

    def regenerate(self) -> Reply:
        for _ in self.stream_regenerate():
            pass
        return self._reply()

    # -- learning --------------------------------------------------------------------------------
    @property
    def profile(self) -> Profile:
        """The profile as it stands now: what ended sessions taught plus what this session has so far (the
        system prompt of the next answer is built from it)."""
        return live_profile(self.store, self.user, self.session_id)

    def end_session(self, train: str | None = None, progress: Callable[[TrainingProgress], None] | None = None) -> SessionSummary:
        """End the current session: update the profile, mine pairs, then train as ``train`` says
        ("background", "idle", "wait", "next_start" or "none"; default: the config's ``train_after_session``; "idle"
        starts the background worker, which waits until the user has not typed for ``train_idle_s``).
        With ``train="wait"``, ``progress`` hears each phase and each optimizer step (:class:`TrainingProgress`)."""
        mode = train or self.config.train_after_session
        if mode not in TRAIN_MODES:
            raise ASLSError(f"train must be one of {', '.join(TRAIN_MODES)}, not {mode!r}")
        hooks = progress_hooks(progress)
        sid, self.session_id, self._last_assistant, self._held_profile = self.session_id, None, None, None
        before = load_profile(self.store, self.user)
        ended = process_ended_sessions(self.store, self.user, self.config.seed, length_pairs=self.config.length_pairs)
        profile = self.profile
        summary = SessionSummary(sid, profile, profile.diff(before), ended.pairs_mined)
        if not self.config.adapt or mode == "none" or not ended.session_ids:
            return summary
        if mode == "wait":
            update = self._learn(ended.session_ids, *hooks)
            summary.pairs_mined += update.self_labelled_pairs
            summary.training = update.report
        elif mode in ("background", "idle") and (self.config.self_labelled or self.pairs_waiting()):
            self._start_worker(ended.session_ids, mode)  # (with nothing to train it would start only to say so)
            summary.background = True
        return summary

    def train(self, wait: bool = True, progress: Callable | None = None, should_stop: Callable[[], bool] | None = None,
              session_ids: list[int] = (), on_phase: Callable[[str], None] | None = None) -> UpdateReport | None:
        """Train the adapter on the pairs not used yet (after self-labelled mining on ``session_ids``).
        ``wait=True`` trains here on the live model and returns the report; ``wait=False`` starts a
        background process (see :meth:`training_status`)."""
        if not wait:
            self._start_worker(session_ids)
            return None
        return self._learn(session_ids, progress, should_stop, on_phase).report

    def _learn(self, session_ids: list[int], progress: Callable | None = None, should_stop: Callable[[], bool] | None = None,
               on_phase: Callable[[str], None] | None = None):
        """The learning pipeline on the live model, then the chat resyncs to whatever it committed."""
        with training_lock(self.store, self.user):
            self.sync_adapter()  # the pipeline starts from the active adapter
            try:
                return learn_from_sessions(Learner(self.store, self.user, self.engine, self.config), list(session_ids),
                                           progress, should_stop, on_phase)
            finally:
                self._loaded_version = -1  # weights changed in place: resync to whatever the store says
                self.sync_adapter()
                self.notices.clear()

    # -- history, adapters, data -----------------------------------------------------------------
    def history(self, limit: int = 50):
        return self.store.history(self.user.id, limit)

    def adapters(self):
        return self.store.adapter_versions(self.user.id)

    def rollback(self, version: int | None = None) -> int | None:
        """Go back to ``version`` (default: the one before the active one; 0 = base model)."""
        version = rollback_version(self.store, self.user, version)
        self.sync_adapter()
        return version

    def export(self, path: str | Path) -> Path:
        """Write everything about this user (messages, feedback, profile, pairs, adapter list) as JSONL."""
        path = Path(path)
        self.store.export_user(self.user.name, path)
        return path

    def import_(self, path: str | Path, rename: str | None = None) -> str:
        """Import a bundle written by :meth:`export` (all or nothing). Returns the imported user name."""
        if not isinstance(path, (str, os.PathLike)):
            raise ASLSError(f"import needs a file path, not {type(path).__name__}")
        return self.store.import_user(Path(path), rename=rename)

    def forget(self, session_id: int | None = None, since=None, until=None, everything: bool = False):
        """Forget a session, a time range or everything — and the adapters trained on it."""
        if session_id is not None and session_id == self.session_id:
            self.session_id, self._last_assistant, self._held_profile = None, None, None
        summary = forget(self.store, self.user, session_id, since, until, everything)
        self.sync_adapter()
        return summary

    def perplexity(self, texts: list[str], adapter: bool = True) -> float:
        """Perplexity of ``texts`` with the adapter on or off (retention check)."""
        from asls_mlx.adaptation.validation import retention_perplexity

        result = retention_perplexity(self.engine.model, self.engine.tokenizer, texts)
        return result["ppl"] if adapter else result["base_ppl"]

    # -- lifecycle -------------------------------------------------------------------------------
    def close(self, end_session: bool = False) -> None:
        if end_session and self.session_id is not None:
            self.end_session()
        self._finalizer()  # releases the chat lock and closes the store, once

    def _repr_markdown_(self) -> str:
        """Jupyter: who, which model and adapter, the session, and what the profile tells the model."""
        return assistant_markdown(self)

    def __enter__(self) -> "Assistant":
        return self

    def __exit__(self, *exc) -> None:
        try:
            if self.session_id is not None:
                self.end_session()
        finally:
            self.close()

    # -- for the CLI and notebooks ---------------------------------------------------------------
    def last_answer(self) -> str:
        """The last answer's text (the user's edit if they made one). Raises ASLSError when there is no
        answer yet, so a caller can check before it starts streaming a regeneration."""
        return self.store.message(self._require_answer()).text


def _release(lock: FileLock, store) -> None:
    lock.release()
    store.close()


def _quiet(_msg: str) -> None:
    pass


__all__ = ["Assistant", "AssistantConfig", "Reply", "SessionSummary", "TrainingProgress"]
