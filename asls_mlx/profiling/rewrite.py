"""A rule-based rewriter that moves an answer towards a profile.

Used to pair a lone thumbs-down with a profile-conforming version, and by the simulated users of the
evaluation (their "edit"). Steps, in order:
1) expand contractions when the user prefers a formal tone;
2) move the first code block to the front when the user wants code first;
3) truncate to the target length at a sentence boundary;
4) bulletize the sentences when the user likes bullet points;
5) prepend a TL;DR line (the first sentence) when the user wants one.
"""

from __future__ import annotations

import re

from asls_mlx.profiling.features import has_bullets, sentences, tldr_first, word_count
from asls_mlx.profiling.profile import SHOW_CONFIDENCE, Profile

_CONTRACTIONS = {
    "can't": "cannot", "won't": "will not", "shan't": "shall not", "ain't": "is not", "let's": "let us",
    "i'm": "I am", "it's": "it is", "that's": "that is", "there's": "there is", "what's": "what is",
    "gonna": "going to", "wanna": "want to", "gotta": "have to",
}
_SUFFIXES = [("n't", " not"), ("'re", " are"), ("'ll", " will"), ("'ve", " have"), ("'d", " would")]
_WORD_WITH_APOS = re.compile(r"\b\w+'\w+\b|\b(?:gonna|wanna|gotta)\b", re.IGNORECASE)
_CODE_BLOCK = re.compile(r"```.*?```", re.DOTALL)


def expand_contractions(text: str) -> str:
    """"It's fine, don't worry" -> "It is fine, do not worry" (keeps a leading capital)."""
    def fix(m: re.Match) -> str:
        word = m.group(0)
        low = word.lower()
        if low in _CONTRACTIONS:
            out = _CONTRACTIONS[low]
        else:
            for suf, rep in _SUFFIXES:
                if low.endswith(suf):
                    out = word[: -len(suf)] + rep
                    break
            else:
                return word
        return out[0].upper() + out[1:] if word[0].isupper() else out

    return _WORD_WITH_APOS.sub(fix, text.replace("’", "'"))


def truncate_words(text: str, target: int) -> str:
    """Whole sentences up to ``target`` words (always at least the first sentence)."""
    out, n = [], 0
    for s in sentences(text):
        k = word_count(s)
        if out and n + k > target:
            break
        out.append(s)
        n += k
    return " ".join(out)


def bulletize(text: str) -> str:
    return "\n".join(f"- {s.lstrip('-*• ').strip()}" for s in sentences(text))


def _on(profile: Profile, name: str) -> bool:
    feat = getattr(profile, name)
    return feat.confidence >= SHOW_CONFIDENCE and feat.value >= 0.25


def rewrite_to_profile(profile: Profile, answer: str) -> str:
    """``answer`` rewritten by the rules above towards ``profile`` (unchanged if nothing applies)."""
    text = answer.strip()
    code = _CODE_BLOCK.search(text)
    prose = _CODE_BLOCK.sub(" ", text).strip() if code else text
    if _on(profile, "formality"):
        prose = expand_contractions(prose)
    target = profile.target_words
    if target is not None and word_count(prose) > 1.2 * target:
        prose = truncate_words(prose, target)
    if _on(profile, "bullets") and not has_bullets(prose) and len(sentences(prose)) >= 2:
        prose = bulletize(prose)
    if _on(profile, "tldr") and not tldr_first(prose):
        first = sentences(prose)[0] if sentences(prose) else prose
        prose = f"TL;DR: {first.lstrip('-*• ')}\n\n{prose}"
    if code is None:
        return prose
    if _on(profile, "code_first"):
        return f"{code.group(0)}\n\n{prose}".strip()
    return f"{prose}\n\n{code.group(0)}".strip()
