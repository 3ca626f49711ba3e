"""Dialogue acts of a message that decide routing before any similarity: a bare acknowledgement ("ok", "好的",
"thanks") and an acknowledgement followed by a request ("ok, now …", "好的，那再…"), split into its two parts."""

from __future__ import annotations

import re
from dataclasses import dataclass

# One acknowledgement word or phrase (English, Chinese); emoji and punctuation around it are ignored.
_ACK_EN = (r"ok(?:ay|ey)?|k+|kk|sure|yes|yep|yeah|yup|alright|all right|right|fine|good|great|nice|cool|cheers|"
           r"perfect|awesome|excellent|brilliant|wonderful|lovely|neat|sweet|noted|understood|roger|ack|"
           r"got it|gotcha|i see|makes sense|sounds good|sounds great|looks good|looks great|lgtm|"
           r"thanks?(?: you)?(?: (?:so|very) much| a lot| a bunch)?|thx|ty|tyvm|much appreciated|appreciated|"
           r"thank u|that works|works for me|will do|good to know|nice one|great job|well done|"
           r"ok then|okay then|fair enough|good stuff|sure thing|no worries|"
           r"(?:i'?ll|will) (?:try|do|test|check)(?: (?:it|that))?|"
           r"that (?:fixed|did|solved) it|it works(?: now)?|works now")
_ACK_ZH = r"(?:可以|好)了(?![吗么嘛])|好的?|好滴|好嘞|好吧|嗯+|嗯嗯|收到|谢谢(?:你|啦|了)?|多谢|感谢|明白了?|知道了|了解|可以|行|没问题|辛苦了|赞|棒|不错|懂了"
_ACK_ANY = rf"(?:{_ACK_EN})\b|(?:{_ACK_ZH})"
_FILLER = r"[\s,.;:!?~。，、！？；：…\-]|[\U0001F300-\U0001FAFF\u2600-\u27BF\uFE0F]|:\)|:-\)|\^_\^"
ACK_RE = re.compile(rf"^(?:{_FILLER})*(?:(?:{_ACK_ANY})(?:{_FILLER})*)+$", re.IGNORECASE)
# An acknowledgement and a separator at the start of a longer message; then a connector ("now", "然后") to drop.
ACK_LEAD_RE = re.compile(rf"^(?:{_FILLER})*(?P<ack>(?:(?:{_ACK_ANY})(?:{_FILLER})*)+?)(?:{_FILLER})+(?P<rest>\S.*)$",
                         re.IGNORECASE | re.DOTALL)
CONNECTOR_RE = re.compile(rf"^(?:(?:and now|and then|now|then|next|so|also|and)\b|那么|那|然后|现在|接下来)(?:{_FILLER})*",
                          re.IGNORECASE)
# "thanks, but …": the acknowledgement qualifies the task's last answer; the message stays about that task.
BUT_RE = re.compile(r"^\s*(?:but|however|though|although|except|still|yet)\b|^\s*(?:但是|但|不过|可是|还是)", re.IGNORECASE)
# Named addressee after an acknowledgement ("thanks bob"): still an acknowledgement.
_NAME_TAIL_RE = re.compile(r"^(?P<ack>.+?)[\s,]+@?(?P<name>[A-Za-z][\w.-]{1,30})[\s!.]*$")


@dataclass(frozen=True)
class Act:
    """``kind``: ack (a bare acknowledgement), ack_request (an acknowledgement, then ``request``), or other."""

    kind: str
    request: str = ""
    ack: str = ""


EMOJI_ONLY_RE = re.compile(rf"^(?:{_FILLER})+$")
CJK_CHAR_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")


def is_ack(text: str) -> bool:
    """True when the whole message only acknowledges ("ok", "thanks!", "好的", "got it 👍", "👍")."""
    if not text.strip() or len(text) > 60:
        return False
    return bool(ACK_RE.match(text)) or (bool(EMOJI_ONLY_RE.match(text)) and any(ord(ch) > 0x2600 for ch in text))


def _is_request(rest: str) -> bool:
    """Enough of a message to route on its own: two words or more, or three Chinese characters."""
    return len(rest.split()) >= 2 or len(CJK_CHAR_RE.findall(rest)) >= 3


def act(text: str, names: frozenset[str] = frozenset()) -> Act:
    """The dialogue act of ``text``; ``names`` are known speakers (``thanks bob`` is an acknowledgement)."""
    stripped = text.strip()
    if is_ack(stripped):
        return Act("ack", ack=stripped)
    m = _NAME_TAIL_RE.match(stripped)
    if m and m.group("name").lower() in names and is_ack(m.group("ack")):
        return Act("ack", ack=stripped)
    m = ACK_LEAD_RE.match(stripped)
    if m and len(stripped) <= 2000:
        rest = m.group("rest").strip()
        rest = CONNECTOR_RE.sub("", rest, count=1).strip() or rest
        if not BUT_RE.match(m.group("rest")) and not is_ack(rest) and _is_request(rest):
            return Act("ack_request", request=rest, ack=m.group("ack").strip())
    return Act("other")
