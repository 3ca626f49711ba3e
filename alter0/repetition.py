"""Degenerate replies: a sentence (or line) said again and again, found while streaming and collapsed for memory.

Small local models fall into loops ("The boundaries of reality are ever-changing..." twenty times). The
executor stops such a run as soon as one sentence comes a third time, and task memory stores the reply with
every repeat dropped, so a loop is never fed back verbatim into the next turn's prompt.
"""

from __future__ import annotations

import re

#: A sentence seen this many times makes the text degenerate.
MAX_REPEATS = 3
#: Sentences shorter than this (normalized; CJK characters count twice) are not counted ("Yes.", list bullets, "}").
MIN_SENTENCE_CHARS = 12

_SPLIT = re.compile(r"(?<=[.!?。！？;；])\s*|\n+")
_NORMALIZE = re.compile(r"[\W_]+", re.UNICODE)


def sentences(text: str) -> list[str]:
    """The text's sentences and lines, stripped, in order (empty ones left out)."""
    return [s.strip() for s in _SPLIT.split(text or "") if s and s.strip()]


def _key(sentence: str) -> str:
    return _NORMALIZE.sub(" ", sentence.lower()).strip()


def _long_enough(key: str) -> bool:
    """At least MIN_SENTENCE_CHARS, a CJK (non-ASCII) character counting as two."""
    return len(key) + sum(1 for c in key if ord(c) > 127) >= MIN_SENTENCE_CHARS


def max_repeats(text: str) -> int:
    """How often the most repeated sentence (of at least MIN_SENTENCE_CHARS) occurs; 0 for none."""
    counts: dict[str, int] = {}
    for s in sentences(text):
        key = _key(s)
        if _long_enough(key):
            counts[key] = counts.get(key, 0) + 1
    return max(counts.values(), default=0)


def degenerate(text: str) -> bool:
    """True when one sentence occurs MAX_REPEATS times or more."""
    return max_repeats(text) >= MAX_REPEATS


def collapse(text: str) -> str:
    """The text with every repeat of an earlier sentence dropped (unchanged when nothing repeats)."""
    if max_repeats(text) < 2:
        return text
    seen: set[str] = set()
    kept = []
    for s in sentences(text):
        key = _key(s)
        if _long_enough(key) and key in seen:
            continue
        seen.add(key)
        kept.append(s)
    return " ".join(kept)


def trim_partial(text: str) -> str:
    """The text up to its last sentence end (a run stopped mid-sentence leaves a fragment); whole if it has none."""
    ends = [m.end() for m in re.finditer(r"[.!?。！？\n]", text or "")]
    return text[:ends[-1]] if ends else text
