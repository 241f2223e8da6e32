"""Contrastive pair mining: the user's behaviour in a session -> weighted (prompt, chosen, rejected).

Sources and weights (how sure we are that chosen really is preferred):
- edit 1.0: the user's edited text > the original answer, as shown: with the end a token budget cut off (paired
  against its finished head instead, a closing question the user added was learnt far less often, since the
  lesson includes ending sooner; docs/learning.md);
- thumbs 0.9: a thumbed-up answer > a thumbed-down one to the same prompt; a lone thumbs-down pairs
  with ``rewrite(answer)`` if a rewriter is given (0.5), else stays unpaired (label -1, 0.5); a lone
  thumbs-up is unpaired (label +1, 0.5) — for a KTO-style loss;
- correction 0.8: the answer after "shorter please" > the answer before it (0.5 for "no, I meant").
- regenerate 0.7: the answer the user kept (thumbed up, or the final one they moved on from) > each
  discarded one;
- self: labelled by the profile, not by the user.
  0.5 when the profile claims short answers: an answer the user turned down (thumbs-down, regenerated, corrected)
  and did not edit, cut to its opening sentences at the user's length (``trim.trimmed``) > it (``length_pairs``);
  0.5 x margin: for this session's prompts and a few past ones, ``generate`` samples k answers,
  the profile scorer ranks them (degenerate ones always lose), best > worst if the margin is large.
Then: drop degenerate pairs, de-duplicate by normalised text hash (stronger sources first), cap
pairs per prompt, and split by prompt hash: ~20% of prompts are held out for validation — stable,
and a prompt's pairs never straddle train and val.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from typing import TYPE_CHECKING

from asls_mlx.profiling.profile import Profile
from asls_mlx.profiling.acknowledgement import strip_acknowledgement
from asls_mlx.profiling.additions import compose_correction
from asls_mlx.profiling.quality import is_acceptable, quality_issues
from asls_mlx.profiling.scorer import score
from asls_mlx.profiling.signals import classify_followup
from asls_mlx.profiling.trim import short_length, trimmed
from asls_mlx.profiling.profile_update import _user, load_profile
from asls_mlx.store.records import PreferencePair, normalize_text, pair_hash

if TYPE_CHECKING:
    from asls_mlx.store import Message, Store, User

Generate = Callable[[str, int, int], list[str]]
WEIGHTS = {"edit": 1.0, "thumbs": 0.9, "correction": 0.8, "rephrase": 0.5, "regenerate": 0.7,
           "unpaired": 0.5, "rewrite": 0.5, "trim": 0.5, "self": 0.5}
SOURCE_ORDER = ("edit", "thumbs", "correction", "regenerate", "self")  # dedupe keeps the first
MIN_MARGIN = 0.15  # self-labelled: a smaller score gap is noise, not a preference
# Training also imitates the chosen answer (the SFT term), so a self-labelled chosen answer must fit
# the profile itself, not just beat a worse sample: a 41-word answer chosen over a 51-word one, for a
# user who edits answers down to 20 words, teaches long answers.
MIN_CHOSEN_FIT = 0.6
MAX_PER_PROMPT = 4  # one chatty prompt must not dominate a training batch
SELF_PAST_PROMPTS = 4  # past prompts revisited per session for self-labelling
VAL_BUCKETS = 5  # 1 in 5 prompts held out (~20%)
# Whether mining adds the trimmed answers' pairs unless told (``AssistantConfig.length_pairs`` follows this).
LENGTH_PAIRS = False
TURNED_DOWN = frozenset({"thumbs_down", "correction", "regenerate"})  # feedback that says "not this answer"


def _turns(store: Store, session_id: int) -> list[tuple[Message, list[Message]]]:
    """(user message, its answers in order: discarded alternatives then the active one)."""
    msgs = store.messages(session_id)
    answers: dict[int, list[Message]] = {}
    for m in msgs:
        if m.role == "assistant" and m.parent_id is not None:
            answers.setdefault(m.parent_id, []).append(m)
    return [(m, answers.get(m.id, [])) for m in msgs if m.role == "user"]


def _session_pairs(store: Store, session_id: int, rewrite: Callable[[str], str] | None,
                   trim_words: int | None = None) -> list[PreferencePair]:
    fb: dict[int, set[str]] = {}
    corr: dict[int, dict] = {}
    for f in store.feedback(session_id=session_id):
        fb.setdefault(f.message_id, set()).add(f.kind)
        if f.kind == "correction":
            corr[f.message_id] = f.payload
    msgs = {m.id: m for m in store.messages(session_id)}
    by_source: dict[str, list[PreferencePair]] = {s: [] for s in SOURCE_ORDER}

    def pair(src: str, q: Message, chosen: str, rejected: str | None, weight: float, ids: tuple,
             label: int = 0) -> None:
        by_source[src].append(PreferencePair(q.content, chosen, rejected, src, weight, label=label,
                                             message_ids=ids, session_id=session_id))

    for q, answers in _turns(store, session_id):
        for a in answers:  # edit: what the user wrote beats what we wrote
            if a.edited_content is not None:
                pair("edit", q, a.edited_content, a.content, WEIGHTS["edit"], (q.id, a.id))
        ups = [a for a in answers if "thumbs_up" in fb.get(a.id, ())]
        downs = [a for a in answers if "thumbs_down" in fb.get(a.id, ())]
        for up in ups:
            for down in downs:
                pair("thumbs", q, up.content, down.content, WEIGHTS["thumbs"], (q.id, up.id, down.id))
        if downs and not ups:
            for down in downs:
                better = rewrite(down.content) if rewrite else None
                if better and normalize_text(better) != normalize_text(down.content):
                    pair("thumbs", q, better, down.content, WEIGHTS["rewrite"], (q.id, down.id))
                else:
                    pair("thumbs", q, down.content, None, WEIGHTS["unpaired"], (q.id, down.id), label=-1)
        if ups and not downs:
            for up in ups:
                pair("thumbs", q, up.content, None, WEIGHTS["unpaired"], (q.id, up.id), label=1)
        if len(answers) > 1:  # regenerate: kept > discarded
            active = [a for a in answers if a.superseded_by is None]
            kept = ups[-1] if ups else (active[0] if active else None)
            if kept is not None and not fb.get(kept.id, set()) & {"thumbs_down", "correction",
                                                                   "regenerate"}:
                for a in answers:
                    if a.id != kept.id:
                        pair("regenerate", q, kept.content, a.content, WEIGHTS["regenerate"],
                             (q.id, kept.id, a.id))
        by_source["self"] += _trimmed_pairs(q, answers, fb, trim_words, session_id) if trim_words else []
        for a in answers:  # correction: the answer to the follow-up beats the corrected one
            payload = corr.get(a.id)
            follow = msgs.get(payload.get("followup_message_id")) if payload else None
            if follow is None:
                continue
            after = [m for m in msgs.values() if m.parent_id == follow.id and m.role == "assistant"
                     and m.superseded_by is None]
            if after:
                w = WEIGHTS["rephrase"] if payload.get("kind") == "rephrase" else WEIGHTS["correction"]
                # "You're right, I'll keep it short." answers the follow-up, not the first prompt
                if (chosen := compose_correction(follow.content, a.content, strip_acknowledgement(after[0].content))):
                    pair("correction", q, chosen, a.content, w, (q.id, a.id, follow.id, after[0].id))
    # A follow-up like "shorter please" is not a prompt of its own: drop pairs whose prompt it is.
    followups = {c.get("followup_message_id") for c in corr.values()}
    return [p for src in SOURCE_ORDER for p in by_source[src] if not set(p.message_ids[:1]) & followups]


def _trimmed_pairs(q: Message, answers: list[Message], fb: dict[int, set[str]], words: int,
                   session_id: int) -> list[PreferencePair]:
    """An answer the user turned down and did not edit, cut to ``words`` (``trim.trimmed``), beats it."""
    out = []
    for a in answers:
        kinds = fb.get(a.id, set())
        if (a.edited_content is None and "thumbs_up" not in kinds and kinds & TURNED_DOWN
                and (short := trimmed(q.content, a.content, words))):
            out.append(PreferencePair(q.content, short, a.content, "self", WEIGHTS["trim"], message_ids=(q.id, a.id),
                                      session_id=session_id))
    return out


def _self_prompts(store: Store, user: User, session_id: int, rng: random.Random) -> list[tuple[Message, int]]:
    def prompts(sid: int) -> list[Message]:
        return [q for q, _ in _turns(store, sid) if classify_followup(q.content) is None]

    current = [(q, session_id) for q in prompts(session_id)]
    past = [(q, s.id) for s in store.sessions(user.id) if s.id != session_id for q in prompts(s.id)]
    rng.shuffle(past)
    return current + past[:SELF_PAST_PROMPTS]


def _prompt_seed(seed: int, prompt: str) -> int:
    return int(hashlib.sha256(f"{seed}\0{normalize_text(prompt)}".encode()).hexdigest()[:8], 16)


def self_labelled_pairs(profile: Profile, prompt: str, generate: Generate, k: int, seed: int,
                        min_margin: float = MIN_MARGIN) -> PreferencePair | None:
    """Sample k answers, rank by the profile scorer; best > worst if the margin is large enough."""
    cands = [c for c in generate(prompt, k, _prompt_seed(seed, prompt)) if isinstance(c, str)]
    scored = sorted(((score(profile, prompt, c), i, c) for i, c in enumerate(cands)),
                    key=lambda t: (-t[0], t[1]))
    good = [t for t in scored if is_acceptable(prompt, t[2])]
    if not good or len(scored) < 2:
        return None
    # Degenerate answers score 0 and, on a tie, lose to an acceptable one: always the rejected side.
    best = good[0]
    worst = min(scored, key=lambda t: (t[0], is_acceptable(prompt, t[2]), t[1]))
    margin = best[0] - worst[0]
    if margin < min_margin or best[1] == worst[1] or best[0] < MIN_CHOSEN_FIT:
        return None
    return PreferencePair(prompt, best[2], worst[2], "self", round(WEIGHTS["self"] * margin, 4))


def split_of(user_name: str, prompt: str) -> str:
    """Stable per-user split by prompt: the same prompt always lands in the same split."""
    h = hashlib.sha256(f"{user_name}\0{normalize_text(prompt)}".encode()).hexdigest()
    return "val" if int(h[:8], 16) % VAL_BUCKETS == 0 else "train"


def _acceptable_chosen(p: PreferencePair) -> bool:
    # The user's own edit may be terse ("Try Milo.") and still be exactly what they want: only a
    # loop, a refusal, garbage or nothing disqualifies it. Model answers must pass the whole guard. Nor does a
    # standard the user did not hold to (a citation in the form they chose, a rewrite as long as they liked it, a
    # message without a detail they chose to leave out, a date they corrected).
    issues = set(quality_issues(p.prompt, p.chosen))
    if p.source == "edit":
        issues -= {"too_short", "off_topic", "not_shorter", "no_citation", "facts_missing", "facts_changed"}
    return not issues


def _clean(pairs: list[PreferencePair]) -> list[PreferencePair]:
    seen: set[str] = set()
    per_prompt: dict[str, int] = {}
    out = []
    for p in pairs:
        if not p.chosen or not p.chosen.strip():
            continue
        # An empty rejected answer stays: "anything beats saying nothing" is a real preference.
        if p.rejected is not None and normalize_text(p.chosen) == normalize_text(p.rejected):
            continue
        if p.label >= 0 and not _acceptable_chosen(p):
            continue  # never teach a degenerate answer as the preferred one
        h = pair_hash(p.prompt, p.chosen, p.rejected, p.label)
        key = normalize_text(p.prompt)
        if h in seen or per_prompt.get(key, 0) >= MAX_PER_PROMPT:
            continue
        seen.add(h)
        per_prompt[key] = per_prompt.get(key, 0) + 1
        out.append(p)
    return out


def _ensure_val(store: Store, user: User, new: list[PreferencePair]) -> None:
    """Once a user has >= 3 pairs, hold at least one prompt out (one no adapter has trained on)."""
    existing = store.pairs(user.id, split=None)
    if len(existing) + len(new) < 3 or any(p.split == "val" for p in existing + new):
        return
    used = store.used_pair_ids(user.id)
    used_prompts = {normalize_text(p.prompt) for p in existing if p.id in used}
    candidates = sorted({normalize_text(p.prompt) for p in existing + new} - used_prompts,
                        key=lambda t: hashlib.sha256(f"{user.name}\0{t}".encode()).hexdigest())
    if not candidates:
        return
    chosen = candidates[0]
    for p in new:
        if normalize_text(p.prompt) == chosen:
            p.split = "val"
    for p in existing:
        if normalize_text(p.prompt) == chosen:
            store.set_pair_split(p.id, "val")


def mine_pairs(store: Store, user: str | User, session: int, generate: Generate | None = None,
               k: int = 4, seed: int = 0, rewrite: Callable[[str], str] | None = None,
               profile: Profile | None = None, min_margin: float = MIN_MARGIN,
               max_prompts: int | None = None, length_pairs: bool = LENGTH_PAIRS) -> list[PreferencePair]:
    """Mine, clean, split and store the session's pairs; returns the newly stored ones (with ids).

    ``generate(prompt, k, seed) -> list[str]`` samples k answers (temperature > 0) for self-labelling;
    without it only behavioural pairs are mined. Deterministic for a given ``seed``. If ``generate``
    has a ``prefetch(requests)`` method it first gets every ``(prompt, k, seed)`` at once, so a model
    can decode them all in one batch. ``max_prompts`` caps the prompts re-answered. ``length_pairs``: the
    trimmed answers' pairs (when the profile claims short answers, ``trim.trimmed``).
    """
    return _mine(store, _user(store, user), session, generate, k, seed, rewrite, profile, min_margin, max_prompts,
                 length_pairs=length_pairs)


def mine_self_labelled_pairs(store: Store, user: str | User, session: int, generate: Generate, k: int = 4,
                             seed: int = 0, profile: Profile | None = None, min_margin: float = MIN_MARGIN,
                             max_prompts: int | None = None) -> list[PreferencePair]:
    """The self-labelled pairs of a session whose behavioural pairs are already stored (``process_session``).

    The behavioural pairs are derived again, without a model, only so that they count as they did the
    first time: toward the per-prompt cap and the held-out split. Only the self-labelled pairs are stored.
    """
    return _mine(store, _user(store, user), session, generate, k, seed, None, profile, min_margin, max_prompts,
                 sources={"self"})


def _mine(store: Store, u: User, session: int, generate: Generate | None, k: int, seed: int,
          rewrite: Callable[[str], str] | None, profile: Profile | None, min_margin: float,
          max_prompts: int | None, sources: set[str] | None = None, length_pairs: bool = LENGTH_PAIRS) -> list[PreferencePair]:
    """Behavioural pairs, then self-labelled ones; clean, split, store those of ``sources`` (None: all)."""
    prof = profile if profile is not None else load_profile(store, u)
    mined = _session_pairs(store, session, rewrite, short_length(prof) if length_pairs else None)
    if generate is not None:
        rng = random.Random(seed)
        targets = _self_prompts(store, u, session, rng)[:max_prompts]
        if hasattr(generate, "prefetch"):
            generate.prefetch([(q.content, k, _prompt_seed(seed, q.content)) for q, _ in targets])
        for q, sid in targets:
            p = self_labelled_pairs(prof, q.content, generate, k, seed, min_margin)
            if p is not None:
                p.message_ids, p.session_id = (q.id,), sid
                mined.append(p)
    pairs = _clean(mined)
    held_out = {normalize_text(p.prompt) for p in store.pairs(u.id, split="val")}
    for p in pairs:
        p.split = "val" if normalize_text(p.prompt) in held_out else split_of(u.name, p.prompt)
    kept = [p for p in pairs if sources is None or p.source in sources]
    with store.transaction():
        _ensure_val(store, u, pairs)
        store.add_pairs(u.id, kept, seed=seed)
    return [p for p in kept if p.id is not None]
