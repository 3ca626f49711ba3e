"""Turn a RouteInput into numbers: one feature row per candidate task and one row for "start a new task"."""

from __future__ import annotations

import bisect
import math
import re
from collections import Counter
from typing import Callable

import numpy as np

from .base import Candidate, RouteInput
from .dialogue import is_ack
from .text import STOPWORDS, TextInfo, cosine, dot, info, norm, norm_name

CAND_FEATURES = (
    "rank0", "rank1", "rank2", "log_rank", "log_gap",
    "same_last", "u_in_turns", "u_part", "u_latest", "u_addressed", "u_addressed_latest", "last_addr_u",
    "a_last", "a_in_turns", "a_part", "a_latest", "a_pair", "addr_other", "mention",
    "w_cos", "w_cos_last", "c_cos", "c_cos_last", "e_max", "e_last", "e_cent",
    "notice_task", "log_turns", "self_run",
    "log_since", "u_gap", "a_gap", "last_question", "last_addr_other", "u_latest_noaddr", "rank0_same_last",
    "a_latest_in", "e_max_top", "w_cos_top",
    "title_cos", "e_title", "e_max_long", "w_cos_long", "cover", "cover_top",
)
NEW_FEATURES = (
    "bias", "notice", "addr_known", "addr_unknown", "question", "asks_anyone", "greeting",
    "u_active", "u_addressed_any", "log_gap_min", "log_words", "mention_any", "thanks",
    "e_best", "w_best", "e_best_long", "w_best_long", "continues", "reference", "cover_best", "new_thing", "complaint",
)
SPEAKER_COLS = [CAND_FEATURES.index(f) for f in ("same_last", "u_in_turns", "u_part", "u_latest", "u_gap", "self_run",
                                                 "u_latest_noaddr", "rank0_same_last")]
EMBED_COLS = [CAND_FEATURES.index(f) for f in ("e_max", "e_last", "e_cent", "e_title")]
ASK_RE = re.compile(r"\b(any ?one|any ?body|some ?one|some ?body|does any|can any|is there|how (?:do|can|to) i|"
                    r"i need|i want|i have a|i'm trying|im trying|question)\b", re.IGNORECASE)
GREET_RE = re.compile(r"^\s*(hi|hello|hey|hiya|yo|morning|good (?:morning|evening|afternoon)|evening|greetings|"
                      r"howdy|heya|你好|大家好)\b", re.IGNORECASE)
# Words that carry a message on from earlier work ("also", "still", "the same", "也", "还是").
CONTINUES_RE = re.compile(r"\b(also|too|as well|still|again|same|anymore|any more|instead)\b|也|还是|又|顺便|同样|还在",
                          re.IGNORECASE)
# A reference to something already discussed ("the login bug", "that issue", "那个问题").
REFERENCE_RE = re.compile(r"\b(?:the|that|this)\s+(?:[\w.-]+\s+){0,2}"
                          r"(?:bug|issue|problem|error|crash|leak|test|fix|one)\b|那个|这个问题|上次", re.IGNORECASE)
# A request for a new artefact, written with an indefinite article ("write a …", "add an …", "写一个…").
NEW_THING_RE = re.compile(
    r"^\W*(?:(?:please|pls|can you|could you|would you|help me|now)\s+)*(?:write|add|create|build|make|set up|setup|"
    r"implement|generate|draft|design|compose|tell|give|translate|explain|show|start|need)\s+(?:me\s+|us\s+)?"
    r"(?:a|an|some|another|one)\b|(?:写|加|做|建|生成|设计|实现|搞)(?:一个|一首|一段|一篇|个|一份|一下一个)|"
    r"^\W*(?:帮我|请|用\s*\w+\s*)?(?:写|解释|翻译|介绍)|"
    r"\bseparate(?:ly)?\b|\bfrom scratch\b|单独|另开|"
    r"^\W*(?:explain|describe|tell me about|what(?:'s| is| are) (?:the|a|an)\b|how (?:does|do) \S+ work)",
    re.IGNORECASE)
