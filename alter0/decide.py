"""The two decisions: task selection (moved > forced > explicit > thread-bound > router > new) and closing, each
with its one threshold rule, every backend answer validated under a time limit and every failure degraded (to "new task" /
"keep open") with its reason kept."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor, TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, Callable

from .candidates import LAST_MESSAGES, MESSAGE_TEXT, PENDING_AFTER, USER_STATE, candidates, task_by_id
from .inflight import STAGE_TURN
from .models import Job, Task
from .threads import bound_task
from .routing.base import (CloseDecision, CloseInput, InvalidOutput, RouteDecision, RouteInput, Turn,
                           validate_close, validate_route)

log = logging.getLogger(__name__)
_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="alter0-decide")


@dataclass
class Choice:
    """Where a job goes: ``task`` None means a new task."""

    task: Task | None
    decision: RouteDecision
    source: str  # forced | explicit | thread | router | new
    reopen: bool = False


def _call(fn: Callable[[], Any], timeout: float, local: bool = False) -> Any:
    """Run a router/closer call with a wall-clock limit: on a thread of the pool, waited for at most ``timeout``
    seconds; a ``local`` backend (bounded work in this process, nothing to wait for) in this thread, its answer
    discarded when it came later than ``timeout`` (no thread hand-off per message for a millisecond's work)."""
    if not local:
        with STAGE_TURN.released():  # an LLM backend's answer: other stages go on meanwhile
            return _pool.submit(fn).result(timeout=timeout)
    started = time.monotonic()
    answer = fn()
    if time.monotonic() - started > timeout:
        raise FutureTimeout()
    return answer


def choose_task(rt, job: Job) -> Choice:
    """Pick the job's task: the task a misrouted message was moved to, then the forced task, then an explicit task
    id, then the task the job's chat thread is bound to, then the router, then a new task."""
    if job.moved_from and job.requested_task_id:  # the user corrected the router: nothing overrides that
        task = task_by_id(job.requested_task_id)
        if task is not None:
            return Choice(task, RouteDecision("existing", task.id, 1.0, f"moved here from job {job.moved_from}"),
                          "moved", reopen=task.status != "open")
    state = USER_STATE.first(job.user_id)
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
    bound = bound_task(job.channel_id, job.thread_key)
    if bound is not None:
        task = task_by_id(bound)
        if task is not None:
            return Choice(task, RouteDecision("existing", task.id, 1.0, f"thread {job.thread_key} is bound to it"),
                          "thread", reopen=task.status != "open")
    cands = candidates(rt.cfg, job.scope)
    if not cands:
        return Choice(None, RouteDecision("new", None, 1.0, "no open task in scope"), "new")
    inp = RouteInput(content=job.content, user_id=job.user_id, channel_id=job.channel_id, at=job.created_at,
                     candidates=cands)
    decision = ask_band(route_decision(rt, inp), cands, rt.cfg["router.ask_below"])
    threshold = rt.cfg["task.routing_confidence_threshold"]
    if accepts_route(decision, threshold):
        task = task_by_id(decision.task_id)
        return Choice(task, decision, "router")
    if decision.decision == "existing":
        decision = RouteDecision("new", None, decision.confidence,
                                 f"below threshold {threshold}: {decision.reason}", decision.version)
    return Choice(None, decision, "router")


def ask_band(d: RouteDecision, cands: list, ask_below: float) -> RouteDecision:
    """Below ``ask_below`` the router does not guess: a new task whose reason asks which task it was, naming the
    likeliest candidates (the user moves the message with /task use ID)."""
    if not ask_below or d.confidence >= ask_below or d.reason.startswith("degraded"):
        return d
    titles = {c.task_id: c.title for c in cands}
    ranked = sorted(titles, key=lambda tid: -d.scores.get(tid, 0.0))[:3]
    named = ", ".join(f"task {tid} {titles[tid][:40]!r} p={d.scores.get(tid, 0.0):.2f}" for tid in ranked)
    return RouteDecision("new", None, d.confidence,
                         f"ask: not sure which task (confidence {d.confidence:.2f} < {ask_below}); started a new one. "
                         f"Was it {named}? Move it with /task use ID. ({d.reason})", d.version, d.scores, ranked)


def route_decision(rt, inp: RouteInput) -> RouteDecision:
    """The router's validated answer, or a degraded "new" decision naming what went wrong."""
    router = None
    try:
        router = rt.router
        raw = _call(lambda: router.route(inp), rt.cfg["task.routing_timeout_sec"], router.local)
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
    if PENDING_AFTER.first(job.task_id, job.id) is not None:
        return CloseDecision(False, 1.0, "a newer message for this task is pending"), False
    closer = None
    try:
        closer = rt.closer
        turns, reply = [], None
        if closer.reads_turns:
            msgs = list(LAST_MESSAGES.rows(job.task_id))
            turns = [Turn(m.role, m.content, m.user_id, m.created_at) for m in reversed(msgs)]
            reply = next((m.content for m in msgs if m.id == job.reply_message_id), None)
        if reply is None and job.reply_message_id:  # not read with the turns (or more than 10 newer messages)
            reply = next(MESSAGE_TEXT.tuples(job.reply_message_id), (None,))[0]
        inp = CloseInput(task_id=job.task_id, user_message=job.content, reply=reply or "", turns=turns,
                         min_confidence=rt.cfg["task.close_confidence_threshold"])
        d = validate_close(_call(lambda: closer.decide(inp), rt.cfg["task.close_timeout_sec"], closer.local))
    except FutureTimeout:
        d = CloseDecision(False, 0.0, f"degraded: closer timed out after {rt.cfg['task.close_timeout_sec']}s")
    except InvalidOutput as exc:
        d = CloseDecision(False, 0.0, f"degraded: closer output invalid: {exc}")
    except Exception as exc:
        d = CloseDecision(False, 0.0, f"degraded: closer failed: {type(exc).__name__}: {exc}")
    if d.reason.startswith("degraded"):
        d.version = d.version or getattr(closer, "version", "")
        log.warning("closing degraded to keep open: %s", d.reason)
    return d, accepts_close(d, rt.cfg["task.close_confidence_threshold"])


def accepts_route(d: RouteDecision, threshold: float) -> bool:
    """The routing rule: an existing task only at or above the confidence threshold (else a new task)."""
    return d.decision == "existing" and d.confidence >= threshold


def accepts_close(d: CloseDecision, threshold: float) -> bool:
    """The closing rule: close only at or above the confidence threshold (else the task stays open)."""
    return d.close and d.confidence >= threshold
