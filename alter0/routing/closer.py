"""The embedded closer (default): close or keep open from the last exchange, with a calibrated confidence."""

from __future__ import annotations

import math
import re

import numpy as np

from .base import CloseDecision, CloseInput, Closer
from .dialogue import act
from .text import CJK_RE

VERSION = "closer-embedded-3"

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
# The user qualifies or contradicts ("…, but", "still", "不过"), or asks to keep the task open.
USER_CONTRAST = re.compile(
    r"\b(but|however|though|although|still|not yet|not really|don'?t close|keep (?:it |this )?open|not done|wait|"
    r"hold on)\b|不过|但是|可是|还是|还有|别关|先别|等一下|等等", re.IGNORECASE)
# A question that asks for a fact or a status ("done?", "why …?", "好了吗"), not a request put as one.
USER_REQUEST_FORM = re.compile(r"^\W*(?:(?:ok|okay|so|and|also),?\s*)?(?:can|could|would|will) (?:you|u)\b|"
                               r"^\W*please\b|^\W*(?:能不能|能否|可以帮我|可不可以|麻烦|请)", re.IGNORECASE)
USER_ASKS = re.compile(r"[?？]\s*$|^\W*(?:why|what|how|is|are|was|did|does|do|has|have|where|when|which|who)\b|"
                       r"(?:吗|么|呢)\s*[?？]?\s*$|^\W*(?:为什么|怎么|是不是|有没有|多少)", re.IGNORECASE)
# The agent's report of finished work: a sentence opening with a past-tense verb or "done", "已…", "完成".
AGENT_REPORT = re.compile(
    r"(?:^|[.;!。；！\n]\s*)(?:(?:I|I've|I have|We)\s+)?(?:done|fixed|added|updated|removed|renamed|created|bumped|"
    r"ran|changed|switched|moved|converted|documented|wrote|enabled|set up|migrated|implemented|replaced|"
    r"upgraded|installed|applied|deployed|merged|pushed|refactored|reformatted|cleaned|deleted|split|"
    r"configured|wired|regenerated|formatted|translated|made|[a-z]+ed)\b|"
    r"(?:^|[.;!。；！，,\n]\s*)(?:已经?|完成|搞定|修复了|改好了)", re.IGNORECASE)
# A sentence of the reply that says something is not done or went wrong.
AGENT_UNFINISHED = re.compile(
    r"\b(?:still (?:fails?|failing|uses?|broken|open|wraps|happens)|not (?:yet|done|finished|\w+ed yet)|the rest|"
    r"remaining|remains?|todo|left to|haven'?t|have not|couldn'?t|could not|unable to|rolled back|timed out|"
    r"conflicts?|in progress|so far|next step|i'?ll|i will|let me|i'?m (?:adding|writing|working|looking|checking|"
    r"threading)|working on|looking into|checking|my plan|here is (?:my|a) (?:plan|draft)|not applied|"
    r"\d+ (?:of|out of) (?:the )?\d+|\d+ tests? fail)\b|"
    r"还没|尚未|未完成|进行中|剩下|需要手动|没有提交|没通过|依然|仍然|我先|正在|我来|我再|我去|冲突", re.IGNORECASE)
# Failure words that count when the sentence does not itself report finished work.
AGENT_FAILED = re.compile(r"\b(?:failed|fails|failing|failure|error|errors|exception|denied|unauthori[sz]ed|"
                          r"stopped|could not|cannot|can'?t)\b|失败|报错|错误|异常", re.IGNORECASE)
SENTENCE_RE = re.compile(r"[^.;!?。；！？\n]+[.;!?。；！？\n]*")

DONE_REPLY_PROTOTYPES = ("I fixed the bug and all tests pass.", "Added the feature and documented it.",
                         "Done: the change is in place and the checks are green.",
                         "Renamed it everywhere; nothing else referenced the old name.")
OPEN_REPLY_PROTOTYPES = ("Should I also change the other files?", "The build failed with an error.",
                         "I did part of it; the rest still needs work.", "I'll look into it next.",
                         "Which option do you prefer?")

CLOSE_PROTOTYPES = ("thanks, that works now", "perfect, it's fixed", "great, all done",
                    "that solved it, thank you", "works now, thanks a lot")
OPEN_PROTOTYPES = ("it still fails with the same error", "can you also add a test for that",
                   "that didn't work", "now do the same for the other file", "why does it do that?")

AGENT_OPEN_ASK = re.compile(
    r"\b(?:should i|shall i|do you want|would you like|which (?:one|option|version|do you)|let me know|"
    r"do you prefer|want me to)\b|要不要|是否|还是.*[?？]|要.*吗|需要.*吗", re.IGNORECASE)
# The user's words that carry more work even in a plain request ("also", "one more thing", "next").
USER_MORE_STRICT = re.compile(r"\b(?:also|another|one more|next|then|again|instead)\b|还有|另外|再|然后", re.IGNORECASE)
# After an acknowledgement: a request for more work ("ok, now add …", "好的，再加一个…").
USER_ADDS = re.compile(r"^\W*(?:(?:please|pls|now|then|next|also|and|can you|could you|would you)\W+)*"
                       r"(?:add|make|do|write|fix|change|update|create|remove|rename|run|use|move|put|set|handle|"
                       r"support|implement|deploy|test|document|translate|one more|also)\b|"
                       r"^\W*(?:再|加|改|写|帮我|把|顺便|另外|然后)",
                       re.IGNORECASE)
