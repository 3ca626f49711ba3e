"""Cheap text signals shared by the routers and the closer: words, character n-grams, mentions, notices."""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

WORD_RE = re.compile(r"[a-z0-9_][a-z0-9_.\-/]*[a-z0-9_]|[a-z0-9_]", re.IGNORECASE)
CJK_RE = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
# "name: ...", "name, ...", "@name ...": the addressee written before the message.
LEAD_ADDRESS_RE = re.compile(r"^\s*@?([^\s:,;>]{1,40})\s*(?::|,|>|;)(?:\s|$)|^\s*@([^\s:,;]{1,40})")
AT_RE = re.compile(r"(?:^|\s)@([^\s:,;.!?]{1,40})")
NOTICE_RE = re.compile(
    r"^\S*\s+(?:\[[^\]]*\]\s+)?(?:has joined|has left|has quit|is now known as|entered the room|"
    r"left the room|joined the (?:room|channel)|left the (?:room|channel))", re.IGNORECASE)

STOPWORDS = frozenset("""
a about after again all also am an and any anyone anybody are as at be because been but by can could
did do does doing don dont for from get got had has have having he her here him his how i i'm if in into
is isn it it's its just know like me my no not now of off ok on one or our out please really so some
someone something still than thanks that the their them then there these they thing think this those to
too try u up us use using very want was way we well were what when where which while who why will with
would yeah yes you your im ive its thats whats there's can't i'll i've you're
""".split())


@lru_cache(maxsize=100_000)
def norm_name(name: str) -> str:
    """A user name as compared in mentions: lower case, without decorations like ``_`` or ``|``."""
    return name.strip().lower().strip("_|`^-@~[]{}'\"").rstrip(".")


def words(text: str) -> list[str]:
    """Lower-case word and identifier tokens (``foo.bar``, ``/etc/fstab`` stay whole)."""
    return [w.lower() for w in WORD_RE.findall(text)]


CJK_RUN_RE = re.compile(CJK_RE.pattern + "+")


# Chinese function characters: a bigram holding one says little about the topic ("的时", "能改").
CJK_STOPCHARS = frozenset("的了是在里能吗也要把给和一个这那我你他她它们帮请就都还又很么呢吧啊哦嘛上下中之与及或被让对从到")


def content_words(text: str) -> list[str]:
    """Words minus stop words and one-letter tokens, plus character bigrams of CJK runs (Chinese has no spaces)
    that hold no function character."""
    out = [w for w in words(text) if len(w) > 1 and w not in STOPWORDS]
    for run in CJK_RUN_RE.findall(text):
        if len(run) == 1:
            out.append(run)
            continue
        out.extend(b for b in (run[i:i + 2] for i in range(len(run) - 1))
                   if b[0] not in CJK_STOPCHARS and b[1] not in CJK_STOPCHARS)
    return out


def char_ngrams(text: str, n: int = 3) -> Counter:
    """Character n-grams of the lower-cased text, whitespace squeezed; CJK characters also count alone."""
    t = " " + " ".join(text.lower().split()) + " "
    grams = Counter(t[i:i + n] for i in range(max(0, len(t) - n + 1)))
    grams.update(CJK_RE.findall(t))
    return grams


def lead_address(text: str) -> str:
    """The name a message is addressed to (``name: hi``, ``name, hi``, ``@name hi``), normalised, or ''."""
    m = LEAD_ADDRESS_RE.match(text)
    if not m:
        return ""
    name = norm_name(m.group(1) or m.group(2))
    return "" if name.startswith(("http", "www")) or name.isdigit() else name


def is_notice(text: str) -> bool:
    """True for presence lines bridged from chat rooms (joins, parts, nick changes)."""
    return bool(NOTICE_RE.match(text))


def norm(v: Counter | dict) -> float:
    """Euclidean norm of a sparse vector (1.0 when empty, so divisions stay safe)."""
    return math.sqrt(sum(x * x for x in v.values())) or 1.0


def dot(a: Counter | dict, b: Counter | dict) -> float:
    """Dot product of two sparse vectors (iterates over the smaller one)."""
    if len(a) > len(b):
        a, b = b, a
    get = b.get
    return sum(v * get(k, 0.0) for k, v in a.items())


def cosine(a: Counter | dict, b: Counter | dict) -> float:
    """Cosine of two sparse vectors."""
    if len(a) > len(b):
        a, b = b, a
    dot = sum(v * b.get(k, 0.0) for k, v in a.items())
    if not dot:
        return 0.0
    na = math.sqrt(sum(v * v for v in a.values()))
    nb = math.sqrt(sum(v * v for v in b.values()))
    return dot / (na * nb)


@dataclass
class TextInfo:
    """What the routers need from one message text, computed once and cached."""

    words: frozenset
    wcount: Counter
    grams: Counter
    address: str
    names: frozenset  # every token that could be a user name (normalised)
    notice: bool
    question: bool
    n_words: int
    cjk_share: float = 0.0  # CJK characters / non-space characters
    gram_norm: float = 1.0


@lru_cache(maxsize=50_000)
def info(text: str) -> TextInfo:
    """Parse ``text`` once (cached per process)."""
    cw = content_words(text)
    raw = {norm_name(t) for t in text.replace(",", " ").replace(":", " ").split()}
    raw |= {norm_name(m) for m in AT_RE.findall(text)}
    raw.discard("")
    chars = sum(1 for ch in text if not ch.isspace()) or 1
    grams = char_ngrams(text)
    return TextInfo(frozenset(cw), Counter(cw), grams, lead_address(text), frozenset(raw),
                    is_notice(text), "?" in text or "？" in text, len(words(text)) + len(CJK_RE.findall(text)) // 2,
                    len(CJK_RE.findall(text)) / chars, norm(grams))
