"""The assistant driven by whole conversations, the way OpenAI-style clients talk (``asls serve``).

Such a client re-sends the whole conversation with every request; the history keeps it once, in
sessions, as the chat does. Each request is matched against the user's open (not yet processed)
sessions, newest first:

- ``continue``: the request's earlier turns are a stored session: its last message is a new turn there;
- ``regenerate``: the request is a stored session without its last answer: the client asked for another
  answer (the old one is kept as the discarded alternative, as ``/regen`` does in the chat);
- ``edit``: the earlier turns match except the text of the last answer: the user edited that answer
  (an ``edit`` event, the strongest signal there is), then a new turn;
- ``new``: nothing matches: a new session, holding the client's earlier turns as they were sent.

Follow-ups such as "shorter please" become corrections when the session is processed, exactly as in
the chat. Many of these assistants may share one loaded model (``engine=``): :meth:`activate` puts
this user's adapter into it before an answer.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Iterator

from asls_mlx.assistant import Assistant
from asls_mlx.engine import ChatEngine, GenerationChunk, SamplingOptions, load_model
from asls_mlx.engine.models import resolve_model
from asls_mlx.errors import ASLSError
from asls_mlx.profiling import record_feedback
from asls_mlx.store import Store

FEEDBACK_KINDS = {"good": "thumbs_up", "bad": "thumbs_down", "edit": "edit"}
ROLES = ("system", "user", "assistant")


@dataclass
class Turn:
    """What a request means for the history (see the module's docstring for the kinds)."""

    kind: str  # continue | regenerate | edit | new
    session_id: int | None  # the stored session it belongs to (None: a new one)
    text: str  # the user's new message (for a regeneration: the message answered again)
    system: str = ""  # the client's own system messages, joined
    prior: tuple[tuple[str, str], ...] = ()  # (role, text) turns before ``text``, as the client sent them
    edited_message_id: int | None = None  # ``edit``: the stored answer the client changed


def _turns(messages: list[dict]) -> tuple[str, list[tuple[str, str]]]:
    """(the client's system text, its (role, text) turns), checked."""
    if not isinstance(messages, list) or not messages:
        raise ASLSError("messages must be a non-empty list of {role, content} objects")
    system, turns = [], []
    for i, m in enumerate(messages):
        role, content = (m.get("role"), m.get("content")) if isinstance(m, dict) else (None, None)
        if role not in ROLES:
            raise ASLSError(f"messages[{i}].role must be one of {', '.join(ROLES)}, not {role!r}")
        if not isinstance(content, str):
            raise ASLSError(f"messages[{i}].content must be text")
        if "\x00" in content:
            raise ASLSError(f"messages[{i}].content contains a NUL character")
        (system if role == "system" else turns).append(content if role == "system" else (role, content))
    if not turns or turns[-1][0] != "user" or not turns[-1][1].strip():
        raise ASLSError("the last message must be a non-empty user message")
    return "\n".join(s for s in system if s.strip()), turns


def _same(turns: list[tuple[str, str]], stored: list[tuple[str, tuple[str, ...]]]) -> bool:
    """Client turns equal stored ones. A stored answer matches its original text or the user's edit of it
    (a client that sent feedback through the API still holds the original); answers are stored stripped,
    and a client sends back what it received, maybe with the stream's spaces."""
    return len(turns) == len(stored) and all(
        role == kind and text.strip() in versions for (role, text), (kind, versions) in zip(turns, stored))


def _match(stored: list[tuple[int, str, tuple[str, ...]]], turns: list[tuple[str, str]]) -> tuple[str, int | None] | None:
    """How ``turns`` (ending with a user message) relates to one stored session, or None.
    ``stored``: (message id, role, (text, original text)) of the session's active messages."""
    pairs = [(role, versions) for _, role, versions in stored]
    if not pairs:
        return None
    if _same(turns[:-1], pairs):
        return "continue", None
    if pairs[-1][0] == "assistant" and _same(turns, pairs[:-1]):
        return "regenerate", stored[-1][0]
    if (len(turns) == len(pairs) + 1 and pairs[-1][0] == "assistant" and turns[-2][0] == "assistant"
            and _same(turns[:-2], pairs[:-1]) and turns[-2][1].strip()):
        return "edit", stored[-1][0]
    return None


def _cut_at_stop(text: str, stop: tuple[str, ...]) -> int | None:
    hits = [i for i in (text.find(s) for s in stop) if i >= 0]
    return min(hits) if hits else None


def _stop_at(chunks: Iterator[GenerationChunk], stop: tuple[str, ...]) -> Iterator[GenerationChunk]:
    """End the stream at the first stop sequence, which is not sent (OpenAI's ``stop``); text that may
    be the start of one is held back until the next chunk shows it is not."""
    held, hold = "", max((len(s) for s in stop), default=1) - 1
    try:
        for chunk in chunks:
            held += chunk.text
            cut = _cut_at_stop(held, stop)
            if cut is not None:
                yield replace(chunk, text=held[:cut], finish_reason="stop")
                return
            if chunk.finish_reason is not None:
                yield replace(chunk, text=held)
                return
            emit = held[: max(0, len(held) - hold)]
            held = held[len(emit):]
            yield replace(chunk, text=emit)
    finally:
        chunks.close()  # the answer is saved (cut at the stop) when the inner stream closes


class ConversationAssistant(Assistant):
    """An :class:`~asls_mlx.Assistant` that answers whole conversations (OpenAI's ``messages``)
    and stores them as the chat would: see the module docstring. Same arguments as ``Assistant``."""

    @staticmethod
    def load_engine(model: str | None = None, progress: Callable[[str], None] | None = None) -> ChatEngine:
        """Load a model once, to share between the assistants of many users (``engine=``)."""
        quiet = progress or (lambda _msg: None)
        loaded, tokenizer, model_id = load_model(str(resolve_model(model, progress=quiet)), progress=quiet)
        return ChatEngine(loaded, tokenizer, model_id)

    @staticmethod
    def check_user_name(name: object) -> str:
        """``name`` if it can name a user, else ASLSError saying why (nothing is created)."""
        return Store.validate_user_name(name)

    def activate(self) -> str | None:
        """Put this user's active adapter into the model now, even when the model is shared and
        another user's adapter was swapped in since (in place: the base model is never reloaded)."""
        if self._engine is None:
            return None  # the first use of the engine activates it
        self._loaded_version = -2  # unknown: sync_adapter swaps whatever the store says in
        return self.sync_adapter()

    @property
    def last_message_id(self) -> int | None:
        """The id of the last answer given (its regeneration's, after a regeneration)."""
        return self._last_assistant

    def open_sessions(self) -> list[int]:
        """This user's sessions not processed yet, newest first (a request may continue any of them)."""
        return [s.id for s in reversed(self.store.sessions(self.user.id)) if not s.processed]

    def plan(self, messages: list[dict]) -> Turn:
        """What ``messages`` mean for this user's history (reads only; ASLSError if they are malformed)."""
        system, turns = _turns(messages)
        for sid in self.open_sessions():
            stored = [(m.id, m.role, (m.text.strip(), m.content.strip())) for m in self.store.conversation(sid)
                      if m.role in ("user", "assistant")]
            found = _match(stored, turns)
            if found:
                return Turn(found[0], sid, turns[-1][1], system, tuple(turns[:-1]), found[1])
        return Turn("new", None, turns[-1][1], system, tuple(turns[:-1]))

    def stream_conversation(self, messages: list[dict], temperature: float | None = None, max_tokens: int | None = None,
                            top_p: float | None = None, seed: int | None = None, stop: tuple[str, ...] = (),
                            turn: Turn | None = None) -> Iterator[GenerationChunk]:
        """Answer ``messages`` with this user's adapter and profile, storing the turn as :meth:`plan`
        says; the answer is saved when the stream ends or is closed. ``turn``: a plan made already."""
        turn = turn or self.plan(messages)
        self.sync_adapter()
        options = self._request_options(turn, temperature, max_tokens, top_p, seed)
        if turn.kind == "regenerate":
            self.session_id, old = turn.session_id, turn.edited_message_id
            conversation = self._with_system(self._conversation(upto=old), turn.system)
            save = lambda answer: record_feedback(self.store, old, "regenerate", text=_cut(answer, stop) or "(empty)")  # noqa: E731
        else:
            self._store_turn(turn)
            user_id = self.store.add_message(self.session_id, "user", turn.text)
            conversation = self._with_system(self._conversation(), turn.system)
            save = lambda answer: self.store.add_message(self.session_id, "assistant", _cut(answer, stop), parent_id=user_id)  # noqa: E731
        chunks = self._answer_into(conversation, save, options)
        yield from _stop_at(chunks, tuple(stop)) if stop else chunks

    def _store_turn(self, turn: Turn) -> None:
        """Open the turn's session (a new one seeded with the client's earlier turns) and record an edit."""
        if turn.kind == "new":
            with self.store.transaction():
                self.session_id = self.store.start_session(self.user.id)
                asked = None  # an answer's parent is the user message it answers
                for role, text in turn.prior:
                    if text.strip():
                        mid = self.store.add_message(self.session_id, role, text.strip(), parent_id=asked if role == "assistant" else None)
                        asked = mid if role == "user" else None
            return
        self.session_id = turn.session_id
        if turn.kind == "edit":
            record_feedback(self.store, turn.edited_message_id, "edit", text=turn.prior[-1][1].strip())

    def _with_system(self, conversation: list[dict], extra: str) -> list[dict]:
        if extra:
            conversation[0] = {"role": "system", "content": conversation[0]["content"] + "\n" + extra}
        return conversation

    def _request_options(self, turn: Turn, temperature, max_tokens, top_p, seed) -> SamplingOptions:
        if turn.kind == "regenerate" and temperature is None:
            # an answer asked for again must differ, so it is sampled (as the chat's /regen)
            temperature = max(self.config.temperature, self.config.regenerate_temperature)
            n = len(self.store.feedback(message_id=turn.edited_message_id)) + 1
            seed = seed if seed is not None else self.config.seed + 1000 * n + sum(r == "user" for r, _ in turn.prior) + 1
        options = self.config.sampling(temperature, max_tokens, seed)
        return replace(options, top_p=top_p) if top_p is not None else options

    def feedback(self, kind: str, message_id: int | None = None, text: str | None = None) -> None:
        """Explicit feedback on one of this user's answers (default: the last one):
        ``good``, ``bad`` or ``edit`` (``text``: the corrected answer)."""
        if kind not in FEEDBACK_KINDS:
            raise ASLSError(f"feedback kind must be one of {', '.join(FEEDBACK_KINDS)}, not {kind!r}")
        message_id = self._require_answer() if message_id is None else message_id
        message = self.store.message(message_id)
        if message.role != "assistant" or self.store.session(message.session_id).user_id != self.user.id:
            raise ASLSError(f"message {message_id} is not an answer given to user {self.user.name!r}")
        if kind == "edit" and (not isinstance(text, str) or not text.strip()):
            raise ASLSError("an edit needs the corrected answer as text")
        record_feedback(self.store, message_id, FEEDBACK_KINDS[kind], text=text.strip() if kind == "edit" else None)


def _cut(answer: str, stop) -> str:
    cut = _cut_at_stop(answer, tuple(stop)) if stop else None
    return (answer if cut is None else answer[:cut]).strip()


__all__ = ["ConversationAssistant", "Turn"]