#: The most ``proto`` says for a user message without words of completion (USER_DONE), with a margin: over the
#: 11,460 such messages of the routing dev sets (Ubuntu IRC and channel two), the product set and the regression
#: sets it reaches 0.26 (Chinese ones: 0.12); messages with such words reach 0.54. Where even this much could
#: not make a close acceptable, the model is not run (``tests/test_closer.py`` checks the bound on those sets).
PROTO_REACH = 0.35
VETO_CONFIDENCE = 0.95
AGENT_DONE_RULES_ONLY = 0.8
AGENT_DONE_BIAS, AGENT_DONE_SLOPE = 1.5, 6.0  # p(done | margin of the reply to done vs open reply prototypes)

# Weights of the closer's logistic score (hand-set, checked on tests/regression/closer.jsonl).
W = {"bias": -0.6, "user_done": 2.4, "user_more": -2.2, "user_question": -1.6, "agent_done": 1.2,
     "agent_open": -1.3, "agent_question": -2.2, "short_ack": 0.9, "proto": 3.0}


class EmbeddedCloser(Closer):
    """Rule signals on the last exchange plus MiniLM similarity to done / not-done prototypes."""

    name = "embedded"
    version = VERSION
    local = True
    reads_turns = False  # the last exchange only

    def __init__(self, embedder=None, degraded_reason: str = ""):
        self.embedder = embedder
        self.degraded_reason = degraded_reason
        if embedder is not None:
            self._close = np.stack([embedder.embed(t) for t in CLOSE_PROTOTYPES])
            self._open = np.stack([embedder.embed(t) for t in OPEN_PROTOTYPES])
            self._done_reply = np.stack([embedder.embed(t) for t in DONE_REPLY_PROTOTYPES])
            self._open_reply = np.stack([embedder.embed(t) for t in OPEN_REPLY_PROTOTYPES])
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
        if self.embedder is not None and user and self.model_can_matter(s, inp.min_confidence):
            s["proto"] = self.proto(user)
        return s

    def proto(self, user: str) -> float:
        """How much closer the user's message is to the "done" prototypes than to the "not done" ones."""
        v = self.embedder.embed(user)
        return float((self._close @ v).max() - (self._open @ v).max())

    @staticmethod
    def model_can_matter(s: dict[str, float], min_confidence: float) -> bool:
        """Whether ``proto`` could change the outcome: the user used words of completion, or the rule signals
        plus the most ``proto`` says without them (PROTO_REACH) could reach an acceptable close."""
        if s["user_done"]:
            return True
        need = max(0.5, min_confidence)
        if need >= 1.0:
            return False
        z = sum(W[k] * v for k, v in s.items() if k != "proto")
        return z + W["proto"] * PROTO_REACH >= math.log(need / (1 - need))

    def vetoes(self, user: str, reply: str) -> list[str]:
        """What keeps the task open whatever else the exchange says (empty: nothing does)."""
        out = []
        if USER_CONTRAST.search(user):
            out.append("the user qualifies it (but / still / not yet)")
        a = act(user)
        if a.kind == "ack_request" and USER_ADDS.search(a.request):
            out.append("the user adds a request")
        if USER_ASKS.search(user) and not USER_REQUEST_FORM.search(user):
            out.append("the user asked a question")
        tail = reply[-300:]
        if ENDS_WITH_QUESTION.search(tail) or AGENT_OPEN_ASK.search(tail):
            out.append("the agent asks the user something")
        for sentence in SENTENCE_RE.findall(reply):
            failed = AGENT_FAILED.search(sentence) and not AGENT_REPORT.match(sentence.strip())
            if failed or AGENT_UNFINISHED.search(sentence):
                out.append("the agent reports unfinished or failed work")
                break
        return out

    def agent_done(self, inp: CloseInput) -> tuple[bool, float, str]:
        """Rules and model on a reply that reports finished work after a plain request: (close?, p, why)."""
        user, reply = inp.user_message.strip(), inp.reply.strip()
        if not AGENT_REPORT.search(reply) or act(user).kind != "other" or USER_MORE_STRICT.search(user):
            return False, 0.0, ""
        if self.embedder is None or len(CJK_RE.findall(reply)) > len(reply) / 4:
            # the model reads English only: on a Chinese reply the rules decide alone, at a fixed confidence
            return True, AGENT_DONE_RULES_ONLY, "the agent reports the work done and asks nothing (rules)"
        v = self.embedder.embed(reply)
        margin = float((self._done_reply @ v).max() - (self._open_reply @ v).max())
        p = 1 / (1 + math.exp(-(AGENT_DONE_BIAS + AGENT_DONE_SLOPE * margin)))
        return p >= 0.5, p, f"the agent reports the work done and asks nothing (model p={p:.2f})"

    def decide(self, inp: CloseInput) -> CloseDecision:
        user, reply = inp.user_message.strip(), inp.reply.strip()
        if not user and not reply:
            return CloseDecision(False, 1.0, "keep open: empty exchange", self.version)
        vetoes = self.vetoes(user, reply)
        if vetoes:
            return CloseDecision(False, VETO_CONFIDENCE, "keep open: " + "; ".join(vetoes), self.version)
        done, p, why = self.agent_done(inp)
        if done:
            return CloseDecision(True, round(p, 4), "close: " + why, self.version)
        s = self.signals(inp)
        z = sum(W[k] * v for k, v in s.items())
        p = 1 / (1 + math.exp(-z))
        close = p >= 0.5
        top = sorted(((W[k] * v, k) for k, v in s.items() if k != "bias" and v),
                     key=lambda x: -abs(x[0]) if (x[0] > 0) == close else 0)[:3]
        why = ", ".join(f"{k.replace('_', ' ')} ({c:+.1f})" for c, k in top if (c > 0) == close) or "no strong signal"
        return CloseDecision(close, round(p if close else 1 - p, 4),
                             f"{'close' if close else 'keep open'}: {why}", self.version)
