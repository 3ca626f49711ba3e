"""A conditional-logit scorer over {new task} ∪ candidates, fitted on dev data; weights live in weights.json."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .base import RouteDecision, RouteInput
from .dialogue import act
from .features import CAND_FEATURES, NEW_FEATURES, Embed, agent_scope, extract, speakers_latest
from .text import info, norm_name

TASK_REF_RE = re.compile(r"(?:\btask\s*#?\s*|(?:^|\s)#|任务\s*#?\s*)(\d+)\b", re.IGNORECASE)
NEW_REF_RE = re.compile(r"^\W*(?:new (?:task|topic|question|issue|thing)|unrelated(?: question)?|different (?:question|topic)|"
                        r"another (?:question|topic|task)|separate (?:question|task|issue)|新任务|新问题|另一个问题|换个话题)\b",
                        re.IGNORECASE)
NOTICE_TASK = CAND_FEATURES.index("notice_task")
WEIGHTS_PATH = Path(__file__).with_name("weights.json")
ACK_CONFIDENCE = 0.95  # an acknowledgement to the agent belongs to the speaker's task that answered last

LABELS = {
    "rank0": "its most recent task", "rank1": "the 2nd most recent task", "rank2": "the 3rd most recent task",
    "log_rank": ("less recently active", "recently active"),
    "log_gap": ("long gap since its last message", "short gap since its last message"),
    "same_last": "same speaker as its last message", "u_in_turns": "speaker took part",
    "u_part": "speaker is a participant", "u_latest": "speaker's latest task",
    "u_addressed": "speaker was addressed there", "u_addressed_latest": "speaker was last addressed there",
    "last_addr_u": "its last message addressed the speaker", "a_last": "addresses its last speaker",
    "a_in_turns": "addressee took part", "a_part": "addressee is a participant",
    "a_latest": "addressee's latest task", "a_pair": "speaker and addressee talk there",
    "addr_other": "addressee not in it", "mention": "mentions one of its speakers",
    "w_cos": "shared words", "w_cos_last": "words shared with its last message",
    "c_cos": "shared character n-grams", "c_cos_last": "n-grams shared with its last message",
    "e_max": "similar meaning (best turn)", "e_last": "similar meaning to its last message",
    "e_cent": "similar meaning overall", "notice_task": "it holds only presence notices",
    "log_turns": "its length", "self_run": "speaker's own monologue",
    "log_since": ("many messages since its last", "few messages since its last"),
    "u_gap": ("speaker spoke there long ago", "speaker spoke there recently"),
    "a_gap": ("addressee spoke there long ago", "addressee spoke there recently"), "last_question": "its last message asked a question",
    "last_addr_other": "its last message addressed someone else", "u_latest_noaddr": "speaker's latest task",
    "rank0_same_last": "speaker's previous message", "a_latest_in": "addressee's latest task",
    "e_max_top": "most similar meaning", "w_cos_top": "most shared words",
    "bias": "prior", "notice": "presence notice", "addr_known": "addresses a known speaker",
    "addr_unknown": "addresses someone not in any open task", "question": "a question",
    "asks_anyone": "an open request", "greeting": "a greeting", "u_active": "speaker active in an open task",
    "u_addressed_any": "speaker was addressed in an open task", "log_gap_min": "gap since the room's last message",
    "log_words": ("a long message", "a short message"), "mention_any": "mentions a speaker", "thanks": "thanks",
    "title_cos": "words shared with its title", "e_title": "similar meaning to its title",
    "e_max_long": "similar meaning (long message)", "w_cos_long": "shared words (long message)",
    "e_best": ("an open task is similar", "no open task is similar"),
    "w_best": ("an open task shares words", "no open task shares words"),
    "e_best_long": ("an open task is similar", "no open task is similar in meaning"),
    "w_best_long": ("an open task shares words", "no open task shares its words"),
    "cover": "holds much of the message's words", "cover_top": "holds most of the message's words",
    "cover_best": ("an open task holds its words", "no open task holds its words"),
    "continues": ("carries on earlier work (also, still, 也)", "no continuation word"),
    "reference": ("refers to something discussed (the … bug, 那个)", "no reference to earlier work"),
    "new_thing": "asks for something new (write a …, 写一个…)", "complaint": ("reports a problem", "no problem reported"),
}


@dataclass
class Weights:
    """One fitted weight set: candidate weights, new-task weights, version."""

    version: str
    cand: np.ndarray
    new: np.ndarray
    solo: "Weights | None" = None  # used when only the speaker ever wrote in the open tasks

    @classmethod
    def load(cls, name: str, path: Path = WEIGHTS_PATH) -> "Weights":
        """The weight set ``name`` of weights.json, with its ``<name>-solo`` companion when present."""
        data = json.loads(path.read_text(encoding="utf-8"))

        def one(d: dict) -> "Weights":
            return cls(d["version"], np.array([d["cand"].get(f, 0.0) for f in CAND_FEATURES]),
                       np.array([d["new"].get(f, 0.0) for f in NEW_FEATURES]))
        w = one(data[name])
        if f"{name}-solo" in data:
            w.solo = one(data[f"{name}-solo"])
            w.tag = f"{w.version}+{w.solo.version.rsplit('-', 2)[-2]}-{w.solo.version.rsplit('-', 1)[-1]}"
        return w

    @property
    def tag(self) -> str:
        """The version stored with every decision (both weight sets when a solo prior is attached)."""
        return getattr(self, "_tag", self.version)

    @tag.setter
    def tag(self, value: str) -> None:
        self._tag = value

    def as_json(self) -> dict:
        return {"version": self.version,
                "cand": {f: round(float(w), 4) for f, w in zip(CAND_FEATURES, self.cand)},
                "new": {f: round(float(w), 4) for f, w in zip(NEW_FEATURES, self.new)}}


def probabilities(rows: np.ndarray, g: np.ndarray, w: Weights) -> np.ndarray:
    """Softmax over [new, candidate 0, candidate 1, ...]."""
    s = np.concatenate(([g @ w.new], rows @ w.cand))
    s[1:][rows[:, NOTICE_TASK] > 0] = -np.inf  # nothing joins a task of presence notices
    s = np.exp(s - s.max())
    return s / s.sum()


def _label(name: str, positive: bool) -> str:
    label = LABELS.get(name, name)
    if isinstance(label, tuple):
        return label[0] if positive else label[1]
    return label if positive else "not " + label


def _why(diff: np.ndarray, weights: np.ndarray, names: tuple, k: int = 3) -> str:
    """The k features that pushed most towards the decision, as readable words."""
    contrib = diff * weights
    top = [i for i in np.argsort(-contrib)[:k] if contrib[i] > 0.05]
    words = [_label(names[i], diff[i] > 0) + f" (+{contrib[i]:.1f})" for i in top]
    return ", ".join(words) or "no strong signal"


def reason(rows: np.ndarray, g: np.ndarray, w: Weights, p: np.ndarray, ids: list[int], facts: dict) -> str:
    """One line naming the signals that decided."""
    best = int(np.argmax(p))
    extra = f"; addressee {facts['addressee']}" if facts.get("addressee") else ""
    if best == 0:
        top = int(np.argmax(p[1:])) if len(ids) else None
        alt = "" if top is None else f"; best task {ids[top]} p={p[top + 1]:.2f}"
        return f"new task p={p[0]:.2f}: {_why(g, w.new, NEW_FEATURES)}{alt}{extra}"
    i = best - 1
    ranked = [j for j in np.argsort(-p[1:]) if j != i]
    base = rows[ranked[0]] if ranked else np.zeros_like(rows[i])
    return f"task {ids[i]} p={p[best]:.2f}: {_why(rows[i] - base, w.cand, CAND_FEATURES)}{extra}"


def decide(inp: RouteInput, w: Weights, embed: Embed | None) -> RouteDecision:
    """Score every option and return the most probable one, with its probability as confidence."""
    tag = w.tag
    if not inp.candidates:
        return RouteDecision("new", None, 1.0, "no open task", tag)
    if info(inp.content).notice:
        return RouteDecision("new", None, 1.0, "presence notice (join/part/nick): starts nothing", tag)
    ids = [c.task_id for c in inp.candidates]
    if NEW_REF_RE.search(inp.content):
        return RouteDecision("new", None, 0.95, "a new task asked for explicitly", tag)
    named = [int(n) for n in TASK_REF_RE.findall(inp.content) if int(n) in ids]
    if len(set(named)) == 1:
        return RouteDecision("existing", named[0], 0.99, f"task {named[0]} named explicitly", tag)
    if agent_scope(inp):
        known = frozenset(norm_name(p) for c in inp.candidates for p in c.participants)
        a = act(inp.content, known)
        if a.kind == "ack":
            tid = speakers_latest(inp)
            return RouteDecision("existing", tid, ACK_CONFIDENCE,
                                 f"task {tid}: an acknowledgement stays in the task it answers (the speaker's latest)",
                                 tag, {tid: ACK_CONFIDENCE})
        if a.kind == "ack_request":
            d = decide(replace(inp, content=a.request), w, embed)
            d.reason = f"acknowledgement {a.ack!r}, then a request: {d.reason}"
            return d
    rows, g, facts = extract(inp, embed)
    if facts["agent"] and w.solo is not None:
        w = w.solo
    p = probabilities(rows, g, w)
    best = int(np.argmax(p))
    scores = {tid: round(float(q), 4) for tid, q in zip(ids, p[1:])}
    why = reason(rows, g, w, p, ids, facts) + ("; solo scope" if facts["solo"] else
                                                "; agent scope" if facts["agent"] else "")
    if best == 0:
        return RouteDecision("new", None, float(p[0]), why, tag, scores)
    return RouteDecision("existing", ids[best - 1], float(p[best]), why, tag, scores)
