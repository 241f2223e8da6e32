"""Interests and language from a session's prompts: subject words only, never instructions or function words.

A topic is a content word of the user's prompts, counted once per session (decayed like the features); one
shows after two sessions in a row or one explicit "I'm interested in X". A topic or language the user
removed counts again only from what they wrote after removing it.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import TYPE_CHECKING

from asls_mlx.profiling.features import STOPWORDS, words
from asls_mlx.profiling.profile import DECAY, TOPIC_KEEP
from asls_mlx.profiling.signals import corrections

if TYPE_CHECKING:
    from asls_mlx.profiling.profile_update import SessionEvidence

_LANG_WORDS = {
    "en": {"the", "and", "is", "are", "what", "how", "you", "of", "to", "in"},
    "fr": {"le", "la", "les", "et", "est", "que", "comment", "pourquoi", "vous", "une", "des"},
    "es": {"el", "los", "las", "y", "es", "que", "cómo", "por", "qué", "una", "para"},
    "de": {"der", "die", "das", "und", "ist", "wie", "ich", "nicht", "ein", "eine", "warum"},
}
# Words that say what to do with an answer, not what it is about ("Given the text, write the output").
INSTRUCTION_WORDS = frozenset("""
answer answers ask asked asking explain explains explained describe tell write writes written rewrite
rephrase reword summarize summarise summary list convert translate provide create generate produce make
give show help need needs want wants know think find compute calculate classify compare define suggest
recommend check correct fix improve edit draft format formatted output input respond reply keep please
thanks thank hello shorter longer short long brief concise detailed simple simply quick quickly clear
clearly given following follows below above using based each every only without within would could should
might must shall what which where when whose there their them they these those this that than then also
just really very much many more most less least something anything everything nothing thing things someone
anyone everyone way ways good best better great different difference differences between other another
same first second third next last main important common basic example examples text texts sentence
sentences paragraph paragraphs word words phrase phrases question questions response responses version
style tone point points bullet bullets line lines step steps tips idea ideas reason reasons does done doing
work works used uses take takes like look looks says said mean means meaning called call name sure okay
even still into onto from with your yours have having been being will here over under after before again
while because since until though although however instead rather actually maybe perhaps probably kind sort
type types part parts item items option options task request verbose wordy professional
formal casual friendly tldr code first please prefer interested learning studying
""".split())
_TOPIC_WORD = re.compile(r"[a-z]{4,}")


def prompt_language(texts: list[str]) -> str | None:
    counts = Counter()
    for t in texts:
        toks = set(words(t))
        for lang, marks in _LANG_WORDS.items():
            counts[lang] += len(toks & marks)
    if not counts or max(counts.values()) == 0:
        return None
    return max(sorted(counts), key=lambda k: counts[k])


def topic_words(prompts: list[str]) -> set[str]:
    """The subject words of a session's prompts: no corrections, instruction or function words, adverbs."""
    found: set[str] = set()
    for text in prompts:
        if corrections(text):  # "shorter please" says nothing about interests
            continue
        for w in words(text):
            if (_TOPIC_WORD.fullmatch(w) and w not in STOPWORDS and w not in INSTRUCTION_WORDS
                    and not w.endswith("ly")):
                found.add(w)
    return found


def prompts_after(ev: SessionEvidence, removed: dict[str, float], key: str) -> list[str]:
    """The session's prompts written after the user removed ``key`` (all of them if they never did)."""
    since = removed.get(key, float("-inf"))
    times = ev.prompt_times or [math.inf] * len(ev.prompts)
    return [text for text, at in zip(ev.prompts, times) if at > since]


def session_topics(prev: dict[str, float], ev: SessionEvidence, removed: dict[str, float],
                   decay: float = DECAY) -> dict[str, float]:
    """The decayed topic counts after this session (at most TOPIC_KEEP)."""
    counts = {k: v * decay for k, v in prev.items()}
    found = {w for w in topic_words(ev.prompts) if f"topic:{w}" not in removed}
    for key in removed:
        if key.startswith("topic:"):  # a removed topic counts again only from what was written after
            found |= topic_words(prompts_after(ev, removed, key)) & {key[len("topic:"):]}
    for w in found:
        counts[w] = counts.get(w, 0.0) + 1.0
    for t in ev.topics:
        counts[t] = counts.get(t, 0.0) + 2.0
    kept = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:TOPIC_KEEP]
    return {k: round(v, 4) for k, v in kept if v >= 0.05}
