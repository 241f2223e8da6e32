"""``asls serve``: an OpenAI-compatible local server that learns each user.

    asls serve                       # http://127.0.0.1:8080/v1, the embedded model
    from openai import OpenAI
    client = OpenAI(base_url="http://127.0.0.1:8080/v1", api_key="none")
    client.chat.completions.create(model="asls", user="sam", messages=[{"role": "user", "content": "Hi"}])

The ``user`` field picks the asls user (``default`` when absent); each answer uses that user's active
adapter and profile, and says which (``x-asls-adapter-version`` header, ``asls`` field of the body;
0 = the base model). Every exchange is stored as the chat stores it; sessions end after an idle time or
on ``POST /v1/asls/sessions/end``, and the user's adapter update then trains in the background.
Also ``POST /v1/asls/feedback`` (good | bad | edit) and ``GET /v1/asls/status?user=U``.

Layer 4: uses only the public API (``asls_mlx.ConversationAssistant``).
"""

from __future__ import annotations

import ipaddress
import signal
import socket
import sys
import threading
from typing import Callable

from asls_mlx import ASLSError, AssistantConfig
from asls_mlx.serve.http import ApiServer
from asls_mlx.serve.worker import ModelWorker

DEFAULT_PORT = 8080
MAX_TOKENS_CAP = 4096  # the most tokens one answer may ask for


def is_loopback(host: str) -> bool:
    """True when ``host`` is reachable from this machine only (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Server:
    """The server, driven from Python (what ``asls serve`` runs).

    Args:
        host, port: where to listen (port 0: a free one; see ``url`` after ``start``).
        api_key: required as ``Authorization: Bearer KEY`` when given; a host other than loopback needs one.
        model: as ``Assistant(model=...)`` (default: the embedded model).
        config: the :class:`~asls_mlx.AssistantConfig` of every user.
        idle_minutes: a user's session ends after this long without a request.

    ``start()`` binds the port and loads the model; ``run()`` then serves on the calling thread until
    ``stop()`` (from a signal handler or another thread). Call both from the main thread: the model
    must run on the thread that loaded it.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT, api_key: str | None = None,
                 model: str | None = None, config: AssistantConfig | None = None, idle_minutes: float = 30.0,
                 quiet: bool = False, log: Callable[[str], None] | None = None):
        if not is_loopback(host) and not api_key:
            raise ASLSError(f"--host {host} is reachable from other machines: give --api-key KEY (clients send it as a Bearer token)")
        if idle_minutes <= 0:
            raise ASLSError(f"the idle time must be positive, not {idle_minutes} minutes")
        if not 0 <= port <= 65535:
            raise ASLSError(f"--port must be between 0 and 65535, not {port}")
        self.host, self.port, self.api_key, self.quiet = host, port, api_key, quiet
        self.worker = ModelWorker(model, config or AssistantConfig(), idle_minutes * 60.0, log=log)
        self.httpd: ApiServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    def start(self) -> "Server":
        """Bind the port (a busy port fails before the model loads), load the model, accept connections."""
        try:
            family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            self.httpd = ApiServer((self.host, self.port), self.worker, self.api_key, MAX_TOKENS_CAP, self.quiet, family)
        except OSError as e:
            raise ASLSError(f"cannot listen on {self.host}:{self.port} ({e.strerror or e}); pick another --port") from e
        self.port = self.httpd.server_address[1]
        try:
            self.worker.load()
        except BaseException:
            self.httpd.server_close()
            raise
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="asls-http", daemon=True)
        self._thread.start()
        return self

    def run(self) -> None:
        """Serve until :meth:`stop`; then shut down gracefully (see ``ModelWorker.run``)."""
        try:
            self.worker.run()
        finally:
            if self._thread is not None:
                self.httpd.shutdown()  # waits for the accept loop to end
                self._thread = None
            self.httpd.server_close()

    def stop(self) -> None:
        """Ask :meth:`run` to finish (safe from a signal handler: it only sets a flag)."""
        self.worker.stop_requested = True


def serve(host: str = "127.0.0.1", port: int = DEFAULT_PORT, api_key: str | None = None, model: str | None = None,
          config: AssistantConfig | None = None, idle_minutes: float = 30.0, quiet: bool = False) -> int:
    """Run until Ctrl-C or SIGTERM, then shut down gracefully: the answer being written is stored,
    background training goes on in its own process, every user's lock is released."""
    say = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    server = Server(host, port, api_key, model, config, idle_minutes, quiet, log=say)
    previous = {s: signal.signal(s, lambda *_: server.stop()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        say("asls serve: loading the model ...")
        server.start()
        say(f"asls serve: {server.worker.model_id} at {server.url} (Ctrl-C to stop)")
        server.run()
        say("asls serve: stopped")
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return 0


def main(args) -> int:
    """``asls serve``'s arguments (``asls_mlx.cli``) to :func:`serve`."""
    config = AssistantConfig(train_time_limit_s=args.time_limit) if args.time_limit else AssistantConfig()
    return serve(args.host, args.port, args.api_key, args.model, config, args.idle_minutes, args.quiet)


__all__ = ["DEFAULT_PORT", "Server", "is_loopback", "main", "serve"]
