"""The router and closer contracts and the validation every backend's output goes through."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Turn:
    """One message of a candidate task, oldest first in ``Candidate.turns``."""

    role: str  # user | assistant
    content: str
    user_id: str
    at: float  # epoch seconds


@dataclass
class Candidate:
    """An open task the router may pick."""

    task_id: int
    title: str
    turns: list[Turn]  # recent messages (bounded), oldest first
    participants: list[str]  # user ids that spoke in the task
    last_active_at: float
    created_at: float
    summary: str = ""


@dataclass
class RouteInput:
    """A message to route and the open tasks of its scope, most recently active first."""

    content: str
    user_id: str
    channel_id: str
    at: float
    candidates: list[Candidate]


@dataclass
class RouteDecision:
    """A router's answer: join ``task_id`` (decision existing) or start a new task."""

    decision: str  # existing | new
    task_id: int | None
    confidence: float
    reason: str
    version: str = ""
    scores: dict[int, float] = field(default_factory=dict)
    ask: list[int] = field(default_factory=list)  # candidate tasks to ask the user about (the ask band)


@dataclass
class CloseInput:
    """The last exchange of a task and its recent history."""

    task_id: int
    user_message: str
    reply: str
    turns: list[Turn]
    #: the confidence a close needs to be accepted (task.close_confidence_threshold): a closer may skip work
    #: that could not bring a decision there
    min_confidence: float = 0.5


@dataclass
class CloseDecision:
    close: bool
    confidence: float
    reason: str
    version: str = ""


class Router:
    """Picks the task a message belongs to. Subclasses implement ``route``."""

    name = "base"
    version = "base-1"
    #: Computes in this process with bounded work (no network, no subprocess): decided in the stage's own thread,
    #: an answer later than the time limit discarded as if it had timed out (``decide._call``).
    local = False

    def route(self, inp: RouteInput) -> RouteDecision:
        raise NotImplementedError


class Closer:
    """Decides whether the last exchange finished the task. Subclasses implement ``decide``."""

    name = "base"
    version = "base-1"
    local = False  # as Router.local
    #: whether ``decide`` reads ``CloseInput.turns`` (the task's recent messages); if not, they are not read
    reads_turns = True

    def decide(self, inp: CloseInput) -> CloseDecision:
        raise NotImplementedError


class InvalidOutput(ValueError):
    """A router or closer answered something outside its contract."""


def _confidence(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise InvalidOutput(f"confidence must be a number in [0,1], got {value!r}")
    return float(value)


def validate_route(raw: Any, candidate_ids: set[int]) -> RouteDecision:
    """Check a router answer (a RouteDecision or a dict); raise InvalidOutput if it breaks the contract."""
    if isinstance(raw, RouteDecision):
        raw = {"decision": raw.decision, "task_id": raw.task_id, "confidence": raw.confidence,
               "reason": raw.reason, "version": raw.version, "scores": raw.scores}
    if not isinstance(raw, dict):
        raise InvalidOutput(f"router output must be an object, got {type(raw).__name__}")
    decision = raw.get("decision")
    if decision not in ("existing", "new"):
        raise InvalidOutput(f"decision must be 'existing' or 'new', got {decision!r}")
    task_id = raw.get("task_id")
    if decision == "existing":
        if isinstance(task_id, str) and task_id.isdigit():
            task_id = int(task_id)
        if isinstance(task_id, bool) or not isinstance(task_id, int):
            raise InvalidOutput(f"task_id must be an integer task id, got {task_id!r}")
        if task_id not in candidate_ids:
            raise InvalidOutput(f"task_id {task_id} is not one of the open candidate tasks")
    else:
        task_id = None
    reason = raw.get("reason")
    if not isinstance(reason, str):
        raise InvalidOutput("reason must be a string")
    return RouteDecision(decision, task_id, _confidence(raw.get("confidence")), reason[:500],
                         str(raw.get("version") or ""), raw.get("scores") or {})


def validate_close(raw: Any) -> CloseDecision:
    """Check a closer answer (a CloseDecision or a dict); raise InvalidOutput if it breaks the contract."""
    if isinstance(raw, CloseDecision):
        raw = {"close": raw.close, "confidence": raw.confidence, "reason": raw.reason, "version": raw.version}
    if not isinstance(raw, dict):
        raise InvalidOutput(f"closer output must be an object, got {type(raw).__name__}")
    if not isinstance(raw.get("close"), bool):
        raise InvalidOutput(f"close must be true or false, got {raw.get('close')!r}")
    reason = raw.get("reason")
    if not isinstance(reason, str):
        raise InvalidOutput("reason must be a string")
    return CloseDecision(raw["close"], _confidence(raw.get("confidence")), reason[:500], str(raw.get("version") or ""))
