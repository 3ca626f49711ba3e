"""The embedded closer (default): close or keep open from the last exchange, with a calibrated confidence."""

from __future__ import annotations

import math
import re

import numpy as np

from .base import CloseDecision, CloseInput, Closer
from .text import CJK_RE

VERSION = "closer-embedded-1"

# What the user says when the work is done (English, Chinese).
USER_DONE = re.compile(
    r"\b(thanks?|thank you|thx|ty|cheers|perfect|awesome|great|excellent|nice|brilliant|lgtm|looks good|"
    r"all good|that'?s it|that did it|that fixed it|that works|it works|works now|works fine|works great|"
    r"working now|solved|fixed|done|resolved|got it|all set|no more questions|we'?re done|ship it|merged|"
    r"(?:tests?|it|everything|build|ci) (?:now )?(?:pass(?:es)?|passing|green))\b|"
    r"谢谢|多谢|感谢|好了|可以了|解决了|搞定|没问题了|完美|成功了|有效", re.IGNORECASE)
# What keeps a task open: the work goes on, or did not work.
USER_MORE = re.compile(
    r"\b(also|another|one more|next|then|still|again|but|however|except|now (?:add|make|do|can|please|let)|"
    r"can you|could you|would you|please|what about|how about|why|instead|not (?:yet|quite|working|work)|"
    r"doesn'?t|does not|didn'?t|did not|isn'?t|won'?t|can'?t|cannot|fails?|failing|failed|error|broken|"
    r"crash(?:es|ed)?|wrong|issue|problem|wait|hold on|don'?t close|keep (?:it )?open|not done)\b|"
    r"还有|还是|另外|再|但是|不过|报错|错误|失败|不行|没用|不对|为什么|怎么|能不能|可以吗|别关", re.IGNORECASE)
# What the agent says when it reports completion.
AGENT_DONE = re.compile(
    r"\b(done|completed?|finished|fixed|implemented|added|updated|resolved|merged|pushed|deployed|"
    r"all (?:\d+ )?tests pass(?:ed)?|tests (?:are )?(?:now )?pass(?:ing)?|glad (?:it|that) (?:works|helped)|"
    r"you'?re welcome|happy to help|no problem|anytime)\b|已完成|完成了|已修复|修好了|不客气", re.IGNORECASE)
# What the agent says when it waits for the user.
AGENT_OPEN = re.compile(
    r"\b(should i|shall i|do you want|would you like|which (?:one|option|version)|can you (?:share|send|paste|"
    r"run|try|confirm|check)|could you (?:share|send|paste|run|try|confirm|check)|please (?:share|send|paste|"
    r"run|try|confirm|check|provide)|let me know (?:which|what|whether|if (?:you want|that|it))|"
    r"next step|still (?:fails?|failing)|not yet|todo|remaining|i couldn'?t|i could not|unable to|"
    r"error|failed)\b|要不要|是否需要|请确认|请提供|还需要", re.IGNORECASE)
ENDS_WITH_QUESTION = re.compile(r"[?？]\s*[)\]\"']?\s*$")

CLOSE_PROTOTYPES = ("thanks, that works now", "perfect, it's fixed", "great, all done",
                    "that solved it, thank you", "works now, thanks a lot")
OPEN_PROTOTYPES = ("it still fails with the same error", "can you also add a test for that",
                   "that didn't work", "now do the same for the other file", "why does it do that?")

# Weights of the closer's logistic score (hand-set, checked on tests/regression/closer.jsonl).
W = {"bias": -1.4, "user_done": 2.4, "user_more": -2.2, "user_question": -1.6, "agent_done": 1.2,
     "agent_open": -1.3, "agent_question": -2.2, "short_ack": 0.9, "proto": 3.0}


class EmbeddedCloser(Closer):
    """Rule signals on the last exchange plus MiniLM similarity to done / not-done prototypes."""

    name = "embedded"
    version = VERSION

    def __init__(self, embedder=None, degraded_reason: str = ""):
        self.embedder = embedder
        self.degraded_reason = degraded_reason
        if embedder is not None:
            self._close = np.stack([embedder.embed(t) for t in CLOSE_PROTOTYPES])
            self._open = np.stack([embedder.embed(t) for t in OPEN_PROTOTYPES])
        else:
            self.version = VERSION + "-rules"

    def signals(self, inp: CloseInput) -> dict[str, float]:
        """The named signals of the last exchange (0/1, except ``proto`` in [-1, 1])."""
        user, reply = inp.user_message.strip(), inp.reply.strip()
        tail = reply[-300:]
        s = {"bias": 1.0,
             "user_done": float(bool(USER_DONE.search(user))),
             "user_more": float(bool(USER_MORE.search(user))),
             "user_question": float("?" in user or "？" in user),
             "agent_done": float(bool(AGENT_DONE.search(reply))),
             "agent_open": float(bool(AGENT_OPEN.search(tail))),
             "agent_question": float(bool(ENDS_WITH_QUESTION.search(tail))),
             "short_ack": float(len(user.split()) <= 4 and len(CJK_RE.findall(user)) <= 6
                                and bool(USER_DONE.search(user)) and not USER_MORE.search(user)),
             "proto": 0.0}
        if self.embedder is not None and user:
            v = self.embedder.embed(user)
            s["proto"] = float((self._close @ v).max() - (self._open @ v).max())
        return s

    def decide(self, inp: CloseInput) -> CloseDecision:
        s = self.signals(inp)
        z = sum(W[k] * v for k, v in s.items())
        p = 1 / (1 + math.exp(-z))
        close = p >= 0.5
        top = sorted(((W[k] * v, k) for k, v in s.items() if k != "bias" and v),
                     key=lambda x: -abs(x[0]) if (x[0] > 0) == close else 0)[:3]
        why = ", ".join(f"{k.replace('_', ' ')} ({c:+.1f})" for c, k in top if (c > 0) == close) or "no strong signal"
        return CloseDecision(close, round(p if close else 1 - p, 4),
                             f"{'close' if close else 'keep open'}: {why}", self.version)
