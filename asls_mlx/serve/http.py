"""The HTTP side of ``asls serve``: routes, the API key, body limits, server-sent events.

Built on the standard library's ``ThreadingHTTPServer``, as ``mlx_lm.server`` is: one thread per
connection only reads, checks and writes; the model work is the model thread's (:mod:`.worker`).
"""

from __future__ import annotations

import hmac
import json
import queue
import socket
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from asls_mlx import ConversationAssistant
from asls_mlx.serve.protocol import (
    MAX_BODY_BYTES, RequestError, bad, chunk, completion, openai_finish_reason, parse_chat, usage,
)
from asls_mlx.serve.worker import Job, ModelWorker

WAIT_FIRST_EVENT_S = 3600.0  # a request waits at most this long for its turn on the model


class ApiServer(ThreadingHTTPServer):
    daemon_threads = True  # a stuck client never blocks shutdown
    allow_reuse_address = True

    def __init__(self, address, worker: ModelWorker, api_key: str | None, max_tokens_cap: int, quiet: bool = False,
                 family: int = socket.AF_INET):
        self.address_family = family
        self.worker, self.api_key, self.max_tokens_cap, self.quiet = worker, api_key, max_tokens_cap, quiet
        super().__init__(address, Handler)


class Handler(BaseHTTPRequestHandler):
    server: ApiServer
    server_version = "asls-serve"
    protocol_version = "HTTP/1.1"
    timeout = 300  # seconds a client may take to send its request or read a chunk (a stalled one is let go)

    # -- plumbing -------------------------------------------------------------------------------
    def log_message(self, fmt: str, *args) -> None:
        if not self.server.quiet:
            super().log_message(fmt, *args)

    def _send_json(self, status: int, body: dict, headers: dict | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _send_error(self, e: RequestError) -> None:
        self.close_connection = True  # the body may not have been read: do not reuse the connection
        self._send_json(e.status, e.body())

    def _authorized(self) -> bool:
        key = self.server.api_key
        if not key:
            return True
        given = self.headers.get("Authorization", "")
        return given.startswith("Bearer ") and hmac.compare_digest(given[7:].strip().encode(), key.encode())

    def _body(self) -> object:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            raise RequestError(411, "the request needs a Content-Length header", code="length_required")
        if int(length) > MAX_BODY_BYTES:
            self._discard(int(length))
            raise RequestError(413, f"the request body is {length} bytes; at most {MAX_BODY_BYTES} are accepted",
                               code="request_too_large")
        raw = self.rfile.read(int(length))
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise bad(f"the request body is not valid JSON ({e})", code="invalid_json") from e

    def _discard(self, length: int, most: int = 16 * MAX_BODY_BYTES) -> None:
        """Read a refused body away (up to ``most`` bytes), so the client, still sending, gets the answer."""
        left = min(length, most)
        while left > 0:
            got = self.rfile.read(min(left, 1 << 16))
            if not got:
                return
            left -= len(got)

    def _route(self, method: str) -> None:
        try:
            if not self._authorized():
                raise RequestError(401, "missing or wrong API key: send 'Authorization: Bearer <key>'",
                                   "authentication_error", "invalid_api_key")
            path = urlsplit(self.path).path.rstrip("/")
            routes = {
                ("GET", "/v1/models"): self._models, ("GET", "/health"): self._health,
                ("POST", "/v1/chat/completions"): self._chat, ("POST", "/v1/asls/feedback"): self._feedback,
                ("POST", "/v1/asls/sessions/end"): self._end, ("GET", "/v1/asls/status"): self._status,
            }
            handler = routes.get((method, path))
            if handler is None:
                raise RequestError(404, f"no route {method} {path}; see GET /v1/models, POST /v1/chat/completions",
                                   "not_found_error", "unknown_route")
            handler()
        except RequestError as e:
            self._send_error(e)
        except OSError:  # the client left or stalled (broken pipe, reset, timeout): nothing to answer
            self.close_connection = True

    def do_GET(self) -> None:  # noqa: N802  (http.server's names)
        self._route("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._route("POST")

    # -- routes ---------------------------------------------------------------------------------
    def _health(self) -> None:
        self._send_json(200, {"status": "ok", "model": self.server.worker.model_id})

    def _models(self) -> None:
        model = self.server.worker.model_id
        self._send_json(200, {"object": "list", "data": [{"id": model, "object": "model", "created": 0, "owned_by": "asls"}]})

    def _user(self, value: object) -> str:
        try:
            return ConversationAssistant.check_user_name("default" if value in (None, "") else value)
        except Exception as e:  # ASLSError: a one-line reason
            raise bad(f"user: {e}", "user") from e

    def _job(self, job: Job) -> tuple[str, object]:
        self.server.worker.submit(job)
        try:
            return job.events.get(timeout=WAIT_FIRST_EVENT_S)
        except queue.Empty:
            job.cancelled.set()
            raise RequestError(503, "the model was busy for too long; try again", "server_error", "timeout") from None

    def _simple(self, kind: str, user: str, payload: dict | None = None) -> None:
        event, value = self._job(Job(kind, user, payload))
        if event == "error":
            raise value
        self._send_json(200, value)

    def _feedback(self) -> None:
        body = self._body()
        if not isinstance(body, dict):
            raise bad("the request body must be a JSON object", code="invalid_type")
        kind, text, cid = body.get("kind"), body.get("text"), body.get("completion_id")
        if kind not in ("good", "bad", "edit"):
            raise bad(f"kind must be good, bad or edit, not {kind!r}", "kind")
        if cid is not None and not isinstance(cid, str):
            raise bad("completion_id must be text (the id of a chat completion)", "completion_id", "invalid_type")
        if kind == "edit" and (not isinstance(text, str) or not text.strip() or "\x00" in text or len(text) > 100_000):
            raise bad("an edit needs text: the corrected answer (at most 100000 characters)", "text")
        self._simple("feedback", self._user(body.get("user")), {"kind": kind, "text": text, "completion_id": cid})

    def _end(self) -> None:
        body = self._body()
        if not isinstance(body, dict):
            raise bad("the request body must be a JSON object", code="invalid_type")
        self._simple("end", self._user(body.get("user")))

    def _status(self) -> None:
        query = parse_qs(urlsplit(self.path).query)
        self._simple("status", self._user((query.get("user") or [None])[0]))

    def _chat(self) -> None:
        request = parse_chat(self._body(), self.server.max_tokens_cap, ConversationAssistant.check_user_name)
        cid = f"chatcmpl-{uuid.uuid4().hex}"
        job = Job("chat", request.user, {"request": request, "id": cid})
        event, info = self._job(job)
        if event == "error":
            raise info
        try:
            (self._stream if request.stream else self._whole)(job, cid, info, request)
        except OSError:
            job.cancelled.set()  # the client left: the model loop stops and stores what was written
            raise

    def _events(self, job: Job):
        while True:
            event, value = job.events.get()
            if event == "error":
                raise value
            yield event, value
            if event == "done":
                return

    def _whole(self, job: Job, cid: str, info: dict, request) -> None:
        parts, done = [], info
        for event, value in self._events(job):
            if event == "chunk":
                parts.append(value.text)
            else:
                done = value
        self._send_json(200, completion(cid, self.server.worker.model_id, "".join(parts).strip(),
                                        openai_finish_reason(done["finish_reason"]),
                                        usage(done["prompt_tokens"], done["completion_tokens"]), _asls(done)),
                        {"x-asls-adapter-version": str(info["adapter_version"])})

    def _sse(self, body: dict | str) -> None:
        data = body if isinstance(body, str) else json.dumps(body)
        self.wfile.write(f"data: {data}\n\n".encode())
        self.wfile.flush()

    def _stream(self, job: Job, cid: str, info: dict, request) -> None:
        """Server-sent events in OpenAI's chunk format; the connection closes after ``[DONE]``."""
        model = self.server.worker.model_id
        self.close_connection = True
        self.send_response(200)
        for k, v in (("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache"), ("Connection", "close"),
                     ("x-asls-adapter-version", str(info["adapter_version"]))):
            self.send_header(k, v)
        self.end_headers()
        self._sse(chunk(cid, model, {"role": "assistant", "content": ""}, asls=_asls(info)))
        try:
            for event, value in self._events(job):
                if event == "chunk" and value.text:
                    self._sse(chunk(cid, model, {"content": value.text}))
                elif event == "done":
                    counts = usage(value["prompt_tokens"], value["completion_tokens"])
                    self._sse(chunk(cid, model, {}, openai_finish_reason(value["finish_reason"]), asls=_asls(value)))
                    if request.include_usage:
                        self._sse(chunk(cid, model, {}, counts=counts, choices=False))
        except RequestError as e:  # the model thread failed mid-answer: say so in the stream
            self._sse(e.body())
        self._sse("[DONE]")


def _asls(info: dict) -> dict:
    """The body's ``asls`` field: who answered with which adapter (0 = the base model), and where it is stored."""
    keys = ("user", "adapter_version", "turn", "session_id", "message_id")
    return {k: info[k] for k in keys if k in info}


__all__ = ["ApiServer", "Handler"]
