"""OpenAI's chat-completions wire format: requests checked field by field, responses, chunks, errors.

Every check happens before anything is stored, so a bad request writes nothing. Fields OpenAI defines
that change nothing here (``frequency_penalty``, ``tools`` offered to the model, ...) are accepted and
ignored, as other local servers do, so existing clients keep working; fields asls reads must have the
right type and range, or the answer is a 400 naming the field.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

MAX_BODY_BYTES = 1 << 20  # a request body larger than this is refused (413) before it is read
MAX_INPUT_CHARS = 100_000  # all messages together; the model's window is a few thousand tokens anyway
MAX_MESSAGES = 1_000
MAX_STOP = 4  # OpenAI's limit


class RequestError(Exception):
    """A request the server refuses: HTTP status, a one-line message, OpenAI's error type and code."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", code: str | None = None,
                 param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type_, code, param

    def body(self) -> dict:
        return error_body(self.message, self.type, self.code, self.param)


def error_body(message: str, type_: str = "invalid_request_error", code: str | None = None, param: str | None = None) -> dict:
    """OpenAI's error object: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def bad(message: str, param: str | None = None, code: str = "invalid_value") -> RequestError:
    return RequestError(400, message, "invalid_request_error", code, param)


@dataclass
class ChatRequest:
    """A checked ``POST /v1/chat/completions`` body."""

    messages: list[dict]
    user: str = "default"
    stream: bool = False
    include_usage: bool = False
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = field(default_factory=tuple)

    def sampling(self) -> dict:
        """The keyword arguments of ``ConversationAssistant.stream_conversation``."""
        return {"temperature": self.temperature, "max_tokens": self.max_tokens, "top_p": self.top_p,
                "seed": self.seed, "stop": self.stop}


def _number(body: dict, name: str, low: float, high: float, integer: bool = False):
    value = body.get(name)
    if value is None:
        return None
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise bad(f"{name} must be {'an integer' if integer else 'a number'}, not {type(value).__name__}", name, "invalid_type")
    if not low <= value <= high:
        raise bad(f"{name} must be between {low:g} and {high:g}, not {value}", name)
    return value


def _content(message: dict, i: int) -> str:
    """A message's text: a string, or OpenAI's list of parts when every part is text."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in content):
        return "".join(p["text"] for p in content)
    if isinstance(content, list):
        raise bad(f"messages[{i}].content has a part that is not text; only text is supported", f"messages[{i}].content")
    raise bad(f"messages[{i}].content must be text, not {type(content).__name__}", f"messages[{i}].content", "invalid_type")


def _messages(body: dict) -> list[dict]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad("messages must be a non-empty list of {role, content} objects", "messages", "invalid_type")
    if len(messages) > MAX_MESSAGES:
        raise bad(f"{len(messages)} messages; at most {MAX_MESSAGES} are accepted", "messages")
    out, total = [], 0
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise bad(f"messages[{i}] must be an object with role and content", f"messages[{i}]", "invalid_type")
        role = {"developer": "system"}.get(m.get("role"), m.get("role"))  # OpenAI's newer name for system
        if role not in ("system", "user", "assistant"):
            raise bad(f"messages[{i}].role must be system, user or assistant, not {m.get('role')!r}", f"messages[{i}].role")
        text = _content(m, i)
        if "\x00" in text:
            raise bad(f"messages[{i}].content contains a NUL character", f"messages[{i}].content")
        total += len(text)
        out.append({"role": role, "content": text})
    if total > MAX_INPUT_CHARS:
        raise bad(f"the messages hold {total} characters; at most {MAX_INPUT_CHARS} are accepted", "messages", "context_length_exceeded")
    if out[-1]["role"] != "user" or not out[-1]["content"].strip():
        raise bad("the last message must be a non-empty user message", "messages")
    return out


def _stop(body: dict) -> tuple[str, ...]:
    stop = body.get("stop")
    if stop is None:
        return ()
    stops = [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
        raise bad("stop must be a non-empty string or a list of them", "stop", "invalid_type")
    if len(stops) > MAX_STOP:
        raise bad(f"stop has {len(stops)} sequences; at most {MAX_STOP}", "stop")
    return tuple(stops)


def _flag(body: dict, name: str) -> bool:
    value = body.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise bad(f"{name} must be true or false", name, "invalid_type")
    return value


def parse_chat(body: object, max_tokens_cap: int, check_user) -> ChatRequest:
    """Check a chat-completions body; raise :class:`RequestError` (400) naming the first bad field.
    ``check_user(name)`` raises ``ASLSError`` for a name that cannot name a user."""
    if not isinstance(body, dict):
        raise bad("the request body must be a JSON object", code="invalid_type")
    messages = _messages(body)
    user = body.get("user", "default")
    user = "default" if user in (None, "") else user
    try:
        user = check_user(user)
    except Exception as e:  # ASLSError: a one-line reason
        raise bad(f"user: {e}", "user") from e
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise bad("stream_options must be an object", "stream_options", "invalid_type")
    if body.get("n") not in (None, 1) or isinstance(body.get("n"), bool):
        raise bad("only n = 1 is supported (one answer per request)", "n")
    if _flag(body, "logprobs"):
        raise bad("logprobs are not supported", "logprobs")
    max_tokens = _number(body, "max_completion_tokens", 1, max_tokens_cap, integer=True)
    if max_tokens is None:
        max_tokens = _number(body, "max_tokens", 1, max_tokens_cap, integer=True)
    return ChatRequest(
        messages=messages, user=user, stream=_flag(body, "stream"),
        include_usage=_flag(options or {}, "include_usage"), max_tokens=max_tokens,
        temperature=_number(body, "temperature", 0, 2), top_p=_number(body, "top_p", 1e-9, 1),
        seed=_number(body, "seed", -(2**63), 2**63 - 1, integer=True), stop=_stop(body),
    )


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def completion(cid: str, model: str, text: str, finish_reason: str, counts: dict, asls: dict) -> dict:
    """A whole ``chat.completion`` object; ``asls`` says which user, adapter version and session answered."""
    return {"id": cid, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                         "finish_reason": finish_reason}],
            "usage": counts, "system_fingerprint": f"asls-v{asls.get('adapter_version', 0)}", "asls": asls}


def chunk(cid: str, model: str, delta: dict, finish_reason: str | None = None, asls: dict | None = None,
          counts: dict | None = None, choices: bool = True) -> dict:
    """One ``chat.completion.chunk`` of a stream (``choices=False``: the final usage-only chunk)."""
    out = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
           "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}] if choices else []}
    if asls is not None:
        out["asls"] = asls
    if counts is not None:
        out["usage"] = counts
    return out


def openai_finish_reason(reason: str | None) -> str:
    """asls's finish reasons in OpenAI's words (an interrupted answer ends as if by its length)."""
    return "length" if reason in ("length", "interrupted") else "stop"


__all__ = ["ChatRequest", "MAX_BODY_BYTES", "RequestError", "chunk", "completion", "error_body", "parse_chat", "usage"]
