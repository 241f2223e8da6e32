"""The terminal chat loop (minimal: streaming answers; personalization commands come with the assistant)."""

from __future__ import annotations

import argparse

from asls_mlx.cli.ui import ChatUI
from asls_mlx.engine import ChatEngine, SamplingOptions, load_model


def run_chat(args: argparse.Namespace) -> int:
    ui = ChatUI()
    with ui.console.status("loading model"):
        model, tokenizer, model_id = load_model(args.model, progress=ui.status)
    engine = ChatEngine(model, tokenizer, model_id)
    options = SamplingOptions(max_tokens=args.max_tokens, temperature=args.temperature, seed=args.seed)
    ui.banner(f"asls — {model_id}. Type /quit to leave, end a line with \\ for more lines.")
    messages: list[dict] = []
    while True:
        try:
            text = ui.prompt().strip()
        except (EOFError, KeyboardInterrupt):
            break
        if not text:
            continue
        if text in ("/quit", "/exit"):
            break
        messages.append({"role": "user", "content": text})
        ui.start_answer()
        answer, last = "", None
        try:
            for chunk in engine.stream(messages, options):
                answer += chunk.text
                ui.stream_text(chunk.text)
                last = chunk
        except KeyboardInterrupt:
            ui.end_answer("(interrupted)")
        else:
            ui.end_answer(f"{last.generation_tps:.1f} tok/s" if last else None)
        messages.append({"role": "assistant", "content": answer.strip()})
    ui.status("bye")
    return 0
