"""The model loop: every answer, feedback and session end of every user runs here, one at a time.

It runs on the main thread, which also loaded the model: MLX keeps its streams per thread, and a
model loaded or run on another thread aborts the process when it exits (MLX 0.32).

One loaded base model serves all users; before a user's answer their adapter is swapped into it in
place (``ConversationAssistant.activate``), and the answer runs to its end before the next request
starts, so two users' answers never mix adapters. HTTP threads hand requests over as :class:`Job`\\ s
and read what comes back from the job's queue: ``("start", info)``, ``("chunk", GenerationChunk)``...,
``("done", info)``, or ``("error", RequestError)`` / ``("result", dict)``.

Sessions end after ``idle_s`` without a request of their user, or when asked; the update then trains
in the background process (its own copy of the model) and the user's next request sees its version.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
import traceback
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

from asls_mlx import ASLSError, AssistantConfig, ConversationAssistant
from asls_mlx.serve.protocol import RequestError

KEEP_COMPLETIONS = 10_000  # completion ids remembered for feedback (oldest forgotten first)


@dataclass
class Job:
    kind: str  # chat | feedback | end | status
    user: str
    payload: Any = None
    events: queue.Queue = field(default_factory=queue.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)

    def put(self, kind: str, value: Any) -> None:
        self.events.put((kind, value))


class ModelWorker:
    """Loads the model, then runs jobs one at a time; ends idle sessions between them."""

    def __init__(self, model: str | None, config: AssistantConfig, idle_s: float = 1800.0,
                 log: Callable[[str], None] | None = None):
        self.model, self.config, self.idle_s = model, config, idle_s
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.jobs: queue.Queue[Job | None] = queue.Queue()
        self.model_id = ""
        self.stop_requested = False  # a plain flag: a signal handler sets it without taking any lock
        self._engine = None
        self._assistants: dict[str, ConversationAssistant] = {}
        self._last_request: dict[str, float] = {}
        self._current: str | None = None  # whose adapter the model holds
        self._completions: OrderedDict[str, tuple[str, int]] = OrderedDict()

    # -- the HTTP side ---------------------------------------------------------------------------
    def submit(self, job: Job) -> Job:
        if self.stop_requested:
            raise RequestError(503, "the server is shutting down", "server_error", "shutting_down")
        self.jobs.put(job)
        return job

    # -- the model loop (main thread) ------------------------------------------------------------
    def load(self) -> None:
        """Load the base model (ASLSError when it cannot be loaded)."""
        self._engine = ConversationAssistant.load_engine(self.model, progress=self.log)
        self.model_id = self._engine.model_id

    def run(self) -> None:
        """Serve jobs until ``stop_requested``; then the answer being written is cut where it is (and
        stored), queued requests get 503 and every user's lock is released. Open sessions stay open:
        the next start continues them, and the user's next session end processes them."""
        try:
            while not self.stop_requested:
                try:
                    job = self.jobs.get(timeout=min(0.5, self.idle_s / 4))
                except queue.Empty:
                    job = None
                if job is not None:
                    self._run(job)
                self._end_idle_sessions()
        finally:
            self._drain()
            for a in self._assistants.values():
                a.close()

    def _drain(self) -> None:
        while True:
            try:
                job = self.jobs.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                job.put("error", RequestError(503, "the server is shutting down", "server_error", "shutting_down"))

    def _run(self, job: Job) -> None:
        handler = {"chat": self._chat, "feedback": self._feedback, "end": self._end, "status": self._status}[job.kind]
        try:
            handler(job)
        except RequestError as e:
            job.put("error", e)
        except ASLSError as e:
            job.put("error", RequestError(400, str(e)))
        except Exception as e:  # noqa: BLE001  (one request failed; the server goes on)
            traceback.print_exc(file=sys.stderr)
            job.put("error", RequestError(500, f"internal error: {type(e).__name__}: {e}", "server_error"))

    def _assistant(self, user: str) -> ConversationAssistant:
        a = self._assistants.get(user)
        if a is None:
            try:
                a = ConversationAssistant(user=user, model=self.model, config=self.config, engine=self._engine)
            except ASLSError as e:
                raise RequestError(409, str(e), "invalid_request_error", "user_busy", "user") from e
            self._assistants[user] = a
        return a

    def _switch_to(self, user: str) -> ConversationAssistant:
        """The user's assistant with their adapter in the model: swapped in when another user's was
        there, else synced with the store (a background update may have committed a new version)."""
        a = self._assistant(user)
        notice = a.activate() if self._current != user else a.sync_adapter()
        self._current = user
        if notice:
            self.log(f"asls serve: {user}: {notice}")
        return a

    def _chat(self, job: Job) -> None:
        request = job.payload["request"]
        a = self._switch_to(job.user)
        self._last_request[job.user] = time.monotonic()
        turn = a.plan(request.messages)  # malformed conversations fail here, before anything is stored
        info = {"user": job.user, "adapter_version": a.adapter_version or 0, "turn": turn.kind}
        job.put("start", info)
        stream = a.stream_conversation(request.messages, turn=turn, **request.sampling())
        last = None
        try:
            for chunk in stream:
                if job.cancelled.is_set() or self.stop_requested:
                    break
                last = chunk
                job.put("chunk", chunk)
        finally:
            stream.close()  # the answer is stored now, cut where it stopped
        self._remember(job.payload["id"], job.user, a.last_message_id)
        job.put("done", dict(info, session_id=a.session_id, message_id=a.last_message_id,
                             finish_reason=last.finish_reason if last and last.finish_reason else "interrupted",
                             prompt_tokens=(last.prompt_tokens + last.cached_tokens) if last else 0,
                             completion_tokens=last.generation_tokens if last else 0))
        self._last_request[job.user] = time.monotonic()

    def _remember(self, completion_id: str, user: str, message_id: int | None) -> None:
        if message_id is None:
            return
        self._completions[completion_id] = (user, message_id)
        while len(self._completions) > KEEP_COMPLETIONS:
            self._completions.popitem(last=False)

    def _feedback(self, job: Job) -> None:
        p = job.payload
        message_id = None
        if p.get("completion_id") is not None:
            owner = self._completions.get(p["completion_id"])
            if owner is None or owner[0] != job.user:
                raise RequestError(404, f"no answer with completion_id {p['completion_id']!r} for user {job.user!r} "
                                        "(ids are remembered while the server runs)", "not_found_error", "completion_not_found",
                                   "completion_id")
            message_id = owner[1]
        a = self._assistant(job.user)
        a.feedback(p["kind"], message_id=message_id, text=p.get("text"))
        job.put("result", {"user": job.user, "kind": p["kind"], "message_id": message_id or a.last_message_id, "recorded": True})

    def _end(self, job: Job) -> None:
        job.put("result", self._end_session(job.user))

    def _end_session(self, user: str) -> dict:
        """Process the user's open sessions (profile, pairs) and start their adapter update."""
        a = self._assistant(user)
        if not a.open_sessions():
            return {"user": user, "ended": False, "message": "no open session"}
        try:
            summary = a.end_session()
            training = "background" if summary.background else "none"
        except ASLSError as e:  # training already running: the new pairs wait for the next update
            summary, training = None, f"not started: {e}"
        self._last_request.pop(user, None)
        self.log(f"asls serve: {user}: session ended; training {training}")
        return {"user": user, "ended": True, "session_id": summary.session_id if summary else None,
                "pairs_mined": summary.pairs_mined if summary else None,
                "profile_changes": summary.changes if summary else [], "training": training}

    def _status(self, job: Job) -> None:
        a = self._assistant(job.user)
        status = a.training_status()
        active = [v.version for v in a.adapters() if v.status == "active"]
        job.put("result", {"user": job.user, "active_adapter_version": active[0] if active else 0,
                           "open_sessions": len(a.open_sessions()), "training": status})

    def _end_idle_sessions(self) -> None:
        now = time.monotonic()
        for user, last in list(self._last_request.items()):
            if now - last >= self.idle_s and not self.stop_requested:
                try:
                    self._end_session(user)
                except Exception as e:  # noqa: BLE001  (one user's failure must not stop the others)
                    self.log(f"asls serve: {user}: ending the idle session failed: {e}")
                    self._last_request.pop(user, None)


__all__ = ["Job", "ModelWorker"]
