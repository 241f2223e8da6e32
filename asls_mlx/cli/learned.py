"""What asls learned, and taking part of it back: `asls profile --evidence`, `asls forget --feature/--pair`,
and the chat's `/learned` and `/forget pair N` / `/forget feature X`. Public API only; drawn through `ui`."""

from __future__ import annotations

import datetime as dt

from asls_mlx import ASLSError
from asls_mlx.cli.ui import ChatUI

KIND_WORDS = {"statement": "you said", "correction": "you asked", "edit": "you edited to", "prompt": "you asked about"}


def show_learned(a, ui: ChatUI, pairs: bool = True) -> None:
    """Each profile feature: what it says, its confidence, and what the user said or did that put it there;
    then the newest preference pairs with the ids `/forget pair N` takes."""
    features = a.learned()
    if not features:
        ui.status("nothing learned yet: say what you prefer, correct or edit an answer")
    blocks = []
    for f in features:
        where = "in the prompt" if f.claimed else "not in the prompt (too unsure)"
        lines = [f"- {KIND_WORDS.get(e.kind, e.kind)} “{_clip(e.text, 70)}” (session {e.session_id}, "
                 f"{dt.datetime.fromtimestamp(e.at).strftime('%Y-%m-%d %H:%M')})" for e in f.evidence]
        if f.supporting:
            lines.append(f"- and {f.supporting} answers you kept or liked that fit it")
        blocks.append(f"**{f.name}**: {f.says} · confidence {f.confidence:.2f} · {where}\n" + "\n".join(lines))
    if blocks:
        ui.markdown(f"### What asls learned about {a.user.name}\n\n" + "\n\n".join(blocks))
    if pairs:
        show_pairs(a, ui)
    ui.status("remove one: /forget feature NAME, /forget pair N (or `asls forget --feature NAME` / `--pair N`)")


def show_pairs(a, ui: ChatUI, limit: int = 10) -> None:
    rows = []
    for p in a.pairs(limit):
        preferred, over = (p.chosen, p.rejected) if p.rejected is not None else (
            (p.chosen, "(liked on its own)") if p.label > 0 else ("(disliked on its own)", p.chosen))
        rows.append([p.id, p.source, p.split, _clip(p.prompt, 30), _clip(preferred, 40), _clip(over, 40)])
    if rows:
        ui.table("newest preference pairs (val: held out to check training)", ["pair", "from", "split", "prompt", "preferred", "over"], rows)


def forget_command(a, ui: ChatUI, rest: str) -> bool:
    """The chat's `/forget pair N` and `/forget feature NAME`; False when ``rest`` is neither."""
    what, _, arg = rest.strip().partition(" ")
    if what not in ("pair", "feature"):
        return False
    if not arg.strip():
        raise ASLSError(f"/forget {what} needs a {'number' if what == 'pair' else 'name'} (`/learned` lists them)")
    (forget_pair if what == "pair" else forget_feature)(a, ui, arg.strip())
    return True


def forget_feature(a, ui: ChatUI, name: str) -> None:
    result = a.forget_feature(name)
    removed = ", ".join(f"v{v}" for v in result.pairs.tainted_versions)
    n = result.pairs.pairs
    ui.status(f"removed {result.feature} ({result.said}) from the profile; {n} pair{'' if n == 1 else 's'} that taught it "
              f"left training" + (f"; adapters trained on {'it' if n == 1 else 'them'} withdrawn: {removed}" if removed else ""))


def forget_pair(a, ui: ChatUI, text: str) -> None:
    try:
        pair_id = int(str(text).strip().lstrip("#"))
    except ValueError:
        raise ASLSError(f"not a pair number: {str(text).strip()!r} (`/learned` lists them)") from None
    summary = a.forget_pair(pair_id)
    removed = ", ".join(f"v{v}" for v in summary.tainted_versions)
    ui.status(f"pair {pair_id} removed: it will not be trained on" + (f"; adapters trained on it withdrawn: {removed}" if removed else ""))


def _clip(text: str, n: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"