# A report that something done did not work ("still fails", "显示不对", "挂了").
COMPLAINT_RE = re.compile(
    r"\b(?:fails?|failed|failing|broken|breaks|wrong|error|crash(?:es|ed)?|doesn'?t work|does not work|not working|"
    r"is off|too (?:slow|short|long|big)|still|again|regress(?:ed|ion)?|flaky|missing)\b|"
    r"不对|不行|失败|报错|挂了|出错|错了|乱码|白屏|有问题|太短|太长|太慢|差了|不全|没用|还是", re.IGNORECASE)
THANKS_RE = re.compile(r"\b(thanks|thank you|thx|ty|cheers)\b|谢谢|多谢", re.IGNORECASE)

Embed = Callable[[str], np.ndarray]
_cand_cache: dict = {}


def _cand_state(c: Candidate, infos: list[TextInfo], embed: Embed | None) -> dict:
    """Word and n-gram bags (and turn embeddings) of a candidate, cached by its turns (not by task id)."""
    key = tuple((t.user_id, t.content) for t in c.turns)
    hit = _cand_cache.get(key)
    if hit is None:
        if len(_cand_cache) > 20_000:
            _cand_cache.clear()
        wc, gc = Counter(), Counter()
        for t in infos:
            wc.update(t.wcount)
            gc.update(t.grams)
        tfw = {w: 1 + math.log(n) for w, n in wc.items()}
        hit = _cand_cache[key] = {"wc": wc, "gc": gc, "gn": norm(gc), "tfw": tfw}
    if embed is not None and "E" not in hit and c.turns and not all(t.notice for t in infos):
        E = np.stack([embed(t.content) for t in c.turns])
        cent = E.sum(0)
        hit["E"], hit["cent"] = E, cent / (np.linalg.norm(cent) or 1.0)
    return hit


def _name_match(name: str, known: dict[str, str]) -> str:
    """Map a written name to a known speaker (exact, then unique prefix of 3+ characters)."""
    if not name:
        return ""
    if name in known:
        return known[name]
    if len(name) >= 3:
        hits = {v for k, v in known.items() if k.startswith(name)}
        if len(hits) == 1:
            return hits.pop()
    return ""


def _tfidf(wc: Counter, idf: dict[str, float]) -> dict[str, float]:
    return {w: (1 + math.log(c)) * idf.get(w, 1.0) for w, c in wc.items()}


def _tfidf_cos(qv: dict[str, float], qn: float, tfw: dict[str, float], idf: dict[str, float]) -> float:
    """Cosine of the message's tf-idf vector with a bag given as {word: 1 + log tf}."""
    num = sum(q * tfw[w] * idf.get(w, 1.0) for w, q in qv.items() if w in tfw)
    if not num:
        return 0.0
    return num / (qn * math.sqrt(sum((t * idf.get(w, 1.0)) ** 2 for w, t in tfw.items())))


def is_solo(inp: RouteInput) -> bool:
    """Only the speaker ever wrote in the open tasks (one person with their agents): alter0's normal case."""
    me = norm_name(inp.user_id)
    return all({norm_name(p) for p in c.participants} <= {me} and all(
        t.role != "user" or norm_name(t.user_id) == me for t in c.turns) for c in inp.candidates)


def agent_scope(inp: RouteInput) -> bool:
    """The message is one person's request among conversations with the agent: the scope is solo, or the open
    tasks hold agent replies and the message addresses nobody by name (then meaning, not who spoke where, decides)."""
    if is_solo(inp):
        return True
    address = info(inp.content).address
    return any(t.role == "assistant" for c in inp.candidates for t in c.turns) and (not address or is_ack(address))


def speakers_latest(inp: RouteInput) -> int:
    """The most recently active open task the speaker took part in (the first candidate if none)."""
    me = norm_name(inp.user_id)
    for c in inp.candidates:
        if me in {norm_name(p) for p in c.participants} or any(norm_name(t.user_id) == me for t in c.turns):
            return c.task_id
    return inp.candidates[0].task_id


