"""Chatting while the adapter trains (issue 21): a real session update in a background worker while a scripted
user chats, against the same update and the same chat each alone, on the embedded model.

    python benchmarks/chat_while_training.py             # ~5 min on a 2-core CPU; run it on a quiet machine
    python benchmarks/chat_while_training.py --quick --model DIR   # a smoke test of the script (small model)

1. A scripted user ("bench") has a 10-turn session (edits, regenerations, likes, dislikes, "shorter please")
   that ends without training; its data home is copied twice, so both updates start from the same state.
2. idle update: the background worker (``asls_mlx.background``, started as a chat starts it) on copy 1, alone.
3. idle chat: on copy 2, another user of the same home ("chatter") sends a message every ``--interval`` s, in
   conversations of two turns (turn 2 reuses turn 1's prompt cache), ``--messages`` times, nothing training.
4. chat during the update: on copy 2, the same chatter and the same worker at once; the chatter keeps a message
   every ``--interval`` s until the worker exits. The worker pauses while an answer is being written (any
   user's: they share the CPU) and runs at a lower OS priority.

Reported: decode tok/s and turn-2 time to first token (medians) during the update vs idle; the update's
wall-clock duration (model load included) and the seconds it spent paused; whether both updates made the same
decision with the same numbers (outcome, version, steps, losses, held-out and retention metrics, the gate's
answers). Goals (2-core CPU): decode >= 0.8x idle, turn-2 TTFT <= 0.3 s, update <= 1.5x idle, same decision.
``--no-pause`` runs the same with ``yield_to_chat=False`` (the update keeps going at its lower priority):
pausing gives the chat its whole speed but stretches the update by the time spent answering.
Writes results/chat_while_training.json (``--no-pause``: chat_while_training-no-pause.json; ``--quick``: -quick).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

SESSION = [
    "Tell me about the moon.", "How do I boil an egg?", "What is a black hole?", "Give me tips for sleeping better.",
    "Explain what a mortgage is.", "Tell me about honey bees.", "What is photosynthesis?", "How do vaccines work?",
    "Tell me about chess.",
]
CHAT = ["What is the capital of France?", "Explain photosynthesis briefly.", "Give me three tips for sleeping better.",
        "How do I reverse a list in Python?", "What is a black hole?", "Write a haiku about autumn."]
FOLLOW_UP = "Now say that again in one sentence."
USER, CHATTER = "bench", "chatter"
# the run's numbers that must not depend on the load (what the gate decided on); seconds and timings do
TIMING_KEYS = {"seconds", "timings"}


def _config(quick: bool):
    from asls_mlx import AssistantConfig

    if quick:
        return AssistantConfig(max_tokens=16, self_labelled_prompts=2, self_labelled_k=2, self_labelled_max_tokens=16,
                               max_steps=4)
    return AssistantConfig(max_tokens=96)


# -- the processes -----------------------------------------------------------------------------------
def prepare(model: str | None, quick: bool) -> dict:
    """The scripted session (in this process's ASLS_HOME), ended without training."""
    from asls_mlx import Assistant

    prompts = SESSION
    with Assistant(user=USER, model=model, config=_config(quick)) as a:
        for i, prompt in enumerate(prompts):
            reply = a.chat(prompt)
            if i % 2 == 0:
                a.edit(" ".join(reply.text.split(". ")[0].split()[:20]).rstrip(".") + ".")
            elif i in (1, 5):
                a.regenerate()
                a.good()
            else:
                a.bad()
        a.chat("Please keep your answers shorter.")
        summary = a.end_session(train="none")
        return {"session_id": summary.session_id, "model_id": a.engine.model_id, "pairs": summary.pairs_mined,
                "config": a.config.to_dict()}


def chatter(model: str | None, interval: float, messages: int, stop_file: str, max_tokens: int) -> list[dict]:
    """Send a message every ``interval`` s (``messages`` of them, or until ``stop_file`` exists); each answer's
    turn, time to first token and decode speed."""
    from asls_mlx import Assistant, AssistantConfig

    config = AssistantConfig(max_tokens=max_tokens, train_after_session="none")
    turns, stop = [], Path(stop_file) if stop_file else None
    with Assistant(user=CHATTER, model=model, config=config) as a:
        for _ in a.stream("Hello"):  # the model loaded and warm before the first measured message
            pass
        a.end_session(train="none")
        print("ready", flush=True)
        i, next_at = 0, time.monotonic()
        while (stop is None and i < messages) or (stop is not None and not stop.exists()):
            if time.monotonic() < next_at:
                time.sleep(min(0.1, next_at - time.monotonic()))
                continue
            next_at = time.monotonic() + interval
            turn = 1 + i % 2
            text = CHAT[(i // 2) % len(CHAT)] if turn == 1 else FOLLOW_UP
            started, ttft, last = time.perf_counter(), None, None
            for chunk in a.stream(text):
                ttft = time.perf_counter() - started if ttft is None else ttft
                last = chunk
            turns.append({"turn": turn, "ttft": ttft, "decode_tps": last.generation_tps if last else 0.0,
                          "tokens": last.generation_tokens if last else 0, "at": started})
            if turn == 2:
                a.end_session(train="none")
            i += 1
    return turns


def run_update(home: Path, info: dict, model: str | None) -> dict:
    """The background worker, started as a chat starts it, on ``home``; waits for it."""
    from asls_mlx.background import BackgroundTrainer

    os.environ["ASLS_HOME"] = str(home)
    folder = home / "users" / "1"
    worker = BackgroundTrainer(folder)
    started = time.perf_counter()
    worker.start(USER, model or "default", info["config"], [info["session_id"]])
    worker.wait()
    seconds = time.perf_counter() - started
    done = json.loads((folder / "train_progress.json").read_text())
    return {"seconds": seconds, "paused_s": done.get("paused_s", 0.0), "state": done.get("state"),
            "message": done.get("message"), "run": _last_run(home)}


def _last_run(home: Path) -> dict:
    from asls_mlx.store import open_store

    os.environ["ASLS_HOME"] = str(home)
    with open_store() as store:
        runs = store.training_runs(store.get_user(USER).id)
    if not runs:  # nothing to train on: the worker's message says why
        return {"status": "none", "reason": None, "version": None, "metrics": {}}
    run = runs[-1]
    return {"status": run.status, "reason": run.reason, "version": run.adapter_version, "metrics": run.metrics or {}}


def _spawn(home: Path, *args: str) -> subprocess.Popen:
    env = dict(os.environ, ASLS_HOME=str(home))
    return subprocess.Popen([sys.executable, __file__, *args], env=env, stdout=subprocess.PIPE, text=True)


def _result(proc: subprocess.Popen) -> object:
    out, _ = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"a benchmark process failed ({proc.args[2:]})")
    return json.loads(out.strip().splitlines()[-1])


def chat_alone(home: Path, args) -> list[dict]:
    return _result(_spawn(home, "--chat", *_chat_args(args), "--messages", str(args.messages)))


def chat_during_update(home: Path, info: dict, args) -> tuple[list[dict], dict]:
    stop = home / "stop-chatting"
    proc = _spawn(home, "--chat", *_chat_args(args), "--stop-file", str(stop))
    assert proc.stdout.readline().strip() == "ready"
    update = run_update(home, info, args.model)
    stop.touch()
    return _result(proc), update


def _chat_args(args) -> list[str]:
    return ["--interval", str(args.interval), "--max-tokens", str(args.max_tokens)] + (
        ["--model", args.model] if args.model else [])


# -- the comparison ------------------------------------------------------------------------------------
def _median(turns: list[dict], key: str, turn: int | None = None) -> float | None:
    values = [t[key] for t in turns if (turn is None or t["turn"] == turn) and t[key] is not None]
    return statistics.median(values) if values else None


def same_decision(idle: dict, busy: dict) -> list[str]:
    """The run fields and metrics that differ between the two updates (timings left out)."""
    diff = [k for k in ("status", "reason", "version") if idle[k] != busy[k]]
    a, b = idle["metrics"], busy["metrics"]
    return diff + sorted(k for k in set(a) | set(b) if k not in TIMING_KEYS and a.get(k) != b.get(k))


def rows_of(chat_idle, chat_busy, update_idle, update_busy, differ) -> list[tuple[str, object, str]]:
    """One table row per figure the issue names, each with its goal."""
    tps_idle, tps_busy = _median(chat_idle, "decode_tps"), _median(chat_busy, "decode_tps")
    ttft_idle, ttft_busy = _median(chat_idle, "ttft", 2), _median(chat_busy, "ttft", 2)
    run_i, run_b = update_idle["run"], update_busy["run"]
    return [
        ("chat decode tok/s, idle", tps_idle, ""),
        ("chat decode tok/s, during the update", tps_busy, ""),
        ("decode during / idle", tps_busy / tps_idle if tps_idle and tps_busy else None, ">= 0.8"),
        ("turn-2 TTFT (s), idle", ttft_idle, ""),
        ("turn-2 TTFT (s), during the update", ttft_busy, "<= 0.3"),
        ("turn-1 TTFT (s), idle / during", f"{_median(chat_idle, 'ttft', 1) or 0:.2f} / {_median(chat_busy, 'ttft', 1) or 0:.2f}", ""),
        ("messages during the update", len(chat_busy), ""),
        ("update (s), alone", update_idle["seconds"], ""),
        ("update (s), while chatting", update_busy["seconds"], ""),
        ("update while chatting / alone", update_busy["seconds"] / update_idle["seconds"], "<= 1.5"),
        ("update paused for answers (s)", update_busy["paused_s"], ""),
        ("outcome, alone / while chatting", f"{run_i['status']} v{run_i['version']} / {run_b['status']} v{run_b['version']}", ""),
        ("steps, alone / while chatting", f"{run_i['metrics'].get('steps')} / {run_b['metrics'].get('steps')}", ""),
        ("same decision and metrics", "yes" if not differ else "no: " + ", ".join(differ), "yes"),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model directory (default: the embedded model)")
    ap.add_argument("--quick", action="store_true", help="a smoke test: short answers, little mining, 4 steps, a message every 2 s, no warm-up")
    ap.add_argument("--interval", type=float, default=None, help="seconds between the chatter's messages (default 10)")
    ap.add_argument("--messages", type=int, default=None, help="messages of the idle chat (default 6)")
    ap.add_argument("--max-tokens", type=int, default=None, help="longest chat answer (default 128)")
    ap.add_argument("--no-pause", action="store_true", help="the update does not pause for answers during the chat "
                    "(AssistantConfig(yield_to_chat=False): only its lower OS priority); compare with a run without it")
    ap.add_argument("--chat", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--prepare", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--stop-file", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.interval = args.interval or (2.0 if args.quick else 10.0)
    args.messages = args.messages or (4 if args.quick else 6)
    args.max_tokens = args.max_tokens or (16 if args.quick else 128)

    import asls_mlx  # noqa: F401  (BLAS first)

    if args.prepare:
        print(json.dumps(prepare(args.model, args.quick)))
        return
    if args.chat:
        print(json.dumps(chatter(args.model, args.interval, args.messages, args.stop_file, args.max_tokens)))
        return
    run(args)


def run(args) -> None:
    from common import report

    from asls_mlx.session_update import base_model_cache

    with tempfile.TemporaryDirectory(prefix="asls-bench-chat-training-") as tmp:
        base = Path(tmp) / "session"
        info = _result(_spawn(base, "--prepare", *(["--model", args.model] if args.model else []),
                              *(["--quick"] if args.quick else [])))
        homes = {name: Path(tmp) / name for name in ("warm", "idle", "busy")}
        for home in homes.values():
            shutil.copytree(base, home)
        cold = not base_model_cache(info["model_id"]).directory.is_dir()
        if cold and not args.quick:  # both measured updates are "later" ones (quick: a smoke test, no warm-up)
            print("first update on this machine: warming the base model's cache", file=sys.stderr, flush=True)
            run_update(homes["warm"], info, args.model)
        print("update alone ...", file=sys.stderr, flush=True)
        update_idle = run_update(homes["idle"], info, args.model)
        print("chat alone ...", file=sys.stderr, flush=True)
        chat_idle = chat_alone(homes["busy"], args)
        print("chat during the update ...", file=sys.stderr, flush=True)
        busy = dict(info, config=dict(info["config"], yield_to_chat=not args.no_pause))
        chat_busy, update_busy = chat_during_update(homes["busy"], busy, args)
    differ = same_decision(update_idle["run"], update_busy["run"])
    name = "chat_while_training" + ("-no-pause" if args.no_pause else "") + ("-quick" if args.quick else "")
    report(name, rows_of(chat_idle, chat_busy, update_idle, update_busy, differ),
           {"settings": {"interval_s": args.interval, "idle_messages": args.messages, "max_tokens": args.max_tokens,
                         "model": info["model_id"], "session_pairs": info["pairs"], "quick": args.quick,
                         "pause_for_answers": not args.no_pause},
            "chat_idle": chat_idle, "chat_during_update": chat_busy, "update_idle": update_idle,
            "update_during_chat": update_busy})


if __name__ == "__main__":
    main()
