"""Acknowledgements of a follow-up ("You're right, I'll keep it short."): part of that turn, not of an answer."""

from __future__ import annotations

import re

from asls_mlx.profiling.features import STRAIGHT_APOSTROPHES

_ACK_SENTENCE = re.compile(
    r"^\s*(?:"
    # an opener alone: "You're right,", "Sure!", "My apologies for the confusion."
    r"(?:(?:you're|you are) (?:right|correct|absolutely right)|sure|of course|certainly|absolutely|okay|ok|got it|"
    r"understood|noted|my apologies|apologies|i apologi[sz]e|(?:i'm|i am) (?:so |very )?sorry|sorry)\b"
    r"(?: for (?:the|any|my) (?:confusion|mistake|error|misunderstanding))?[.!,:]+"
    # "I'll make sure to provide more concise answers.", "Let me keep it brief:"
    r"|(?:i'll|i will|let me) (?:make sure|keep|be|try|give|provide|shorten|rewrite|make)\b[^.!?:\n]*"
    r"(?:concise|short|brief|clear|simple|answer|response|version)[^.!?:\n]*[.!?:]+"
    # "I'll provide more details on this topic later in the article.": what it will do, not the answer
    r"|(?:i'll|i will|let me) (?:provide|add|give|include|expand|elaborate|continue|share|explain)\b[^.!?:\n]*"
    r"(?:detail|more|later|below|continu|question|information|example)[^.!?:\n]*[.!?:]+"
    # "Here's a shorter version:", "Here's a continuation:"
    r"|here(?:'s| is) (?:a|an|the|my|your) (?:shorter|more concise|concise|briefer|brief|revised|simpler|corrected|updated|"
    r"rewritten|short|continuation|longer|more detailed|expanded)\b[^.!?:\n]*[.!?:]+"
    # "The shorter version would be:", "A more concise answer is:"
    r"|(?:the|a|an|my) (?:shorter|more concise|concise|briefer|revised|simpler|corrected|updated|rewritten) "
    r"(?:version|answer|response|one)(?: (?:would be|could be|is|of (?:it|this|the \w+)))?\s*:+"
    # "Here's how you can add more detail:" (not "Here's how you can clean the pan:", an answer's own opening)
    r"|here(?:'s| is) how (?:you can|i can|i would|to) (?:add|improve|expand|extend|continue|include)\b[^.!?:\n]*[:]+"
    r")\s*", re.IGNORECASE)


def strip_acknowledgement(answer: str, max_sentences: int = 3) -> str:
    """``answer`` without the sentences that only acknowledge a follow-up ("You're right, I'll make sure to provide
    more concise answers. Here's a shorter version:"): said after "shorter please" they belong to that turn; as
    the preferred answer to the first prompt they taught the adapter to open every answer so (quick eval,
    concise user: two updates rejected for answers that were only that acknowledgement)."""
    text = answer.translate(STRAIGHT_APOSTROPHES)
    stripped = False
    for _ in range(max_sentences):
        m = _ACK_SENTENCE.match(text)
        if not m or not m.end():
            break
        text, stripped = text[m.end():], True
    if not stripped:
        return answer
    text = text.strip()
    return text[:1].upper() + text[1:]


# A sentence that greets or offers help and says nothing that was asked: "Hey there!", "Sure!", "Hey there, I'm here
# to help with your upcoming presentation." ("Sure, the capital is Paris." says something.)
_GREETING = r"(?:(?:hey|hi|hello)(?: there| buddy| mate)?|sure|of course|absolutely|great question)"
_PLEASANTRY = re.compile(rf"^\W*(?:{_GREETING}\W*$|(?:{_GREETING}\W+)?(?:welcome\b|(?:i'm|i am) (?:here|happy|glad) "
                         rf"to help\b|i'd (?:be happy|love) to help\b|how about (?:we|i)\b|let's (?:chat|talk)\b))", re.I)


def is_pleasantry(sentence: str) -> bool:
    """``sentence`` only greets or offers help (see above)."""
    return bool(_PLEASANTRY.match(sentence.translate(STRAIGHT_APOSTROPHES)))
