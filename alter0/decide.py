"""Task selection (forced > explicit > router > new) and the close decision, with every backend answer
validated and every failure degraded (to "new task" / "keep open") with its reason kept."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor, TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, Callable

from .models import Job, Message, Task, TaskMemory, UserState
from .prepared import Prepared
from .routing.base import (Candidate, CloseDecision, CloseInput, InvalidOutput, RouteDecision, RouteInput, Turn,
                           validate_close, validate_route)

log = logging.getLogger(__name__)
_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="alter0-decide")


@dataclass
class Choice:
    """Where a job goes: ``task`` None means a new task."""

    task: Task | None
    decision: RouteDecision
    source: str  # forced | explicit | router | new
    reopen: bool = False


def _call(fn: Callable[[], Any], timeout: float) -> Any:
    """Run a router/closer call with a wall-clock limit."""
    return _pool.submit(fn).result(timeout=timeout)


def scope_of(cfg, user_id: str, channel_id: str) -> str:
    """The scope key tasks are shared in: the user by default, the channel when task.scope = channel."""
    if cfg["task.scope"] == "channel" and channel_id:
        return f"channel:{channel_id}"
    return f"user:{user_id}"


def _open_tasks(scope, limit):
    return (Task.select(Task.id, Task.title, Task.user_id, Task.last_active_at, Task.created_at)
            .where((Task.scope == scope) & (Task.status == "open"))
            .order_by(Task.last_active_at.desc(), Task.id.desc()).limit(limit))


_OPEN_TASKS = Prepared(_open_tasks)
_OPEN_TASK_MEMORY_STAMPS = Prepared(lambda scope, limit: TaskMemory.select(
    TaskMemory.task, TaskMemory.updated_at, TaskMemory.turn_count).where(
    TaskMemory.task.in_(_open_tasks(scope, limit).select(Task.id))))
#: (task id, memory updated_at, turn count) -> (turns, participants, summary): a memory is decoded once per
#: change, not once per routed message (a room with 24 open tasks changes one or two between two messages).
_memories: OrderedDict[tuple[int, float, int], tuple[list[Turn], list[str], str]] = OrderedDict()
_memories_lock = threading.Lock()
MEMORY_CACHE_SIZE = 4096
_USER_STATE = Prepared(lambda user_id: UserState.select().where(UserState.user_id == user_id))
_TASK_BY_ID = Prepared(lambda task_id: Task.select().where(Task.id == task_id))


def task_by_id(task_id: int) -> Task | None:
    """The task with this id, or None."""
    return _TASK_BY_ID.first(task_id)


_PENDING_AFTER = Prepared(lambda task_id, job_id: Job.select(Job.id).where(
    (Job.task == task_id) & (Job.id > job_id) & Job.status.not_in(["done", "failed", "cancelled", "timed_out"]))
    .limit(1))
_LAST_MESSAGES = Prepared(lambda task_id: Message.select().where(Message.task == task_id)
                          .order_by(Message.id.desc()).limit(10))


def candidates(cfg, scope: str) -> list[Candidate]:
    """Open tasks of the scope, most recently active first, up to the candidate limit."""
    limit = cfg["task.open_task_candidate_limit"]
    tasks = list(_OPEN_TASKS.tuples(scope, limit))
    if not tasks:
        return []
    mems = _decoded_memories({tid: (at, n) for tid, at, n in _OPEN_TASK_MEMORY_STAMPS.tuples(scope, limit)})
    out = []
    for task_id, title, user_id, last_active_at, created_at in tasks:
        turns, participants, summary = mems.get(task_id, ([], [user_id], ""))
        out.append(Candidate(task_id=task_id, title=title, turns=list(turns), participants=list(participants),
                             last_active_at=last_active_at, created_at=created_at, summary=summary))
    return out


def _decoded_memories(stamps: dict[int, tuple[float, int]]) -> dict[int, tuple[list[Turn], list[str], str]]:
    """Task id -> (turns, participants, summary) for these memories, read and decoded only when changed."""
    with _memories_lock:
        out = {tid: _memories.get((tid, *stamp)) for tid, stamp in stamps.items()}
    missing = [tid for tid, hit in out.items() if hit is None]
    if missing:
        for mem in TaskMemory.select().where(TaskMemory.task.in_(missing)):
            turns = [Turn(x["role"], x["content"], x["user_id"], x["at"]) for x in (mem.turns or [])]
            out[mem.task_id] = entry = (turns, list(mem.participants or []), mem.summary or "")
            with _memories_lock:
                _memories[(mem.task_id, mem.updated_at, mem.turn_count)] = entry
                while len(_memories) > MEMORY_CACHE_SIZE:
                    _memories.popitem(last=False)
    return {tid: hit for tid, hit in out.items() if hit is not None}


def choose_task(rt, job: Job) -> Choice:
    """Pick the job's task: forced task, then explicit task id, then the router, then a new task."""
    state = _USER_STATE.first(job.user_id)
    if state and state.forced_task_id:
        task = task_by_id(state.forced_task_id)
        if task is not None:
            return Choice(task, RouteDecision("existing", task.id, 1.0, "forced by /task use"), "forced",
                          reopen=task.status != "open")
    if job.requested_task_id:
        task = task_by_id(job.requested_task_id)
        if task is not None:
            return Choice(task, RouteDecision("existing", task.id, 1.0, "explicit task_id"), "explicit",
                          reopen=task.status != "open")
    cands = candidates(rt.cfg, job.scope)
    if not cands:
        return Choice(None, RouteDecision("new", None, 1.0, "no open task in scope"), "new")
    inp = RouteInput(content=job.content, user_id=job.user_id, channel_id=job.channel_id, at=job.created_at,
                     candidates=cands)
    decision = route_decision(rt, inp)
    threshold = rt.cfg["task.routing_confidence_threshold"]
    if decision.decision == "existing" and decision.confidence >= threshold:
        task = task_by_id(decision.task_id)
        return Choice(task, decision, "router")
    if decision.decision == "existing":
        decision = RouteDecision("new", None, decision.confidence,
                                 f"below threshold {threshold}: {decision.reason}", decision.version)
    return Choice(None, decision, "router")


