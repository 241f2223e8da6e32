"""`asls serve` on the embedded model: user-switch (adapter swap) latency, and time to first token and
decode speed through HTTP vs in-process.

    python benchmarks/serve.py              # ~2 min on a 2-core CPU
    python benchmarks/serve.py --reps 5 --tokens 96

- switch: the model loop's ``_switch_to(user)`` when another user's adapter is in the model (read the
  version folder, check it, write the weights in place), between users who each have a rank-8 adapter on
  the last 16 blocks (what training commits); ``same user`` is the per-request check when nothing changed.
- HTTP vs in-process: the same greedy request (a new conversation of a new user, so both pay the switch
  and the whole prompt); in-process is ``ConversationAssistant.stream_conversation`` on this process's
  model, HTTP is ``asls serve`` in its own process read as server-sent events. Time to first token counts
  from sending the request to the first text; decode tok/s is tokens after the first over the time after it.
Writes results/serve.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ["ASLS_HOME"] = tempfile.mkdtemp(prefix="asls-bench-serve-")  # never the user's own data

import asls_mlx  # noqa: E402,F401  (BLAS first)
from benchmarks.common import report  # noqa: E402

PROMPT = "Tell me about the history of lighthouses."


def make_adapters(worker, users: list[str]) -> None:
    """A committed, active rank-8 adapter for each user (random B: a real one changes the logits too)."""
    import mlx.core as mx

    from asls_mlx.adaptation.lora import attach_lora, lora_config, lora_parameters, set_lora_weights
    from asls_mlx.adaptation.versions import AdapterRepo
    from asls_mlx.session_update import user_dir

    model = worker._engine.model
    attach_lora(model, worker.config.learning.lora)
    for i, user in enumerate(users):
        a = worker._assistant(user)
        weights = {k: (mx.random.normal(v.shape, key=mx.random.key(i)) * 0.01 if k.endswith("lora_b") else v)
                   for k, v in lora_parameters(model).items()}
        set_lora_weights(model, weights)
        repo = AdapterRepo(user_dir(a.store, a.user) / "adapters")
        version = repo.commit(model, lora_config(model), {"base_model": worker.model_id})
        a.store.add_adapter_version(a.user.id, str(repo.path(version)), worker.model_id, status="active", version=version)


def switch_times(worker, users: list[str], reps: int) -> dict:
    out = {"other user (adapter swap)": [], "same user (store check)": [], "to the base model": []}
    worker._switch_to("base-user")
    for _ in range(reps):
        for user in users:
            t = time.perf_counter()
            worker._switch_to(user)
            out["other user (adapter swap)"].append(time.perf_counter() - t)
            t = time.perf_counter()
            worker._switch_to(user)
            out["same user (store check)"].append(time.perf_counter() - t)
        t = time.perf_counter()
        worker._switch_to("base-user")
        out["to the base model"].append(time.perf_counter() - t)
    return {k: 1000 * statistics.median(v) for k, v in out.items()}


def in_process(worker, reps: int, tokens: int) -> list[tuple[float, float]]:
    runs = []
    for i in range(reps):
        user = f"inproc{i}"
        start = time.perf_counter()
        a = worker._switch_to(user)
        first, n = None, 0
        for chunk in a.stream_conversation([{"role": "user", "content": PROMPT}], temperature=0, max_tokens=tokens):
            if chunk.text and first is None:
                first = time.perf_counter()
            n += 1
        end = time.perf_counter()
        runs.append((first - start, (n - 1) / (end - first)))
    return runs


def over_http(url: str, reps: int, tokens: int) -> list[tuple[float, float]]:
    runs = []
    for i in range(reps):
        body = json.dumps({"model": "asls", "user": f"http{i}", "stream": True, "temperature": 0, "max_tokens": tokens,
                           "stream_options": {"include_usage": True},
                           "messages": [{"role": "user", "content": PROMPT}]}).encode()
        req = urllib.request.Request(url + "/chat/completions", data=body, headers={"Content-Type": "application/json"})
        start = time.perf_counter()
        first, n, completion = None, 0, 0
        with urllib.request.urlopen(req, timeout=600) as r:
            for line in r:
                if not line.startswith(b"data: {"):
                    continue
                event = json.loads(line[6:])
                if event.get("usage"):
                    completion = event["usage"]["completion_tokens"]
                elif event["choices"] and event["choices"][0]["delta"].get("content"):
                    first = first or time.perf_counter()
                    n += 1
        end = time.perf_counter()
        # a chunk is a token, except the EOS token and bytes of one character held for the next: count tokens
        runs.append((first - start, (max(completion, n) - 1) / (end - first)))
    return runs


def start_server(model_dir: str) -> tuple[subprocess.Popen, str]:
    log = Path(os.environ["ASLS_HOME"]) / "serve.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "asls_mlx", "serve", "--port", "0", "--quiet", "--model", model_dir],
                                stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1])))
    for _ in range(600):
        found = re.search(r"at (http://\S+/v1)", log.read_text())
        if found:
            return proc, found.group(1)
        if proc.poll() is not None:
            break
        time.sleep(0.5)
    proc.kill()
    raise SystemExit(f"asls serve did not start:\n{log.read_text()}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()

    from asls_mlx import AssistantConfig, default_model_dir
    from asls_mlx.serve.worker import ModelWorker

    model_dir = str(default_model_dir())
    worker = ModelWorker(model_dir, AssistantConfig(), log=lambda m: None)
    worker.load()
    users = [f"user{i}" for i in range(4)]
    make_adapters(worker, users)
    switch = switch_times(worker, users, reps=max(5, args.reps))
    local = in_process(worker, args.reps + 1, args.tokens)[1:]  # the first run warms up
    for a in worker._assistants.values():
        a.close()
    proc, url = start_server(model_dir)
    try:
        over_http(url, 1, 8)  # warm-up
        http = over_http(url, args.reps, args.tokens)
    finally:
        proc.terminate()
        proc.wait(60)
    ttft = [statistics.median(r[0] for r in runs) * 1000 for runs in (local, http)]
    tps = [statistics.median(r[1] for r in runs) for runs in (local, http)]
    rows = [(f"user switch ms: {k}", v, "<= 100" if "swap" in k else "") for k, v in switch.items()]
    rows += [("time to first token ms, in-process", ttft[0], ""), ("time to first token ms, HTTP", ttft[1], ""),
             ("HTTP speed vs in-process, time to first token (in-process ms / HTTP ms)", ttft[0] / ttft[1], ">= 0.9"),
             ("decode tok/s, in-process", tps[0], ""), ("decode tok/s, HTTP", tps[1], ""),
             ("HTTP / in-process, decode tok/s", tps[1] / tps[0], ">= 0.9")]
    report("serve", rows, {"reps": args.reps, "tokens": args.tokens, "prompt": PROMPT})


if __name__ == "__main__":
    main()
