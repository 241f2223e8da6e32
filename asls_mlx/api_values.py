"""The values the Python API hands back (an answer, what ending a session did, training progress, each
with its Jupyter view ``_repr_markdown_``) and the checks of the values it takes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from asls_mlx.errors import ASLSError

from asls_mlx.adaptation.update import UpdateReport
from asls_mlx.profiling import Profile


@dataclass
class Reply:
    """A finished answer: its text, its message id in the history and the adapter that produced it."""

    text: str
    message_id: int
    adapter_version: int | None
    finish_reason: str | None = None
    truncated: bool = False
    generation_tps: float = 0.0

    def __str__(self) -> str:
        return self.text

    def _repr_markdown_(self) -> str:
        adapter = f"adapter v{self.adapter_version}" if self.adapter_version else "base model"
        facts = [adapter, f"message {self.message_id}"]
        if self.generation_tps:
            facts.append(f"{self.generation_tps:.1f} tok/s")
        if self.finish_reason == "length":
            facts.append("stopped at max_tokens")
        if self.truncated:
            facts.append("early turns left out to fit the context")
        return f"{self.text}\n\n<small>{' · '.join(facts)}</small>"


@dataclass
class TrainingProgress:
    """Where a blocking update is (``end_session(train="wait", progress=...)``): the phase, and during
    "training" the optimizer step of ``total``, the loss and the seconds since training started."""

    phase: str  # "mining self-labelled pairs" | "training"
    step: int = 0
    total: int = 0
    loss: float | None = None
    elapsed: float = 0.0

    def __str__(self) -> str:
        if self.phase != "training" or not self.total:
            return self.phase
        loss = f", loss {self.loss:.3f}" if self.loss is not None else ""
        return f"training step {self.step}/{self.total}{loss} ({self.elapsed:.0f}s)"


@dataclass
class SessionSummary:
    """What ending a session did."""

    session_id: int | None
    profile: Profile
    changes: list[str] = field(default_factory=list)
    pairs_mined: int = 0
    training: UpdateReport | None = None  # when trained with train="wait"
    background: bool = False  # training started in a background process

    def _repr_markdown_(self) -> str:
        lines = [f"**Session {self.session_id} ended** — {self.pairs_mined} preference pairs mined"]
        lines += [f"- profile: {change}" for change in self.changes] or ["- profile: unchanged"]
        if self.training is not None:
            lines.append(f"- training: {self.training.summary()}")
        elif self.background:
            lines.append("- training: running in the background; the next answer uses it when it is ready")
        return "\n".join(lines)


def assistant_markdown(a) -> str:
    """An :class:`~asls_mlx.Assistant` in Jupyter: who, which model and adapter, the session, and what the
    profile tells the model."""
    if not a._finalizer.alive:
        return f"**Assistant** for {a.user.name} (closed)"
    model = a._engine.model_id if a._engine is not None else (a._model or "embedded default, not loaded yet")
    adapter = f"adapter v{a.adapter_version}" if a.adapter_version else "base model"
    session = f"session {a.session_id} open" if a.session_id is not None else "no session open"
    rendered = a.profile.render()
    return (f"**Assistant** for {a.user.name} · {model} · {adapter} · {session} · "
            f"{a.pairs_waiting()} pairs waiting for training\n\n"
            f"Profile in the prompt: {('_' + rendered + '_') if rendered else 'nothing learned yet'}")


def check_text(text: object) -> str:
    if not isinstance(text, str):
        raise ASLSError(f"a message must be text, not {type(text).__name__}")
    if not text.strip():
        raise ASLSError("the message is empty")
    if "\x00" in text:
        raise ASLSError("the message contains a NUL character")
    return text


def progress_hooks(progress: Callable[[TrainingProgress], None] | None) -> tuple[Callable | None, None, Callable | None]:
    """(per step, should_stop, per phase) callbacks of the pipeline that report to one ``progress``."""
    if progress is None:
        return None, None, None
    if not callable(progress):
        raise ASLSError(f"progress must be a function of one argument, not {type(progress).__name__}")
    return (lambda p: progress(TrainingProgress("training", p.step, p.total, p.loss, p.elapsed)), None,
            lambda phase: progress(TrainingProgress(phase)))


def check_system(value: object) -> str:
    if not isinstance(value, str):
        raise ASLSError(f"system must be text (the system prompt), not {type(value).__name__}")
    return value


def check_temperature(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 5:
        raise ASLSError(f"temperature must be a number from 0 (greedy) to 5, not {value!r}")
    return float(value)


def check_max_tokens(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ASLSError(f"max_tokens must be a whole number of at least 1, not {value!r}")
    return value


__all__ = ["Reply", "SessionSummary", "TrainingProgress", "assistant_markdown", "check_max_tokens", "check_system", "check_temperature", "check_text",
           "progress_hooks"]