def route_decision(rt, inp: RouteInput) -> RouteDecision:
    """The router's validated answer, or a degraded "new" decision naming what went wrong."""
    router = None
    try:
        router = rt.router
        raw = _call(lambda: router.route(inp), rt.cfg["task.routing_timeout_sec"])
        return validate_route(raw, {c.task_id for c in inp.candidates})
    except FutureTimeout:
        why = f"router timed out after {rt.cfg['task.routing_timeout_sec']}s"
    except InvalidOutput as exc:
        why = f"router output invalid: {exc}"
    except Exception as exc:
        why = f"router failed: {type(exc).__name__}: {exc}"
    log.warning("routing degraded to new task: %s", why)
    return RouteDecision("new", None, 0.0, f"degraded: {why}", getattr(router, "version", ""))


def decide_close(rt, job: Job) -> tuple[CloseDecision, bool]:
    """The closer's validated decision and whether to close (confidence above threshold, nothing pending)."""
    if _PENDING_AFTER.first(job.task_id, job.id) is not None:
        return CloseDecision(False, 1.0, "a newer message for this task is pending"), False
    closer = None
    try:
        closer = rt.closer
        msgs = list(_LAST_MESSAGES.rows(job.task_id))
        turns = [Turn(m.role, m.content, m.user_id, m.created_at) for m in reversed(msgs)]
        reply = next((m.content for m in msgs if m.id == job.reply_message_id), None)
        if reply is None and job.reply_message_id:  # more than 10 newer messages: read it
            reply = job.reply_message.content
        inp = CloseInput(task_id=job.task_id, user_message=job.content, reply=reply or "", turns=turns)
        d = validate_close(_call(lambda: closer.decide(inp), rt.cfg["task.close_timeout_sec"]))
    except FutureTimeout:
        d = CloseDecision(False, 0.0, f"degraded: closer timed out after {rt.cfg['task.close_timeout_sec']}s")
    except InvalidOutput as exc:
        d = CloseDecision(False, 0.0, f"degraded: closer output invalid: {exc}")
    except Exception as exc:
        d = CloseDecision(False, 0.0, f"degraded: closer failed: {type(exc).__name__}: {exc}")
    if d.reason.startswith("degraded"):
        d.version = d.version or getattr(closer, "version", "")
        log.warning("closing degraded to keep open: %s", d.reason)
    return d, d.close and d.confidence >= rt.cfg["task.close_confidence_threshold"]