def extract(inp: RouteInput, embed: Embed | None = None,
            multilingual: bool = False) -> tuple[np.ndarray, np.ndarray, dict]:
    """Return (candidate rows [n, len(CAND_FEATURES)], new-task row [len(NEW_FEATURES)], facts for reasons);
    ``multilingual``: the embedding reads Chinese as well as English (its similarities are not damped)."""
    cands = inp.candidates
    me = norm_name(inp.user_id)
    mi = info(inp.content)
    turn_infos = [[info(t.content) for t in c.turns] for c in cands]
    # who is who: every speaker seen in the candidates, by normalised name
    known: dict[str, str] = {}
    for c in cands:
        for p in c.participants:
            known.setdefault(norm_name(p), norm_name(p))
        for t in c.turns:
            known.setdefault(norm_name(t.user_id), norm_name(t.user_id))
    known.pop(me, None)
    known.pop("", None)
    addressee = _name_match(mi.address, known)
    mentioned = {known[n] for n in mi.names if n in known and n not in STOPWORDS and len(n) > 2}
    if addressee:
        mentioned.discard(addressee)

    # per-candidate speaker facts, and who spoke / was addressed where most recently
    last_me, last_addr_me, last_a = {}, {}, {}
    speakers: list[set] = []
    for i, (c, tis) in enumerate(zip(cands, turn_infos)):
        sp = set()
        for t, ti in zip(c.turns, tis):
            who = norm_name(t.user_id)
            sp.add(who)
            if who == me:
                last_me[i] = max(last_me.get(i, -1e18), t.at)
            elif me and (ti.address == me or (len(me) > 2 and me in ti.names)):
                last_addr_me[i] = max(last_addr_me.get(i, -1e18), t.at)
            if addressee and who == addressee:
                last_a[i] = max(last_a.get(i, -1e18), t.at)
        speakers.append(sp)
    u_latest = max(last_me, key=last_me.get) if last_me else -1
    ua_latest = max(last_addr_me, key=last_addr_me.get) if last_addr_me else -1
    a_latest = max(last_a, key=last_a.get) if last_a else -1

    # idf over the candidate bags
    states = [_cand_state(c, tis, embed) for c, tis in zip(cands, turn_infos)]
    df = Counter()
    for st in states:
        df.update(st["wc"].keys())
    turn_times = sorted(t.at for c in cands for t in c.turns)
    n = len(cands) + 1
    idf = {w: math.log(1 + n / (1 + d)) for w, d in df.items()}
    qv = _tfidf(mi.wcount, idf) if mi.wcount else {}
    qn = norm(qv)

    q_idf = {w: idf.get(w, math.log(1 + n)) for w in mi.wcount}
    q_total = sum(q_idf.values())
    ev = embed(inp.content) if embed is not None else None
    rows = np.zeros((len(cands), len(CAND_FEATURES)), dtype=np.float64)
    for i, (c, tis) in enumerate(zip(cands, turn_infos)):
        r = rows[i]
        r[0], r[1], r[2] = i == 0, i == 1, i == 2
        r[3] = math.log1p(i)
        r[4] = math.log1p(max(0.0, inp.at - c.last_active_at) / 60.0)
        last = c.turns[-1] if c.turns else None
        last_who = norm_name(last.user_id) if last else ""
        parts = {norm_name(p) for p in c.participants} | speakers[i]
        r[5] = last_who == me
        r[6] = me in speakers[i]
        r[7] = me in parts
        r[8] = i == u_latest
        r[9] = i in last_addr_me
        r[10] = i == ua_latest
        r[11] = bool(last and last_who != me and tis[-1].address == me)
        if addressee:
            r[12] = last_who == addressee
            r[13] = addressee in speakers[i]
            r[14] = addressee in parts
            r[15] = i == a_latest
            r[16] = any((norm_name(t.user_id) == addressee and ti.address == me) or
                        (norm_name(t.user_id) == me and ti.address == addressee) for t, ti in zip(c.turns, tis))
            r[17] = addressee not in parts
        r[18] = bool(mentioned & speakers[i])
        st = states[i]
        if qv and st["wc"]:
            r[19] = _tfidf_cos(qv, qn, st["tfw"], idf)
            if tis[-1].wcount:
                r[20] = cosine(qv, _tfidf(tis[-1].wcount, idf))
        if st["gc"]:
            r[21] = dot(mi.grams, st["gc"]) / (mi.gram_norm * st["gn"])
            r[22] = dot(mi.grams, tis[-1].grams) / (mi.gram_norm * tis[-1].gram_norm)
        if ev is not None and "E" in states[i]:
            sims = states[i]["E"] @ ev
            r[23], r[24] = float(sims.max()), float(sims[-1])
            r[25] = float(states[i]["cent"] @ ev)
        r[26] = bool(tis) and all(t.notice for t in tis)
        r[27] = math.log1p(len(c.turns))
        r[28] = bool(c.turns) and all(norm_name(t.user_id) == me for t in c.turns)
        r[29] = math.log1p(len(turn_times) - bisect.bisect_right(turn_times, c.last_active_at))
        if i in last_me:
            r[30] = math.log1p(max(0.0, inp.at - last_me[i]) / 60.0)
        if i in last_a:
            r[31] = math.log1p(max(0.0, inp.at - last_a[i]) / 60.0)
        if last and last_who != me:
            r[32] = tis[-1].question
            r[33] = bool(tis[-1].address) and tis[-1].address != me
        r[34] = r[8] and not addressee
        r[35] = r[0] and r[5]
        r[36] = r[15] and not r[12]
        if qv:
            tv = info(c.title).wcount
            r[39] = cosine(qv, _tfidf(tv, idf)) if tv else 0.0
        if ev is not None and c.title and "E" in states[i]:
            r[40] = float(embed(c.title) @ ev)
        if q_idf:  # how much of the message (idf-weighted words, Chinese bigrams) the task already holds
            tw = info(c.title).wcount
            r[43] = sum(x for w, x in q_idf.items() if w in st["wc"] or w in tw) / q_total
    if ev is not None and mi.cjk_share > 0.3 and not multilingual:  # MiniLM knows little Chinese: trust the n-grams
        rows[:, EMBED_COLS] *= 1.0 - mi.cjk_share
    lf = min(1.0, mi.n_words / 15.0)
    rows[:, 41] = rows[:, 23] * lf
    rows[:, 42] = rows[:, 19] * lf
    if len(cands):
        rows[:, 37] = rows[:, 23] >= rows[:, 23].max() - 1e-9 if ev is not None else 0.0
        rows[:, 38] = (rows[:, 19] >= rows[:, 19].max() - 1e-9) & (rows[:, 19] > 0)

    solo = is_solo(inp)
    if solo:  # only this speaker ever wrote here: who-spoke-where says nothing about which task
        rows[:, SPEAKER_COLS] = 0.0

    g = np.zeros(len(NEW_FEATURES), dtype=np.float64)
    g[0] = 1.0
    g[1] = mi.notice
    g[2] = bool(addressee)
    g[3] = bool(mi.address) and not addressee
    g[4] = mi.question
    g[5] = bool(ASK_RE.search(inp.content))
    g[6] = bool(GREET_RE.search(inp.content))
    g[7] = not solo and (any(me in s for s in speakers) or
                         any(me in {norm_name(p) for p in c.participants} for c in cands))
    g[8] = bool(last_addr_me)
    g[9] = math.log1p(max(0.0, inp.at - cands[0].last_active_at) / 60.0) if cands else 0.0
    g[10] = math.log1p(mi.n_words)
    g[11] = bool(mentioned)
    g[12] = bool(THANKS_RE.search(inp.content))
    g[17] = bool(CONTINUES_RE.search(inp.content))
    g[18] = bool(REFERENCE_RE.search(inp.content))
    g[20] = bool(NEW_THING_RE.search(inp.content))
    g[21] = bool(COMPLAINT_RE.search(inp.content))
    if len(cands):
        g[13], g[14] = rows[:, 23].max(), rows[:, 19].max()
        g[15], g[16] = g[13] * lf, g[14] * lf
        g[19] = rows[:, 43].max()
        rows[:, 44] = (rows[:, 43] >= g[19] - 1e-9) & (rows[:, 43] > 0)
    facts = {"addressee": addressee, "mentioned": sorted(mentioned), "me": me, "solo": solo,
             "agent": agent_scope(inp)}
    return rows, g, facts


def candidate_ids(cands: list[Candidate]) -> list[int]:
    return [c.task_id for c in cands]
