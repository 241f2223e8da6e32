"""The profile scorer: how well does an answer fit what this user prefers? A number in [0, 1].

score = confidence-weighted mean of per-feature fits over the features the profile claims (length vs
target, bullets, headings, tone, code first on coding prompts, TL;DR first). A degenerate answer (see
``quality``) scores 0, whatever its length: a refusal is short but is never what a "be concise" user
wants. With no claim the score is a neutral 0.5 for any acceptable answer.
"""

from __future__ import annotations

import math

from asls_mlx.profiling.features import answer_features, is_coding_prompt
from asls_mlx.profiling.profile import Profile
from asls_mlx.profiling.quality import is_acceptable

NEUTRAL = 0.5


def length_fit(words: int, target: float) -> float:
    """1 at the target; 0 at 4x too long. Too short is penalised less (an octave costs 1/3, not 1/2)."""
    ratio = math.log2(max(words, 1) / max(target, 1.0))
    span = 2.0 if ratio > 0 else 3.0
    return max(0.0, 1.0 - abs(ratio) / span)


def score(profile: Profile, prompt: str, answer: str) -> float:
    """How well ``answer`` to ``prompt`` fits ``profile``: 0 (degenerate or opposite) .. 1 (perfect).

    Only what the profile claims (``Profile.claims()``, what render() tells the model) is scored.
    """
    if not is_acceptable(prompt, answer):
        return 0.0
    f = answer_features(answer)
    claims = profile.claims()
    parts: list[tuple[float, float]] = []  # (fit, weight)
    if "length" in claims:
        parts.append((length_fit(f.words, math.exp(profile.length.value)), profile.length.confidence))
    for name, present in (("bullets", f.bullets), ("headings", f.headings), ("tldr", f.tldr_first),
                          ("code_first", f.code_first)):
        feat = getattr(profile, name)
        if name in claims and (name != "code_first" or is_coding_prompt(prompt) or f.code):
            parts.append((1.0 if present == claims[name] else 0.0, feat.confidence * abs(feat.value)))
    feat = profile.formality
    if "formality" in claims:
        parts.append((1.0 - abs(f.formality - feat.value) / 2.0, feat.confidence * abs(feat.value)))
    total = sum(w for _, w in parts)
    if total <= 0:
        return NEUTRAL
    return max(0.0, min(1.0, sum(s * w for s, w in parts) / total))
