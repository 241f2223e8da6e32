"""The background trainer: `python -m asls_mlx.background --user NAME ...`, started by the assistant.

It runs in its own process (its own copy of the model), so the chat stays responsive and a crash or
kill here cannot corrupt the chat: adapter versions are committed atomically and the store row that
activates a version is written last. The chat picks the new version up at its next turn. SIGTERM
stops it between steps; the previous adapter stays active.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="asls-background")
    parser.add_argument("--user", required=True)
    parser.add_argument("--model", default="default")
    parser.add_argument("--config", default="{}")
    parser.add_argument("--sessions", default="")
    args = parser.parse_args(argv)

    import asls_mlx  # noqa: F401  (BLAS first)
    from asls_mlx.assistant import Assistant, AssistantConfig, write_progress
    from asls_mlx.engine import ChatEngine, load_model
    from asls_mlx.errors import ASLSError
    from asls_mlx.locks import FileLock
    from asls_mlx.store import open_store

    stop = {"requested": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(requested=True))
    config_data = json.loads(args.config)
    if config_data.get("pair_sources") is not None:
        config_data["pair_sources"] = frozenset(config_data["pair_sources"])
    config = AssistantConfig(**config_data)
    sessions = [int(s) for s in args.sessions.split(",") if s]

    store = open_store()
    user = store.get_or_create_user(args.user)
    user_dir = store.path.parent / "users" / str(user.id)
    store.close()
    progress_file = user_dir / "train_progress.json"
    lock = FileLock(user_dir / "train.lock")
    if not lock.acquire():
        print("asls-background: training already running for this user", file=sys.stderr)
        return 0
    write_progress(progress_file, state="running", step=0, total=0, message="loading model")
    try:
        model, tokenizer, model_id = load_model(None if args.model == "default" else args.model, progress=lambda m: None)
        learner = Assistant(args.user, config=config, engine=ChatEngine(model, tokenizer, model_id), exclusive=False)
        write_progress(progress_file, state="running", step=0, total=0, message="mining self-labelled pairs")
        learner.recover()
        learner.mine_self_labelled(sessions)

        def on_progress(p):
            write_progress(progress_file, state="running", step=p.step, total=p.total, loss=p.loss, message="training")

        report = learner.run_update(on_progress, lambda: stop["requested"], sessions)
        learner.close()
        write_progress(progress_file, state="done", committed=report.committed, version=report.version, message=report.summary())
        return 0
    except ASLSError as e:
        write_progress(progress_file, state="failed", message=str(e))
        print(f"asls-background: {e}", file=sys.stderr)
        return 1
    finally:
        lock.release()


if __name__ == "__main__":
    sys.exit(main())
