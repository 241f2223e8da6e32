"""Start `asls serve` in its own process (as a user does) and talk to it over HTTP."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


class ServerProcess:
    def __init__(self, proc: subprocess.Popen, url: str, log: Path):
        self.proc, self.url, self.log = proc, url, log

    def request(self, method: str, path: str, body=None, headers: dict | None = None, raw: bytes | None = None):
        """(status, parsed JSON body, headers) of one request; errors are answers too."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=600) as r:
                return r.status, json.loads(r.read() or b"null"), r.headers
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null"), e.headers

    def status(self, user: str) -> dict:
        return self.request("GET", f"/asls/status?user={user}")[1]

    def wait_for_training(self, user: str, timeout: float = 600) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            status = self.status(user)
            training = status["training"]
            if not training.get("running") and training.get("state") in ("done", "failed"):
                return status
            time.sleep(1)
        raise AssertionError(f"training of {user} did not end in {timeout} s: {self.status(user)}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_server(home: Path, model: str | None, *args: str, timeout: float = 300) -> ServerProcess:
    """`python -m asls_mlx serve --port 0 ...` with ASLS_HOME=home; returns once it listens."""
    home.mkdir(parents=True, exist_ok=True)
    log = home / "serve.log"
    env = dict(os.environ, ASLS_HOME=str(home))
    cmd = [sys.executable, "-m", "asls_mlx", "serve", "--port", "0", *(["--model", model] if model else []), *args]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env)
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = re.search(r"at (http://\S+/v1)", log.read_text())
        if found:
            return ServerProcess(proc, found.group(1), log)
        if proc.poll() is not None:
            raise AssertionError(f"asls serve exited with {proc.returncode}:\n{log.read_text()}")
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"asls serve did not start in {timeout} s:\n{log.read_text()}")
